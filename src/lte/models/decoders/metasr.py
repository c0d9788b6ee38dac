"""Meta-SR's meta-upscale module (Hu et al., CVPR 2019) as reimplemented by LIIF, SPEC.md "Meta-SR".

The family's declaration (:data:`FAMILY`) sits at the end: its typed fields and its ``metasr`` release.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from lte import geometry
from lte.models.decoders.base import Decoder, DecoderState
from lte.models.decoders.ensemble import BLOCK, gather_rows, linears, run_mlp
from lte.models.family import DecoderFamily, DecoderRelease
from lte.models.fields import MLP_HIDDEN, FamilyConfig, param
from lte.models.mlp import MLP


class MetaSRDecoder(Decoder):
    """An MLP maps the query's offset and scale to a ``(9C, 3)`` weight matrix applied to the nearest
    code's unfolded features. No ensemble and no residual.

    Args:
        in_channels: encoder output width C.
        mlp_hidden: hidden widths of the weight-prediction MLP (``[256]``).
    """

    kind = "metasr"

    def __init__(self, in_channels: int, mlp_hidden: Sequence[int] = (256,)) -> None:
        super().__init__()
        #: Constructor arguments but ``in_channels`` (the encoder's width): the decoder's identity.
        self.config = MetaSRConfig(mlp_hidden).to_dict()
        self.in_channels = in_channels
        self.in_features = in_channels * 9
        self.imnet = MLP(3, self.in_features * 3, list(mlp_hidden))

    def prepare(self, feat: Tensor) -> Tensor:
        """Channel-last features with a one-code zero border, ``(B, h+2, w+2, C)``.

        The 3×3 unfold happens at lookup: storing C values per code (not 9C) keeps the table 9×
        smaller; the zero border is the unfold's zero padding.
        """
        padded = F.pad(feat, (1, 1, 1, 1))  # (B, C, h+2, w+2)
        return padded.permute(0, 2, 3, 1).contiguous()  # (B, h+2, w+2, C)

    # --- shared pieces -------------------------------------------------------------------------

    def _lookup(self, state: DecoderState, coord: Tensor, cell: Tensor) -> tuple[Tensor, Tensor]:
        """Each query's 3×3 window start in the padded table ``(B, Q)`` and MLP input ``(B, Q, 3)``.

        Meta-SR places codes at their top-left corners and queries at the target pixel's corner;
        the MLP sees ``(rel_y, rel_x, scale)`` in units of a code.
        """
        h, w = state.lr_hw
        thp, twp = state.table.shape[1:3]  # padded by one code on each side
        cell = cell.expand(coord.shape[0], coord.shape[1], 2)
        eps = geometry.EPS_SHIFT
        qc = coord - cell / 2  # (B, Q, 2)
        q_look = (qc + eps).clamp(-1 + eps, 1 - eps)
        iy = geometry.nearest_code_index(q_look[..., 0], h)
        ix = geometry.nearest_code_index(q_look[..., 1], w)
        corner_y = geometry.make_coord_1d(h, device=coord.device) - (2 / h) / 2
        corner_x = geometry.make_coord_1d(w, device=coord.device) - (2 / w) / 2
        rel = torch.stack(
            [(qc[..., 0] - corner_y[iy]) * (h / 2), (qc[..., 1] - corner_x[ix]) * (w / 2)], dim=-1
        )
        scale = cell[..., :1] * (h / 2)  # (B, Q, 1)
        # The padded table's 3×3 window of code (iy, ix) starts at padded (iy, ix).
        base = geometry.code_grid_index(iy, ix, (thp, twp), state.origin)  # (B, Q)
        return base, torch.cat([rel, scale], dim=-1)

    @staticmethod
    def _window(table_w: int, device: torch.device) -> Tensor:
        """Flat offsets of a 3×3 window in a table ``table_w`` wide, ``k = 3·ky + kx`` (unfold order)."""
        k = torch.arange(3, device=device)
        return (k.view(3, 1) * table_w + k.view(1, 3)).reshape(9)

    # --- the definition ------------------------------------------------------------------------

    def exact(
        self, state: DecoderState, coord: Tensor, cell: Tensor, mlp_dtype: torch.dtype
    ) -> Tensor:
        """SPEC's Meta-SR: ``unfold(F)_q · MLP(rel, scale)`` per query."""
        b, q = coord.shape[:2]
        c = self.in_channels
        base, mlp_in = self._lookup(state, coord, cell)
        window = self._window(state.table.shape[2], coord.device)
        codes = gather_rows(state.table, base.unsqueeze(-1) + window)  # (B, Q, 9, C), k-major
        codes = codes.transpose(-1, -2).reshape(b, q, 1, 9 * c)  # (B, Q, 1, 9C), c*9 + k
        weight = self.imnet(mlp_in, dtype=mlp_dtype).view(b, q, 9 * c, 3)  # (B, Q, 9C, 3)
        # Under autocast (bf16-mixed) only the MLP runs in bf16: the product stays float32.
        with torch.autocast(coord.device.type, enabled=False):
            return (codes @ weight.float()).squeeze(-2)  # (B, Q, 3)

    # --- the fast kernel -----------------------------------------------------------------------

    def _permuted_layers(self, dtype: torch.dtype) -> list[tuple[Tensor, Tensor]]:
        """The MLP's layers with the last one's outputs reordered from ``(c*9 + k)*3 + o`` to
        ``(k*C + c)*3 + o``, so predicted weights match the k-major gathered window."""
        layers = linears(self.imnet.layers, dtype)
        c = self.in_channels
        rows = torch.arange(9 * c * 3, device=layers[-1][0].device)
        rows = rows.view(c, 9, 3).transpose(0, 1).reshape(-1)  # (9C*3,)
        wt, bias = layers[-1]
        return [*layers[:-1], (wt[:, rows], bias[rows])]

    def fast(
        self, state: DecoderState, coord: Tensor, cell: Tensor, mlp_dtype: torch.dtype
    ) -> Tensor:
        """:meth:`exact` per image, the weight MLP evaluated once per distinct input when it repeats.

        On a pixel grid the MLP input repeats with the scale's period: each distinct
        ``(rel, scale)`` is evaluated once and its weights multiply every query that shares it.
        Random queries (no repetition) go through the MLP in blocks instead.
        """
        table = state.table
        b, q = coord.shape[:2]
        base, mlp_in = self._lookup(state, coord, cell)
        window = self._window(table.shape[2], coord.device)
        layers = self._permuted_layers(mlp_dtype)
        out = torch.empty(b, q, 3, dtype=table.dtype, device=table.device)
        for bi in range(b):
            flat = table[bi].view(-1, table.shape[-1])  # (h_p * w_p, C)
            uniq, inv = torch.unique(mlp_in[bi], dim=0, return_inverse=True)
            if 8 * uniq.shape[0] <= q:
                self._shared_weights(flat, base[bi], window, uniq, inv, layers, out[bi])
            else:
                self._per_query_weights(flat, base[bi], window, mlp_in[bi], layers, out[bi])
        return out

    def _shared_weights(
        self,
        flat: Tensor,
        base: Tensor,
        window: Tensor,
        uniq: Tensor,
        inv: Tensor,
        layers: list[tuple[Tensor, Tensor]],
        out: Tensor,
    ) -> None:
        """One image, ``U`` distinct MLP inputs: queries sorted by input, one GEMM per group."""
        c9 = 9 * self.in_channels
        weight = run_mlp(layers, uniq.to(layers[0][0].dtype), [None, None]).view(-1, c9, 3)
        order = torch.argsort(inv)
        counts = torch.bincount(inv, minlength=uniq.shape[0]).tolist()
        idx = (base[order].unsqueeze(-1) + window).reshape(-1)  # (Q*9,)
        codes = flat.index_select(0, idx).view(-1, c9)  # (Q, 9C), k-major
        res = torch.empty(codes.shape[0], 3, dtype=out.dtype, device=out.device)
        start = 0
        for u, count in enumerate(counts):
            if count:
                torch.mm(codes[start : start + count], weight[u], out=res[start : start + count])
            start += count
        out[order] = res

    def _per_query_weights(
        self,
        flat: Tensor,
        base: Tensor,
        window: Tensor,
        mlp_in: Tensor,
        layers: list[tuple[Tensor, Tensor]],
        out: Tensor,
    ) -> None:
        """One image, every query its own weights: :data:`BLOCK` queries per batched product."""
        c9 = 9 * self.in_channels
        for q0 in range(0, mlp_in.shape[0], BLOCK):
            q1 = min(mlp_in.shape[0], q0 + BLOCK)
            x = mlp_in[q0:q1].to(layers[0][0].dtype)
            weight = run_mlp(layers, x, [None, None]).view(-1, c9, 3)  # (n, 9C, 3)
            idx = (base[q0:q1].unsqueeze(-1) + window).reshape(-1)
            codes = flat.index_select(0, idx).view(-1, 1, c9)  # (n, 1, 9C)
            out[q0:q1] = torch.bmm(codes, weight).squeeze(1)


# --- the family's declaration ------------------------------------------------------------------------


@dataclass(frozen=True)
class MetaSRConfig(FamilyConfig):
    """Meta-SR's constructor arguments but ``in_channels``, with their bounds; defaults: LIIF's."""

    mlp_hidden: tuple[int, ...] = param(MLP_HIDDEN, (256,))


#: The ``metasr`` release takes no arguments but the encoder: its weight MLP is fixed to ``[256]``.
RELEASE = DecoderRelease(name="metasr", title="Meta-SR", defaults=MetaSRConfig())

FAMILY = DecoderFamily(
    module=MetaSRDecoder,
    config=MetaSRConfig,
    release=RELEASE,
    v1_targets=("lte.models.MetaSRDecoder", "lte.models.decoders.MetaSRDecoder"),
)
