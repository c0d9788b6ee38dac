"""What LM-LTE and LM-LIIF share (He & Jin, CVPR 2024; SPEC.md "LMF"): the modulation layout, the
modulated render MLP, its blocked fast driver, and the release's nested specs.

LMF splits a decoder in two. A wide *hypernetwork* runs once per LR code, for the image's one cell,
and writes the code's *modulation vector* into the code table (``prepare``); a 16-wide *render MLP*
runs per HR query and neighbour, each of its hidden layers scaled and shifted by the modulations of
that neighbour's code. So the table is the hypernetwork's output, and a query only reads rows of it.

Why the fast driver has blocks of its own (not :func:`~lte.models.decoders.ensemble.blocked_ensemble`):
the render MLP is 16 wide, so a block costs the gather of its rows (one modulation vector per query
and neighbour) and 2·depth element-wise passes over slices of them, not GEMMs. Blocks of
:data:`BLOCK` queries keep a block's gathered rows in cache while those passes read them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lte.models.decoders.ensemble import Neighbours
from lte.models.fields import (
    MAX_WIDTH,
    MLP_HIDDEN,
    FieldError,
    bool_field,
    check_node,
    int_field,
    must_be_true,
    one_of,
)

#: Queries per block of the fast driver: 4 rows each, so LM-LTE's gathered rows (288 wide) are 4.5 MiB.
BLOCK = 1024
#: Render depth: hidden layers of the render MLP (the released models use 6 and 8).
RENDER_DEPTH = int_field(1, 32)


@dataclass(frozen=True)
class Modulations:
    """Where a code's modulation vector keeps what: all scales, then all shifts, then the latent part.

    Layer ``l``'s scale is channels ``[W·l, W·l + W)`` and its shift ``[S + W·l, S + W·l + W)``, with
    ``W`` the render width and ``S = W·depth`` (0 without scales); the family's latent part (what the
    render step starts from) follows at ``[M, M + latent)``, ``M = W·depth·(scale + shift)``.
    The table keeps ``1 + s`` in the scale channels: the render step's factor, added once per code
    rather than once per query and neighbour (the same float32 addition the official code does).
    """

    width: int
    depth: int
    scale: bool
    shift: bool
    latent: int

    @property
    def dim(self) -> int:
        """Modulation channels (scales and shifts), the official ``mod_dim``."""
        return self.width * self.depth * (int(self.scale) + int(self.shift))

    @property
    def total(self) -> int:
        """The hypernetwork's output width: modulations plus the latent part."""
        return self.dim + self.latent

    def scale_at(self, layer: int) -> slice:
        """Channels of hidden layer ``layer``'s scale (``1 + s``) in a table row."""
        return slice(self.width * layer, self.width * (layer + 1))

    def shift_at(self, layer: int) -> slice:
        """Channels of hidden layer ``layer``'s shift in a table row."""
        start = self.width * self.depth if self.scale else 0
        return slice(start + self.width * layer, start + self.width * (layer + 1))

    @property
    def shifts(self) -> slice:
        """Every shift channel: what CMSR's complexity averages."""
        start = self.width * self.depth if self.scale else 0
        return slice(start, start + self.width * self.depth)

    @property
    def latent_at(self) -> slice:
        """The latent part's channels."""
        return slice(self.dim, self.total)

    def add_one_to_scales(self, mod: Tensor) -> Tensor:
        """The hypernetwork's output ``(..., total)`` as the table stores it: scales as ``1 + s``."""
        if not self.scale:
            return mod
        return torch.cat(
            [mod[..., : self.width * self.depth] + 1.0, mod[..., self.width * self.depth :]], dim=-1
        )

    def complexity(self, table: Tensor) -> Tensor:
        """Mean ``|shift|`` of each code, ``(B, h, w)`` from ``(B, h, w, D)`` (SPEC "CMSR")."""
        return table[..., self.shifts].abs().mean(-1)


def render(
    layers: nn.Sequential,
    x: Tensor,
    rows: Tensor,
    mod: Modulations,
    dtype: torch.dtype,
    *,
    first_done: bool = False,
) -> Tensor:
    """The modulated render MLP, differentiable: ``(..., in)`` inputs with their codes' table rows
    ``(..., D)`` -> ``(..., 3)`` float32.

    Hidden layer ``l``: ``x ← Linear(x)``, ``x ← x ⊙ (1 + s_l) + t_l``, ReLU; the output Linear is not
    modulated. ``first_done``: ``x`` is already layer 0's Linear output (LM-LIIF finishes it from
    its table). With a ``dtype`` other than float32, linears and modulations compute in it.
    """
    lead = x.shape[:-1]
    x = x.reshape(-1, x.shape[-1])
    rows = rows.reshape(-1, rows.shape[-1])
    low = dtype != x.dtype
    if low:
        x, rows = x.to(dtype), rows.to(dtype)
    linears = [m for m in layers if isinstance(m, nn.Linear)]
    for layer, lin in enumerate(linears[:-1]):
        if layer or not first_done:
            weight, bias = (
                (lin.weight.to(dtype), lin.bias.to(dtype)) if low else (lin.weight, lin.bias)
            )
            x = F.linear(x, weight, bias)
        if mod.scale:
            x = x * rows[:, mod.scale_at(layer)]
        if mod.shift:
            x = x + rows[:, mod.shift_at(layer)]
        x = torch.relu(x)
    last = linears[-1]
    weight, bias = (last.weight.to(dtype), last.bias.to(dtype)) if low else (last.weight, last.bias)
    return F.linear(x, weight, bias).float().view(*lead, -1)


#: ``features(rows, ry, rx, cell_term) -> x``: a block's render input (or, with ``first_done``, its
#: layer-0 Linear output) from its gathered rows ``(n, D)`` (n = 4 × queries, neighbour-minor), the
#: rows' offsets ``ry``/``rx`` ``(n, 1)`` and the cell term ``(1 or n/4, 1, K)``.
RenderFeatures = Callable[[Tensor, Tensor, Tensor, Tensor], Tensor]


def blocked_render(
    table: Tensor,
    nb: Neighbours,
    cell_term: Tensor,
    features: RenderFeatures,
    layers: Sequence[tuple[Tensor, Tensor]],
    mod: Modulations,
    mlp_dtype: torch.dtype,
    *,
    first_done: bool = False,
) -> Tensor:
    """The fast LMF ensemble: ``Σ_v w_v · render(features(code_v, rel_v, cell), mod_v)``, ``(B, Q, 3)``.

    Args:
        table: the state's ``(B, h_t, w_t, D)`` table of modulation vectors.
        nb: the queries' neighbours (:func:`~lte.models.decoders.ensemble.neighbours`).
        cell_term: ``(B, Q or 1, 1, K)`` per-query (or shared) term handed to ``features``.
        features: the family's block callback (:data:`RenderFeatures`).
        layers: ``(W^T, b)`` of the render MLP's Linears in ``mlp_dtype``, layer 0's left out when
            ``first_done``.
    """
    b, th, tw, width = table.shape
    q = nb.index.shape[1]
    rows = 4 * min(q, BLOCK)
    device = table.device
    gathered = torch.empty(rows, width, dtype=table.dtype, device=device)
    hidden = [torch.empty(rows, mod.width, dtype=mlp_dtype, device=device) for _ in range(2)]
    out = torch.empty(b, q, 3, dtype=table.dtype, device=device)
    shared = cell_term.shape[1] == 1
    skip = int(first_done)
    for bi in range(b):
        flat = table[bi].view(th * tw, width)
        for q0 in range(0, q, BLOCK):
            q1 = min(q, q0 + BLOCK)
            n = 4 * (q1 - q0)
            g = torch.index_select(flat, 0, nb.index[bi, q0:q1].reshape(-1), out=gathered[:n])
            ry = nb.rel[bi, q0:q1, :, 0].reshape(n, 1)
            rx = nb.rel[bi, q0:q1, :, 1].reshape(n, 1)
            x = features(g, ry, rx, cell_term[bi] if shared else cell_term[bi, q0:q1])
            x = x.to(mlp_dtype)
            for layer in range(mod.depth):
                if layer >= skip:
                    wt, bias = layers[layer - skip]
                    x = torch.addmm(bias, x, wt, out=hidden[layer % 2][:n])
                if mod.scale:
                    x.mul_(g[:, mod.scale_at(layer)])
                if mod.shift:
                    x.add_(g[:, mod.shift_at(layer)])
                x.relu_()
            wt, bias = layers[-1]
            pred = torch.addmm(bias, x, wt).float().view(-1, 4, 3)  # (n', 4, 3)
            torch.sum(pred * nb.weights[bi, q0:q1].unsqueeze(-1), dim=1, out=out[bi, q0:q1])
    return out


# --- the release's nested specs (``imnet_spec``: lmmlp, ``hypernet_spec``: mlp) -----------------------

#: ``lmmlp``'s arguments besides the render width, depth and switches: read, never kept.
_LMMLP_OPTIONAL = ("out_dim", "mod_up_merge", "use_conv")


def read_render_spec(spec: Any, path: str) -> dict[str, Any]:
    """``render_width``, ``render_depth``, ``mod_scale``, ``mod_shift`` of a released ``imnet_spec``.

    The official constructors pass ``mod_up_merge=False`` themselves (so a file's value is unused),
    and lte implements the Linear form only (``use_conv`` false) with RGB out.
    """
    check_node(spec, path, ("name", "args"))
    one_of(spec["name"], f"{path}.name", ("lmmlp",))
    args = spec["args"]
    required = ("hidden_dim", "hidden_depth")
    check_node(args, f"{path}.args", required, ("mod_scale", "mod_shift", *_LMMLP_OPTIONAL))
    where = f"{path}.args"
    if "out_dim" in args and int_field(1, MAX_WIDTH)(args["out_dim"], f"{where}.out_dim") != 3:
        raise FieldError(f"{where}.out_dim", f"must be 3 (RGB), got {args['out_dim']}")
    if "mod_up_merge" in args:
        bool_field()(args["mod_up_merge"], f"{where}.mod_up_merge")
    if "use_conv" in args and bool_field()(args["use_conv"], f"{where}.use_conv"):
        raise FieldError(
            f"{where}.use_conv", "must be false (lte implements the Linear render MLP)"
        )
    return {
        "render_width": int_field(1, MAX_WIDTH)(args["hidden_dim"], f"{where}.hidden_dim"),
        "render_depth": RENDER_DEPTH(args["hidden_depth"], f"{where}.hidden_depth"),
        # lmmlp's defaults: both switches on
        "mod_scale": bool_field()(args.get("mod_scale", True), f"{where}.mod_scale"),
        "mod_shift": bool_field()(args.get("mod_shift", True), f"{where}.mod_shift"),
    }


def read_hypernet_spec(spec: Any, path: str) -> list[int]:
    """The hidden widths of a released ``hypernet_spec`` (an ``mlp``; its ``out_dim`` is unused:
    the official constructors set the output width from the render MLP, SPEC "LM-LIIF")."""
    check_node(spec, path, ("name", "args"))
    one_of(spec["name"], f"{path}.name", ("mlp",))
    args = spec["args"]
    check_node(args, f"{path}.args", ("hidden_list",), ("out_dim", "use_conv"))
    if "out_dim" in args:
        int_field(1, MAX_WIDTH)(args["out_dim"], f"{path}.args.out_dim")
    if "use_conv" in args and bool_field()(args["use_conv"], f"{path}.args.use_conv"):
        raise FieldError(f"{path}.args.use_conv", "must be false (lte implements the Linear MLP)")
    return list(MLP_HIDDEN(args["hidden_list"], f"{path}.args.hidden_list"))


def read_switches(args: Mapping[str, Any], path: str, title: str, switches: Sequence[str]) -> None:
    """The released booleans lte implements only one way: ``mod_input`` must be there and true
    (the constructors default it to false, another model), the others true when present.
    ``mixed_le``, which earlier released configs carry and the current constructors reject, is
    checked for type and ignored."""
    for name in switches:
        if name == "mod_input" and name not in args:
            raise FieldError(
                f"{path}.mod_input",
                f"is missing: lte implements {title} with mod_input true (the compressed latent "
                "code), which the released constructors do not assume",
            )
        if name in args:
            must_be_true(args[name], f"{path}.{name}", f"lte implements {title} with {name} only")
    if "mixed_le" in args:
        bool_field()(args["mixed_le"], f"{path}.mixed_le")


def write_specs(decoder: Mapping[str, Any], total: int) -> dict[str, Any]:
    """The released ``imnet_spec`` and ``hypernet_spec`` of an LMF decoder description."""
    return {
        "imnet_spec": {
            "name": "lmmlp",
            "args": {
                "out_dim": 3,
                "hidden_dim": decoder["render_width"],
                "hidden_depth": decoder["render_depth"],
                "mod_scale": decoder["mod_scale"],
                "mod_shift": decoder["mod_shift"],
            },
        },
        "hypernet_spec": {
            "name": "mlp",
            "args": {"out_dim": total, "hidden_list": list(decoder["hypernet_hidden"])},
        },
    }
