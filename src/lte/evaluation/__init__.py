"""The papers' test protocol as library functions: full-image prediction, PSNR/SSIM, the loop.

``python -m lte.test`` (:mod:`lte.cli.test`) is a thin Hydra shell around :func:`evaluate_testset`;
notebooks and scripts call the same functions and get the same numbers. Test sets and their LR/HR
pairs are in :mod:`lte.testsets`, results files in :mod:`lte.results`. Each step follows the
LIIF/LTE test code as SPEC.md describes it (see ``docs/evaluation.md``):

1. LR/HR pairs from the test set (:meth:`lte.testsets.TestSet.pairs`), prepared ahead of the model
   (:mod:`~lte.evaluation.images`).
2. Queries at every HR pixel centre, cell ``(2/H, 2/W) · max(s / scale_max, 1)`` with the model's
   own ``scale_max``; SwinIR-style encoders get their LR mirror-padded to a multiple of the
   window and the prediction cropped back (:mod:`~lte.evaluation.protocol`).
3. Prediction denormalised and clamped (never rounded to 8 bits); PSNR and SSIM per image on Y with
   ``s`` px shaved (``benchmark``) or on RGB with ``s + 6`` shaved (``div2k``); plain mean over
   images (:mod:`~lte.evaluation.loop`).

What is scored is a :class:`~lte.evaluation.methods.Method`: a network, or :data:`BICUBIC`, PIL
bicubic upscaling of the very same LR images scored by the very same code, every table's reference
row (``lte.test baseline=bicubic``). Options travel as one :class:`EvalSettings`; where the time
goes is :class:`StageProfile`'s business (``eval.profile=true``).
"""

from lte.evaluation.images import auto_workers
from lte.evaluation.loop import evaluate_testset, score_image
from lte.evaluation.methods import BICUBIC, BicubicBaseline, Method, Network, as_method
from lte.evaluation.profile import NO_PROFILE, PREP_STAGES, STAGES, StageProfile
from lte.evaluation.protocol import ImageScore, mirror_pad, model_input, super_resolve
from lte.evaluation.settings import EvalSettings

__all__ = [
    "BICUBIC",
    "NO_PROFILE",
    "PREP_STAGES",
    "STAGES",
    "BicubicBaseline",
    "EvalSettings",
    "ImageScore",
    "Method",
    "Network",
    "StageProfile",
    "as_method",
    "auto_workers",
    "evaluate_testset",
    "mirror_pad",
    "model_input",
    "score_image",
    "super_resolve",
]
