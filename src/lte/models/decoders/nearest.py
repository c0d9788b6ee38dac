"""Nearest lookup: the "decoder" of the fixed-scale baselines (SPEC.md, "Fixed-scale baselines").

A fixed-scale encoder (EDSR / RDN with ``upscale=s``) already outputs RGB at ``s`` times the LR size.
The released models wrap it in LIIF with no MLP: each query returns the output pixel whose centre is
nearest (no local ensemble, no cell, no parameters). At the HR pixel centres of the native scale
that is exactly the encoder's output.

The code table stays on the LR grid: ``SRModel.encode`` packs the encoder's ``(B, 3, s·h, s·w)``
output with ``pixel_unshuffle(s)`` into ``(B, 3·s², h, w)`` (channel ``c·s² + i·s + j`` holds output
pixel ``(s·y + i, s·x + j)`` of code ``(y, x)``). So a tile's origin, the whole image's geometry and
tile margins mean what they mean for every other decoder, and tiled prediction is exact.

The family's declaration (:data:`FAMILY`) sits at the end: no fields, and the released fixed-scale
baselines (``liif`` with no MLP around an encoder that keeps its upsampler).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from lte.geometry import code_grid_index, nearest_code_index
from lte.models.decoders.base import Decoder, DecoderState
from lte.models.decoders.ensemble import gather_rows
from lte.models.family import DecoderFamily, FixedScaleRelease
from lte.models.fields import FamilyConfig


def packed_scale(width: int) -> int:
    """The scale ``s`` of a packed table of ``width = 3·s²`` values per code (a ``ValueError`` else)."""
    s = math.isqrt(width // 3) if width > 0 else 0
    if s < 1 or 3 * s * s != width:
        raise ValueError(
            f"nearest decoder: a code of {width} values is not an s x s block of RGB pixels "
            "(3·s² values): it needs a fixed-scale encoder (upscale=s), packed by SRModel.encode"
        )
    return s


class NearestDecoder(Decoder):
    """The output pixel whose centre is nearest to each query, from a fixed-scale encoder's output.

    Args:
        in_channels: the encoder's output width; must be 3 (RGB at ``s`` times the LR size).

    ``cell`` and ``dtype`` are accepted (the decoder contract) and ignored: there is no MLP.
    """

    kind = "nearest"
    #: Reads only the code whose s × s block holds the query; 1 covers a float tie at its border.
    reach = 1

    def __init__(self, in_channels: int = 3) -> None:
        super().__init__()
        if in_channels != 3:
            raise ValueError(
                f"nearest decoder: the encoder must output RGB (3 channels, upscale=s), got "
                f"{in_channels} channels"
            )
        #: No constructor arguments but ``in_channels``: the decoder's identity is its kind.
        self.config = NearestConfig().to_dict()
        self.in_channels = in_channels

    def prepare(self, feat: Tensor) -> Tensor:
        """The packed ``(B, 3·s², h, w)`` output as a channel-last ``(B, h, w, 3·s²)`` table."""
        packed_scale(feat.shape[1])
        return feat.permute(0, 2, 3, 1).contiguous()

    def exact(
        self, state: DecoderState, coord: Tensor, cell: Tensor, mlp_dtype: torch.dtype
    ) -> Tensor:
        """Output pixel ``(round((y+1)·sH/2 - 1/2), round((x+1)·sW/2 - 1/2))``, clamped: ``(B, Q, 3)``.

        The nearest centre on the ``s·h × s·w`` output grid, with ``grid_sample(mode="nearest")``'s
        ties (:func:`lte.geometry.nearest_code_index`); then its code ``(i // s, j // s)`` on the LR
        grid and its place ``(i % s, j % s)`` in that code's block. Differentiable in the table.
        """
        b, th, tw, width = state.table.shape
        s = packed_scale(width)
        h, w = state.lr_hw
        iy = nearest_code_index(coord[..., 0], s * h)  # (B, Q) on the whole output grid
        ix = nearest_code_index(coord[..., 1], s * w)
        code_y, code_x = (
            torch.div(iy, s, rounding_mode="floor"),
            torch.div(ix, s, rounding_mode="floor"),
        )
        oy, ox = state.origin
        # A data-dependent check cannot be traced (lte.onnx_export): the exported graph's driver,
        # lte.inference.predict, only asks a tile for the queries its core owns.
        if not torch.compiler.is_exporting() and bool(
            (code_y < oy).any()
            | (code_y >= oy + th).any()
            | (code_x < ox).any()
            | (code_x >= ox + tw).any()
        ):
            raise ValueError(
                f"nearest decoder: a query falls outside the {th}x{tw} table at origin {state.origin}"
            )
        index = code_grid_index(code_y, code_x, (th, tw), state.origin)  # (B, Q)
        rows = gather_rows(state.table, index).view(b, -1, 3, s * s)  # (B, Q, 3, s²)
        sub = ((iy - code_y * s) * s + (ix - code_x * s)).view(b, -1, 1, 1).expand(-1, -1, 3, 1)
        return torch.gather(rows, 3, sub).squeeze(3)  # (B, Q, 3)


# --- the family's declaration ------------------------------------------------------------------------


@dataclass(frozen=True)
class NearestConfig(FamilyConfig):
    """No fields: the nearest lookup has no parameters."""


FAMILY = DecoderFamily(
    module=NearestDecoder,
    config=NearestConfig,
    release=FixedScaleRelease(wraps="liif", default_scale=2),
)
