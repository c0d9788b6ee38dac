"""Networks: encoders (EDSR, RDN, SwinIR), implicit decoders (LTE, LIIF, Meta-SR, LM-LTE, LM-LIIF) and their composition."""

from lte.models.build import build_model, instantiate_model, model_config
from lte.models.decoders import (
    LIIFDecoder,
    LMLIIFDecoder,
    LMLTEDecoder,
    LTEDecoder,
    MetaSRDecoder,
    NearestDecoder,
)
from lte.models.edsr import EDSR
from lte.models.rdn import RDN
from lte.models.spec import ModelSpec
from lte.models.sr import SRModel
from lte.models.swinir import SwinIR

__all__ = [
    "EDSR",
    "RDN",
    "LIIFDecoder",
    "LMLIIFDecoder",
    "LMLTEDecoder",
    "LTEDecoder",
    "MetaSRDecoder",
    "ModelSpec",
    "NearestDecoder",
    "SRModel",
    "SwinIR",
    "build_model",
    "instantiate_model",
    "model_config",
]
