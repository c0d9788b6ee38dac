"""LIIF: the Local Implicit Image Function decoder (Chen et al., CVPR 2021), SPEC.md "LIIF decoder".

The family's declaration (:data:`FAMILY`) sits at the end: its typed fields and its ``liif`` release.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from lte.models.decoders.base import Decoder, DecoderState
from lte.models.decoders.compiled import compiled_ensemble, liif_block
from lte.models.decoders.ensemble import (
    blocked_ensemble,
    ensemble_sum,
    gather_rows,
    linears,
    neighbours,
    rel_cell,
)
from lte.models.family import DecoderFamily, DecoderRelease
from lte.models.fields import MLP_HIDDEN, FamilyConfig, param
from lte.models.mlp import MLP, run_layers


class LIIFDecoder(Decoder):
    """Unfolded features, local ensemble and cell decoding.

    Args:
        in_channels: encoder output width C (the MLP sees 9C + 4 inputs).
        mlp_hidden: hidden widths of the MLP (``[256, 256, 256, 256]``).
    """

    kind = "liif"

    def __init__(self, in_channels: int, mlp_hidden: Sequence[int] = (256, 256, 256, 256)) -> None:
        super().__init__()
        #: Constructor arguments but ``in_channels`` (the encoder's width): the decoder's identity.
        self.config = LIIFConfig(mlp_hidden).to_dict()
        self.in_channels = in_channels
        self.imnet = MLP(in_channels * 9 + 4, 3, list(mlp_hidden))

    def prepare(self, feat: Tensor) -> Tensor:
        """The first MLP layer's feature part, applied once per code: ``(B, h, w, 256)``.

        The MLP's first layer is linear in ``[unfold(F)(9C), rel, rel_cell]``; its ``9C`` columns
        act on the code alone. Applied to the 3×3 unfolded features (channel-major ``c*9 + k``)
        they are exactly a 3×3 convolution with those columns as its kernel, so the table holds
        ``conv3x3(F)``: 256 values per code instead of 9C, and 9C·256 fewer multiply-adds per row.
        """
        first = self.imnet.layers[0]
        c = self.in_channels
        kernel = first.weight[:, : 9 * c].reshape(-1, c, 3, 3)  # (256, C, 3, 3)
        maps = F.conv2d(feat, kernel, padding=1)  # (B, 256, h, w)
        return maps.permute(0, 2, 3, 1).contiguous()  # (B, h, w, 256)

    def _first_layer_columns(self) -> tuple[Tensor, Tensor, Tensor]:
        """The first layer's ``rel`` columns ``(256, 2)``, ``rel_cell`` columns ``(256, 2)``, bias."""
        first = self.imnet.layers[0]
        c9 = 9 * self.in_channels
        return first.weight[:, c9 : c9 + 2], first.weight[:, c9 + 2 :], first.bias

    def exact(
        self, state: DecoderState, coord: Tensor, cell: Tensor, mlp_dtype: torch.dtype
    ) -> Tensor:
        """SPEC's LIIF: ``Σ_v w_v · MLP([unfold(F)_v, rel_v, rel_cell])``, the first layer split.

        Layer 1 is finished on the gathered rows with one ``addmm`` (the ``rel`` columns) and one
        add (cell columns and bias), whose gradient flows to the rows unchanged.
        """
        w_rel, w_cell, bias = self._first_layer_columns()
        nb = neighbours(state, coord)
        rows = gather_rows(state.table, nb.index)  # (B, Q, 4, 256): the features' share of layer 1
        width = rows.shape[-1]
        x = torch.addmm(rows.view(-1, width), nb.rel.reshape(-1, 2), w_rel.t()).view(rows.shape)
        # Out of place: an in-place add on this view would make autograd clone its gradient.
        x = x + F.linear(rel_cell(cell, state.lr_hw), w_cell, bias).unsqueeze(2)
        pred = run_layers(self.imnet.layers[1:], x, mlp_dtype)  # ReLU, then the other layers
        return ensemble_sum(pred, nb.weights)  # (B, Q, 3)

    def fast(
        self, state: DecoderState, coord: Tensor, cell: Tensor, mlp_dtype: torch.dtype
    ) -> Tensor:
        """:meth:`exact` through the blocked driver: layer 1 finished in place on the gathered rows."""
        w_rel, w_cell, bias = self._first_layer_columns()
        w_rel_y, w_rel_x = w_rel[:, 0], w_rel[:, 1]  # (256,) each
        nb = neighbours(state, coord)
        # Cell term plus bias: one row per image when every query shares the cell.
        const = F.linear(rel_cell(cell, state.lr_hw), w_cell, bias).unsqueeze(2)  # (B, Q|1, 1, 256)

        def first_layer(x: Tensor, ry: Tensor, rx: Tensor, cst: Tensor) -> Tensor:
            x.view(-1, 4, x.shape[1]).add_(cst)
            x.addr_(ry.view(-1), w_rel_y)
            x.addr_(rx.view(-1), w_rel_x)
            return x.relu_()  # (4n', 256): the first layer's output

        width = state.table.shape[-1]
        layers = linears(self.imnet.layers, mlp_dtype)[1:]
        return blocked_ensemble(state.table, nb, const, first_layer, width, layers, mlp_dtype)

    def compiled(
        self, state: DecoderState, coord: Tensor, cell: Tensor, mlp_dtype: torch.dtype
    ) -> Tensor:
        """:meth:`fast`'s blocks, each one call of a ``torch.compile``d function (see ``compiled``)."""
        w_rel, w_cell, bias = self._first_layer_columns()
        nb = neighbours(state, coord)
        const = F.linear(rel_cell(cell, state.lr_hw), w_cell, bias).unsqueeze(2)  # (B, Q|1, 1, 256)
        extra = (w_rel[:, 0].contiguous(), w_rel[:, 1].contiguous())
        layers = linears(self.imnet.layers, mlp_dtype)[1:]
        return compiled_ensemble(self, liif_block, state.table, nb, const, extra, layers)


# --- the family's declaration ------------------------------------------------------------------------


@dataclass(frozen=True)
class LIIFConfig(FamilyConfig):
    """LIIF's constructor arguments but ``in_channels``, with their bounds; defaults: the paper's."""

    mlp_hidden: tuple[int, ...] = param(MLP_HIDDEN, (256, 256, 256, 256))


#: The ``liif`` release: ``imnet_spec`` holds the MLP; feature unfolding, local ensemble and cell
#: decoding are switches there, and lte implements LIIF with all three on.
RELEASE = DecoderRelease(
    name="liif",
    title="LIIF",
    defaults=LIIFConfig(),
    mlp=True,
    flags=("local_ensemble", "feat_unfold", "cell_decode"),
)

FAMILY = DecoderFamily(
    module=LIIFDecoder,
    config=LIIFConfig,
    release=RELEASE,
    v1_targets=("lte.models.LIIFDecoder", "lte.models.decoders.LIIFDecoder"),
)
