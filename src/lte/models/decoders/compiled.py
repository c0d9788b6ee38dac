"""The ``"compiled"`` kernel: the local ensemble's block math through one ``torch.compile``d function.

Why this shape: ``torch.compile`` pays its cost (tens of seconds) per distinct input shape, and a
query's shapes vary with everything a user controls (image and tile size, chunk, scale). So only the
part with a fixed shape is compiled: one block of :data:`~lte.models.decoders.ensemble.BLOCK`
queries, from its gathered table rows ``(4·BLOCK, D)`` to its ``(BLOCK, 3)`` ensemble sum (the
family's features, the MLP and the weighted sum, fused by the compiler). The neighbour lookup and
the row gather stay eager: the table's size changes per tile and image. The last block of a call
is padded to ``BLOCK`` (table row 0, weight 0, discarded), so shapes never change and nothing
recompiles per tile, chunk or image.

Weights are *inputs* of the compiled function, not constants: no ``freezing``. Freezing would fold
the weights into the compiled code (and let oneDNN prepack them on CPU), but a later weight change
(``load_state_dict``, a training step, a second model of the same shape) would then silently give
the old model's results. On an AVX2 CPU a frozen block measured no faster (float32 is already near
the GEMM rate); on AVX512-BF16/AMX machines prepacking is the lever to re-measure.

The compiled function is cached on the decoder instance per (MLP dtype, device) in a plain dict
(:data:`~lte.models.decoders.base.COMPILED_CACHE_ATTR`): never in ``state_dict``, checkpoints,
descriptions or pickles. Its first call in a process goes through the compile cache
(:mod:`lte.compile_cache`), so a later process on the same machine loads the compiled code instead
of compiling it again.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from lte import compile_cache
from lte.models.decoders.base import COMPILED_CACHE_ATTR, Decoder
from lte.models.decoders.ensemble import BLOCK, Neighbours

#: ``block(rows, ry, rx, term, weights, extra, layers) -> (BLOCK, 3)``: one block's ensemble sum from
#: its gathered rows ``(4·BLOCK, D)``, offsets ``(4·BLOCK, 1)`` each, cell term ``(BLOCK, 1, K)``,
#: ensemble weights ``(BLOCK, 4)``, family tensors ``extra`` and MLP layers ``[(W^T, b), ...]``.
BlockFn = Callable[..., Tensor]


class CachedBlock:
    """A ``torch.compile``d block whose first call goes through the compile cache's entry.

    ``torch.compile`` compiles lazily, at the first call; that call is made under the entry's lock
    with the entry loaded (:func:`lte.compile_cache.first_call`), every later one directly.
    """

    def __init__(self, fn: BlockFn, key: compile_cache.CacheKey) -> None:
        self.fn = fn
        self.key = key
        self.called = False

    def __call__(self, *args: object) -> Tensor:
        if self.called:
            return self.fn(*args)
        out = compile_cache.first_call(self.key, lambda: self.fn(*args))
        self.called = True
        return out


def _compiled(
    decoder: Decoder, block: BlockFn, dtype: torch.dtype, device: torch.device
) -> BlockFn:
    """``block`` compiled once for this decoder instance, MLP dtype and device (cached on it)."""
    cache = decoder.__dict__.setdefault(COMPILED_CACHE_ATTR, {})
    key = (block.__name__, dtype, str(device))
    if key not in cache:
        fn = torch.compile(block, dynamic=False, fullgraph=True)
        cache[key] = CachedBlock(fn, compile_cache.cache_key(decoder, dtype, device))
    return cache[key]


def mlp(x: Tensor, layers: Sequence[tuple[Tensor, Tensor]]) -> Tensor:
    """ReLU MLP over rows of ``x`` in the layers' dtype, float32 out (as ``ensemble.run_mlp``)."""
    x = x.to(layers[0][0].dtype)
    for wt, b in layers[:-1]:
        x = torch.relu(torch.addmm(b, x, wt))
    wt, b = layers[-1]
    return torch.addmm(b, x, wt).float()


def weighted_sum(pred: Tensor, weights: Tensor) -> Tensor:
    """``(4·n, 3)`` neighbour-minor predictions and ``(n, 4)`` weights to ``(n, 3)``."""
    return (pred.view(-1, 4, 3) * weights.unsqueeze(-1)).sum(1)


def compiled_ensemble(
    decoder: Decoder,
    block: BlockFn,
    table: Tensor,
    nb: Neighbours,
    cell_term: Tensor,
    extra: Sequence[Tensor],
    layers: Sequence[tuple[Tensor, Tensor]],
) -> Tensor:
    """``Σ_v w_v · MLP(features(code_v, rel_v, cell))`` ``(B, Q, 3)`` through the compiled ``block``.

    Same arguments as :func:`~lte.models.decoders.ensemble.blocked_ensemble` (``cell_term``
    ``(B, Q or 1, 1, K)``), plus the family's ``extra`` tensors. Every call of the compiled function
    sees the same shapes: ``Q`` is padded to a multiple of ``BLOCK`` with table row 0 and weight 0.
    """
    b, th, tw, width = table.shape
    q = nb.index.shape[1]
    pad = -q % BLOCK
    fn = _compiled(decoder, block, layers[0][0].dtype, table.device)
    index = F.pad(nb.index, (0, 0, 0, pad))  # (B, Qp, 4), padding reads row 0
    weights = F.pad(nb.weights, (0, 0, 0, pad))  # (B, Qp, 4), padding weighs 0
    ry = F.pad(nb.rel[..., 0], (0, 0, 0, pad))  # (B, Qp, 4)
    rx = F.pad(nb.rel[..., 1], (0, 0, 0, pad))
    shared = cell_term.shape[1] == 1
    out = torch.empty(b, q + pad, 3, dtype=table.dtype, device=table.device)
    for bi in range(b):
        flat = table[bi].reshape(th * tw, width)
        if shared:
            terms = cell_term[bi].expand(BLOCK, 1, cell_term.shape[-1]).contiguous()
        else:
            padded = F.pad(cell_term[bi], (0, 0, 0, 0, 0, pad))  # (Qp, 1, K)
        for q0 in range(0, q + pad, BLOCK):
            q1 = q0 + BLOCK
            rows = flat.index_select(0, index[bi, q0:q1].reshape(-1))  # (4·BLOCK, D)
            term = terms if shared else padded[q0:q1]
            out[bi, q0:q1] = fn(
                rows,
                ry[bi, q0:q1].reshape(-1, 1),
                rx[bi, q0:q1].reshape(-1, 1),
                term,
                weights[bi, q0:q1],
                tuple(extra),
                list(layers),
            )
    return out[:, :q]


# --- the families' blocks ----------------------------------------------------------------------


def lte_block(
    rows: Tensor,
    ry: Tensor,
    rx: Tensor,
    phase: Tensor,
    weights: Tensor,
    extra: tuple[Tensor, ...],
    layers: list[tuple[Tensor, Tensor]],
) -> Tensor:
    """LTE's block: ``θ = f_y·ry + f_x·rx + P(cell)``, ``a ⊙ [cos πθ | sin πθ]``, MLP, ensemble sum."""
    half = phase.shape[-1]
    hid = 2 * half
    amp, fy, fx = rows[:, :hid], rows[:, hid : hid + half], rows[:, hid + half :]
    theta = (fy * ry + fx * rx).view(-1, 4, half) + phase  # (BLOCK, 4, half)
    theta = theta.view(-1, half) * math.pi
    z = amp * torch.cat([torch.cos(theta), torch.sin(theta)], dim=-1)
    return weighted_sum(mlp(z, layers), weights)


def liif_block(
    rows: Tensor,
    ry: Tensor,
    rx: Tensor,
    const: Tensor,
    weights: Tensor,
    extra: tuple[Tensor, ...],
    layers: list[tuple[Tensor, Tensor]],
) -> Tensor:
    """LIIF's block: the first layer finished (``+ rel·W_rel + cell term + bias``, ReLU), the rest."""
    w_rel_y, w_rel_x = extra
    width = rows.shape[-1]
    x = (rows.view(-1, 4, width) + const).view(-1, width) + ry * w_rel_y + rx * w_rel_x
    return weighted_sum(mlp(torch.relu(x), layers), weights)
