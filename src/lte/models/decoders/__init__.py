"""Implicit decoders: LTE, LIIF, Meta-SR and the LMF ones (LM-LTE, LM-LIIF; and the fixed-scale baselines' nearest lookup), one family per module, behind one contract (:mod:`.base`).

``SRModel.encode`` builds a :class:`DecoderState`; ``SRModel.query`` answers coordinates from it with
the decoder's differentiable definition (``kernel="exact"``) or, for inference, its fast kernel
(``kernel="fast"``) or its ``torch.compile``d block kernel (``kernel="compiled"``, LTE and LIIF;
:mod:`.compiled`). See docs/architecture.md and docs/inference.md.
"""

from lte.models.decoders.base import KERNELS, MLP_DTYPES, Decoder, DecoderState, Kernel
from lte.models.decoders.ensemble import BLOCK
from lte.models.decoders.liif import LIIFDecoder
from lte.models.decoders.lm_liif import LMLIIFDecoder
from lte.models.decoders.lm_lte import LMLTEDecoder
from lte.models.decoders.lte import LTEDecoder
from lte.models.decoders.metasr import MetaSRDecoder
from lte.models.decoders.nearest import NearestDecoder

__all__ = [
    "BLOCK",
    "KERNELS",
    "MLP_DTYPES",
    "Decoder",
    "DecoderState",
    "Kernel",
    "LIIFDecoder",
    "LMLIIFDecoder",
    "LMLTEDecoder",
    "LTEDecoder",
    "MetaSRDecoder",
    "NearestDecoder",
]
