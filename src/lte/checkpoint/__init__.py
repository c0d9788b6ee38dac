"""Read and write model checkpoints: the officially released LTE/LIIF/Meta-SR files and lte's own.

Three layouts load into the same :class:`~lte.models.SRModel`:

* official: ``{"model": {"name", "args", "sd"}}`` as released by the LTE and LIIF projects, decoder
  parameters at the top level (``coef.*``, ``imnet.*``) and encoder ones under ``encoder.``; the
  ``lte-fast`` release (EDSR-baseline-LTE+) is the same LTE with its MLP written as 1x1
  convolutions (``layers.*``), and loads into the same LTE decoder (see :data:`OFFICIAL_LAYOUTS`);
  the fixed-scale baselines are ``liif`` with no MLP (:mod:`.fixed_scale`);
* lte: a Lightning checkpoint (or any dict) with ``state_dict`` (parameters under ``net.``) and an
  ``"lte"`` entry ``{"format_version": 2, "model": SRModel.describe(), "normalization", "prefix"}``.
  Format-1 files (a Hydra config with ``_target_`` strings) still load, read strictly as data;
* safetensors: the same ``"lte"`` entry (prefix ``""``) as JSON in a ``.safetensors`` header, beside
  the weights under the model's own names; read with no pickle at all (:mod:`.safetensors_format`).

A checkpoint is data, never code. Files are read with ``torch.load(weights_only=True)`` (or the
safetensors parser), and the model they describe is validated field by field through
:class:`~lte.models.spec.ModelSpec` and built by calling allow-listed classes: nothing read from a file reaches Hydra's ``instantiate``, an import
or an OmegaConf interpolation. Every bad value is a one-line :class:`~lte.errors.UserError`.

What each architecture's release looks like (names, arguments, defaults, buffers, other layouts) is
declared beside its class (``lte.models.edsr.RELEASE``, ...); this package only reads those tables:

* :mod:`.reading`: opening a file safely; the training run it records;
* :mod:`.lte_format`: lte's formats 1 and 2; :mod:`.safetensors_format`: the ``.safetensors`` export;
* :mod:`.official`, :mod:`.fixed_scale`: the released layouts;
* :mod:`.building`: the checked build every layout ends in;
* :mod:`.loading`: :func:`load_checkpoint`; :mod:`.export`: writing and conversion.
"""

from lte.checkpoint.export import (
    CONVERT_TARGETS,
    OFFICIAL_LAYOUTS,
    atomic_save,
    check_layout,
    convert_checkpoint,
    official_state,
    save_lte,
    save_official,
)
from lte.checkpoint.loading import LoadedModel, load_checkpoint
from lte.checkpoint.lte_format import FORMAT_VERSION, NORMALIZATION, checkpoint_metadata
from lte.checkpoint.official import OFFICIAL_SCALE_MAX
from lte.checkpoint.reading import TrainingRun
from lte.checkpoint.safetensors_format import is_safetensors, save_safetensors

__all__ = [
    "CONVERT_TARGETS",
    "FORMAT_VERSION",
    "NORMALIZATION",
    "OFFICIAL_LAYOUTS",
    "OFFICIAL_SCALE_MAX",
    "LoadedModel",
    "TrainingRun",
    "atomic_save",
    "check_layout",
    "checkpoint_metadata",
    "convert_checkpoint",
    "is_safetensors",
    "load_checkpoint",
    "official_state",
    "save_lte",
    "save_official",
    "save_safetensors",
]
