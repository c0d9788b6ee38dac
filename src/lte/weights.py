"""Tensors read from a file are checked for what they are before a model takes them.

``load_state_dict`` copies whatever it is given into the model's float32 parameters: int8 weights
are silently widened (a quantised file gives an image up to 8 levels off), bool and complex ones
give garbage or a torch warning, and sparse or meta tensors end in a traceback. So every reader of
weights (lte and official checkpoints in :mod:`lte.checkpoint`, resumed training in
:mod:`lte.training.resume`) asks :func:`check_weights` first: each tensor must be dense
(``torch.strided``), hold values (not on the ``meta`` device) and be a real floating-point number
of one of :data:`WEIGHT_DTYPES`, or, for a buffer the model keeps in another type (an integer
counter), exactly that type. Anything else is one line naming the file, the key and the dtype or
layout. :func:`nonfinite_weights` finds NaN and infinity after loading.

Half-precision files are accepted: float16 and bfloat16 are real floats, a model cast to half and
saved is legitimate, and every such value is exactly a float32 value, so loading converts them to
the model's dtype without loss. float64 is rounded to float32, as ``load_state_dict`` does; a value
beyond float32's range becomes infinity and is refused by the non-finite check.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from lte.errors import UserError, escape_controls

#: The types a floating-point weight may be stored in; each loads into the model's own dtype.
WEIGHT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
_DTYPE_NAMES = "float32, float16, bfloat16 or float64"


def tensor_problem(value: Any, like: torch.Tensor | None = None) -> str | None:
    """What makes ``value`` unusable as a weight, as the end of a sentence; ``None`` if nothing.

    ``like`` is the model's own tensor for this key: a floating-point one accepts any of
    :data:`WEIGHT_DTYPES`, any other (an integer buffer) exactly its own dtype. Without ``like``
    only what no weight may be is checked (not a tensor, not dense, no values), so that buffers a
    file holds for other code (an official SwinIR's int64 ``relative_position_index``) pass.
    Shapes are the caller's to compare.
    """
    if not isinstance(value, torch.Tensor):
        return f"is not a tensor but {type(value).__name__}: the file is not a model checkpoint"
    if value.layout != torch.strided:
        return (
            f"is stored as {value.layout} (not dense); lte reads dense weights only: use the "
            "original checkpoint, or save the weights with .to_dense()"
        )
    if value.is_meta:
        return (
            "is a meta tensor (a shape with no values): the file holds no weights for it; use a "
            "checkpoint saved from a trained model"
        )
    if like is None:
        return None
    if like.dtype.is_floating_point:
        if value.dtype not in WEIGHT_DTYPES:
            return (
                f"is {value.dtype}; lte reads floating-point weights only ({_DTYPE_NAMES}): the "
                "file is not a model checkpoint or was quantised; use the original"
            )
    elif value.dtype != like.dtype:
        return (
            f"is {value.dtype} where the model keeps {like.dtype}: the file is not a checkpoint "
            "of this model; use the original"
        )
    return None


def check_weights(
    tensors: Mapping[Any, Any],
    where: str,
    like: Mapping[str, torch.Tensor] | None = None,
    what: str = "weight",
) -> None:
    """Refuse the first tensor of ``tensors`` that :func:`tensor_problem` finds wrong.

    ``like`` maps keys to the model's own tensors; keys it lacks get the ``like``-less checks
    (missing and unexpected keys are the caller's to report). ``where`` starts the message
    (``checkpoint 'x.pth'``), ``what`` names the kind of tensor (``weight``, ``optimizer state``).

    Raises:
        UserError: ``<where>: <what> <key> is torch.int8; lte reads floating-point weights only ...``
    """
    for key, value in tensors.items():
        problem = tensor_problem(value, None if like is None else like.get(key))
        if problem is not None:
            raise UserError(f"{where}: {what} {escape_controls(str(key))} {problem}")


def nonfinite_weights(tensors: Mapping[str, torch.Tensor]) -> list[str]:
    """Keys of the floating-point tensors that hold NaN or infinity (a corrupt file, or float64
    values beyond the model's float32 range)."""
    return [
        key
        for key, value in tensors.items()
        if value.is_floating_point() and not bool(torch.isfinite(value).all())
    ]
