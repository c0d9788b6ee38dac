"""The four-neighbour local ensemble shared by LTE and LIIF: lookup, and the blocked fast driver.

Why blocks: the decoders' cost is the MLP, run over 4 rows per query. Everything around it (neighbour
lookup, cos/sin, concatenations) is memory traffic, so the fast driver processes :data:`BLOCK`
queries at a time through reused buffers that stay in cache, and runs the MLP with ``addmm`` into
those buffers. A family plugs in only how a block's gathered codes become the MLP input
(:data:`BlockFeatures`); buffers, the batch and block loops and the weighted sum live here once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn

from lte import geometry
from lte.models.decoders.base import DecoderState

#: Queries per inner block: 4 rows each, so an LTE block's 256-wide buffers are 2 MiB (float32).
BLOCK = 512

#: ``features(rows, ry, rx, cell_term) -> x``: a block's MLP input from its gathered table rows
#: ``(n, D)`` (n = 4 × queries, neighbour-minor), the rows' offsets ``ry``/``rx`` ``(n, 1)`` and the
#: cell term ``(1 or n/4, 1, K)``. It may write into ``rows`` or into buffers of its own.
BlockFeatures = Callable[[Tensor, Tensor, Tensor, Tensor], Tensor]


class Neighbours(NamedTuple):
    """The local ensemble of ``(B, Q)`` queries on a state's table."""

    index: Tensor  # (B, Q, 4) flat table indices, geometry.NEIGHBOUR_OFFSETS order
    rel: Tensor  # (B, Q, 4, 2) (q - c) ⊙ (h, w), unshifted q
    weights: Tensor  # (B, Q, 4) ensemble weights (opposite areas), summing to 1


def rel_cell(cell: Tensor, feat_hw: tuple[int, int]) -> Tensor:
    """The cell in units of half a code: ``cell ⊙ (h, w)``."""
    h, w = feat_hw
    return torch.stack([cell[..., 0] * h, cell[..., 1] * w], dim=-1)


def neighbours(state: DecoderState, coord: Tensor) -> Neighbours:
    """The four neighbours of each query, on the whole image's grid, indexed into the (tile's) table.

    Separable: two row and two column lookups (:func:`geometry.axis_neighbours`) combined.
    """
    h, w = state.lr_hw
    th, tw = state.table.shape[1:3]
    iy, ry = geometry.axis_neighbours(coord[..., 0], h)  # (B, Q, 2)
    ix, rx = geometry.axis_neighbours(coord[..., 1], w)  # (B, Q, 2)
    index = geometry.code_grid_index(
        iy[..., (0, 0, 1, 1)], ix[..., (0, 1, 0, 1)], (th, tw), state.origin
    )  # (B, Q, 4)
    rel = geometry.combine_axes(ry, rx)  # (B, Q, 4, 2)
    return Neighbours(index, rel, geometry.ensemble_weights(rel))


def gather_rows(table: Tensor, index: Tensor) -> Tensor:
    """Rows of a ``(B, h, w, D)`` table at flat indices ``(B, ...)``: ``(B, ..., D)``, differentiable.

    One ``index_select`` of whole rows from the ``(B·h·w, D)`` channel-last table, with the image
    offset ``b·h·w`` added to each index. Why not ``torch.gather`` along dim 1: its index must be
    expanded over the D columns, so it reads (and its backward ``scatter_add`` writes) one element
    at a time through a D-times larger index, column-strided; ``index_select`` copies contiguous
    rows, and its backward is an ``index_add`` of whole rows into the table's gradient.
    """
    b, d = table.shape[0], table.shape[-1]
    flat = table.reshape(-1, d)  # (B·h·w, D): a view of the contiguous table
    per_image = table.shape[1] * table.shape[2]
    offset = torch.arange(b, device=index.device, dtype=index.dtype) * per_image
    rows = torch.index_select(flat, 0, (index + offset.view(b, *(1,) * (index.dim() - 1))).view(-1))
    return rows.view(*index.shape, d)


def ensemble_sum(pred: Tensor, weights: Tensor) -> Tensor:
    """``Σ_v w_v · pred_v``: ``(B, Q, 4, 3)`` predictions and ``(B, Q, 4)`` weights to ``(B, Q, 3)``."""
    return (pred * weights.unsqueeze(-1)).sum(2)


# --- fast-kernel pieces ------------------------------------------------------------------------


def linears(layers: Sequence[nn.Module], dtype: torch.dtype) -> list[tuple[Tensor, Tensor]]:
    """``(W^T, b)`` of each Linear in ``layers`` in ``dtype``: cast once per query call, not per block."""
    return [(m.weight.to(dtype).t(), m.bias.to(dtype)) for m in layers if isinstance(m, nn.Linear)]


def run_mlp(
    layers: Sequence[tuple[Tensor, Tensor]], x: Tensor, buffers: Sequence[Tensor | None]
) -> Tensor:
    """ReLU MLP over rows of ``x`` with ``addmm`` into two reused buffers; returns ``(N, out)`` float32.

    ``buffers`` are two ``(>= N, width)`` tensors of the MLP's dtype; the hidden layers ping-pong
    between them, so no block allocates (or page-faults) fresh activations. ``None`` buffers
    allocate (for one-off calls).
    """
    n = x.shape[0]
    for i, (wt, b) in enumerate(layers[:-1]):
        buf = buffers[i % 2]
        y = torch.addmm(b, x, wt) if buf is None else torch.addmm(b, x, wt, out=buf[:n])
        x = y.relu_()
    wt, b = layers[-1]
    return torch.addmm(b, x, wt).float()


def block_rows(q: int) -> int:
    """Rows of a block's buffers for ``q`` queries."""
    return 4 * min(q, BLOCK)


def blocked_ensemble(
    table: Tensor,
    nb: Neighbours,
    cell_term: Tensor,
    features: BlockFeatures,
    feature_width: int,
    layers: Sequence[tuple[Tensor, Tensor]],
    mlp_dtype: torch.dtype,
) -> Tensor:
    """The fast local ensemble: ``Σ_v w_v · MLP(features(code_v, rel_v, cell))``, ``(B, Q, 3)``.

    Args:
        table: the state's ``(B, h_t, w_t, D)`` code table.
        nb: :func:`neighbours` of the queries.
        cell_term: ``(B, Q or 1, 1, K)`` per-query (or shared) term handed to ``features``.
        features: the family's block callback (:data:`BlockFeatures`); returns ``(n, feature_width)``
            in the table's dtype.
        layers: the MLP layers after ``features`` (:func:`linears`, in ``mlp_dtype``).
    """
    b, th, tw, width = table.shape
    q = nb.index.shape[1]
    rows = block_rows(q)
    device = table.device
    gathered = torch.empty(rows, width, dtype=table.dtype, device=device)
    cast = (
        None
        if mlp_dtype == table.dtype
        else torch.empty(rows, feature_width, dtype=mlp_dtype, device=device)
    )
    hidden_width = layers[0][0].shape[1]
    hidden = [torch.empty(rows, hidden_width, dtype=mlp_dtype, device=device) for _ in range(2)]
    out = torch.empty(b, q, 3, dtype=table.dtype, device=device)
    shared = cell_term.shape[1] == 1
    for bi in range(b):
        flat = table[bi].view(th * tw, width)
        term = cell_term[bi] if shared else None
        for q0 in range(0, q, BLOCK):
            q1 = min(q, q0 + BLOCK)
            n = 4 * (q1 - q0)
            g = torch.index_select(flat, 0, nb.index[bi, q0:q1].reshape(-1), out=gathered[:n])
            ry = nb.rel[bi, q0:q1, :, 0].reshape(n, 1)
            rx = nb.rel[bi, q0:q1, :, 1].reshape(n, 1)
            x = features(g, ry, rx, term if term is not None else cell_term[bi, q0:q1])
            if cast is not None:
                x = cast[:n].copy_(x)
            pred = run_mlp(layers, x, hidden).view(-1, 4, 3)  # (n', 4, 3)
            torch.sum(pred * nb.weights[bi, q0:q1].unsqueeze(-1), dim=1, out=out[bi, q0:q1])
    return out
