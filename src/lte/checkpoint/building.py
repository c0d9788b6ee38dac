"""Build the model a checkpoint describes and load its weights, checking every tensor first.

Whatever the layout, reading ends here: a validated :class:`~lte.models.spec.ModelSpec` and a dict
of tensors under the model's own names. Names, kinds of number and shapes are compared with a
skeleton of the model before anything is allocated, finiteness after loading; each mismatch is one
:class:`~lte.errors.UserError` line naming the keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from lte.errors import UserError
from lte.models.fields import key_listing, short_repr
from lte.models.spec import ModelSpec
from lte.models.sr import SRModel
from lte.weights import check_weights, nonfinite_weights


def state_dict_of(value: Any, where: str, name: str) -> Mapping[str, Any]:
    """``value`` if it is a dict (of what is checked next), else a UserError naming ``name``."""
    if not isinstance(value, Mapping):
        raise UserError(f"{where}: {name} must be a dict of tensors, got {short_repr(value)}")
    return value


def check_storage(sd: Mapping[Any, Any], where: str) -> None:
    """Every tensor dense and holding values, before any is reshaped (a released layout's keys) or
    compared; their kind of number and shape are checked against the model in :func:`compare`."""
    check_weights({k: v for k, v in sd.items() if isinstance(v, torch.Tensor)}, where)


def compare(own: Mapping[str, Any], sd: Mapping[str, Any], where: str) -> None:
    """One-line errors for weights that are missing, unexpected, not tensors, of a kind of number
    the model cannot take (:func:`lte.weights.check_weights`) or mis-shaped."""
    missing = [k for k in own if k not in sd]
    unexpected = [k if isinstance(k, str) else short_repr(k) for k in sd if k not in own]
    if missing:
        raise UserError(f"{where} lacks weights the model needs: {key_listing(missing)}")
    if unexpected:
        raise UserError(f"{where} has weights this model does not use: {key_listing(unexpected)}")
    bad = [f"{k} ({type(sd[k]).__name__})" for k in own if not isinstance(sd[k], torch.Tensor)]
    if bad:
        raise UserError(f"{where} has weights that are not tensors: {key_listing(bad)}")
    check_weights(sd, where, own)
    wrong = [
        f"{k} {tuple(sd[k].shape)} != {tuple(v.shape)}"
        for k, v in own.items()
        if sd[k].shape != v.shape
    ]
    if wrong:
        raise UserError(f"{where} has weights of the wrong shape: {key_listing(wrong)}")


def build_with_weights(spec: ModelSpec, sd: Mapping[str, Any], where: str) -> SRModel:
    """Build ``spec`` and load ``sd`` into it, checking names, kinds and shapes first, finiteness after.

    The check runs on a skeleton built on the ``meta`` device where the architecture allows it, so a
    file describing a huge network with small weights fails before anything is allocated.
    Half-precision and float64 weights are converted to the model's dtype by ``load_state_dict``
    (see :mod:`lte.weights`); the non-finite check runs on what the model then holds, so float64
    values beyond float32's range are caught too.
    """
    try:
        with torch.device("meta"):
            skeleton = spec.build()
    except (
        Exception
    ):  # some constructors read values (SwinIR's drop-path rates): check after building
        skeleton = None
    if skeleton is not None:
        compare(skeleton.state_dict(), sd, where)
    model = spec.build()
    compare(model.state_dict(), sd, where)
    model.load_state_dict(dict(sd), strict=True)
    check_finite(model, sd, where)
    return model


def check_finite(model: SRModel, sd: Mapping[str, Any], where: str) -> None:
    """Refuse a model whose weights hold NaN or infinity once loaded: it would make a black image."""
    bad = nonfinite_weights(model.state_dict())
    if not bad:
        return
    key = bad[0]
    stored = sd[key]
    if bool(torch.isfinite(stored).all()):  # finite in the file: float64 beyond float32's range
        raise UserError(
            f"{where}: weight {key} holds {stored.dtype} values beyond the range of the model's "
            f"{model.state_dict()[key].dtype} (they would load as infinity): the file is corrupt "
            "or not a model checkpoint; use another checkpoint"
        )
    raise UserError(
        f"{where} has non-finite weights (NaN or infinity) in {len(bad)} tensor(s), e.g. {key}: "
        "the file is corrupt; use another checkpoint"
    )
