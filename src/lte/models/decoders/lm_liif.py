"""LM-LIIF: LIIF as a latent modulated function (He & Jin, CVPR 2024), SPEC.md "LMF" and "LM-LIIF".

LR space, once per code for the image's cell (:meth:`LMLIIFDecoder.prepare`): the hypernetwork reads
the code's 3x3-unfolded features and the image's ``rel_cell`` and writes the render MLP's scales and
shifts and a 16-value latent code. HR space, per query and neighbour (:meth:`LMLIIFDecoder.exact`):
``[latent (16), rel (2), rel_cell (2)]`` through the modulated render MLP, then the local ensemble
with swapped areas. No bilinear residual.

The family's declaration (:data:`FAMILY`) sits at the end: its fields, its presets (the SwinIR
variant renders 8 layers deep) and the ``lmliif`` release.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from lte.models.decoders.base import Decoder, DecoderState
from lte.models.decoders.ensemble import ensemble_sum, gather_rows, linears, neighbours, rel_cell
from lte.models.decoders.lmf import (
    BLOCK,
    RENDER_DEPTH,
    Modulations,
    blocked_render,
    read_hypernet_spec,
    read_render_spec,
    read_switches,
    render,
    write_specs,
)
from lte.models.family import DecoderFamily, DecoderRelease
from lte.models.fields import (
    MAX_WIDTH,
    MLP_HIDDEN,
    FamilyConfig,
    bool_field,
    check_node,
    int_field,
    param,
)
from lte.models.mlp import MLP, run_layers


class LMLIIFDecoder(Decoder):
    """LIIF's unfolded features through a hypernetwork per code; a modulated 16-wide render MLP.

    Args:
        in_channels: encoder output width C (the hypernetwork reads 9C + 2 values per code).
        hypernet_hidden: hidden widths of the hypernetwork (``[208]``).
        render_width: the render MLP's width W (16), also the latent code's width.
        render_depth: the render MLP's hidden layers D (6; 8 with SwinIR).
        mod_scale: whether the hidden layers are scaled by ``1 + s_l``.
        mod_shift: whether they are shifted by ``t_l``.

    The hypernetwork outputs ``W·D·(mod_scale + mod_shift) + W`` values per code (208, or 272
    eight layers deep). Parameter names follow the released checkpoints (``hypernet``, ``imnet``).
    """

    kind = "lm_liif"
    cell_dependent = True
    #: CMSR's candidate thresholds for LM-LIIF span [0, 1] (the official ``init_cmsr``).
    complexity_max = 1.0

    def __init__(
        self,
        in_channels: int,
        hypernet_hidden: Sequence[int] = (208,),
        render_width: int = 16,
        render_depth: int = 6,
        mod_scale: bool = True,
        mod_shift: bool = True,
    ) -> None:
        super().__init__()
        #: Constructor arguments but ``in_channels`` (the encoder's width): the decoder's identity.
        self.config = LMLIIFConfig(
            hypernet_hidden, render_width, render_depth, mod_scale, mod_shift
        ).to_dict()
        self.in_channels = in_channels
        self.mod = Modulations(render_width, render_depth, mod_scale, mod_shift, render_width)
        self.hypernet = MLP(9 * in_channels + 2, self.mod.total, list(hypernet_hidden))
        self.imnet = MLP(render_width + 4, 3, [render_width] * render_depth)

    def prepare(self, feat: Tensor, rel_cell: Tensor | None = None) -> Tensor:
        """Every code's modulations and its latent code's share of the render MLP's first layer.

        ``(B, h, w, D)``: ``[1 + scales | shifts | W_lat · latent]``. The hypernetwork's first layer
        is linear in ``[unfold(F) (9C), rel_cell]``: its 9C columns applied to the 3x3 unfold
        (channel-major ``c*9 + k``) are a 3x3 convolution with those columns as kernel, and its
        ``rel_cell`` columns give one row per image. The render MLP's first layer is linear in
        ``[latent, rel, rel_cell]``, so its latent columns are applied here, once per code, and
        the query step adds the offset and cell terms (as LIIF's table does).
        """
        if rel_cell is None:
            raise ValueError(
                "lm_liif: the table depends on the output cell: prepare(feat, rel_cell)"
            )
        first = self.hypernet.layers[0]
        c = self.in_channels
        kernel = first.weight[:, : 9 * c].reshape(-1, c, 3, 3)  # (H1, C, 3, 3)
        maps = F.conv2d(feat, kernel, padding=1).permute(0, 2, 3, 1)  # (B, h, w, H1)
        cell_term = F.linear(rel_cell.to(maps.dtype), first.weight[:, 9 * c :], first.bias)
        x = maps + cell_term[:, None, None, :]  # (B, h, w, H1): the first layer's output
        mod = self.mod
        m = run_layers(self.hypernet.layers[1:], x, None).float()  # (B, h, w, total)
        w_latent = self.imnet.layers[0].weight[:, : mod.width]  # (W, W)
        share = F.linear(m[..., mod.latent_at], w_latent.float())  # (B, h, w, W)
        return mod.add_one_to_scales(torch.cat([m[..., : mod.dim], share], dim=-1))

    def complexity(self, table: Tensor) -> Tensor:
        """Mean ``|shift|`` of each code's modulations, ``(B, h, w)`` (CMSR)."""
        if not self.mod.shift:
            raise ValueError(
                "lm_liif with mod_shift false has no shifts: CMSR measures codes by them"
            )
        return self.mod.complexity(table)

    def _first_layer_columns(self) -> tuple[Tensor, Tensor, Tensor]:
        """The render MLP's first layer: ``rel`` columns ``(W, 2)``, ``rel_cell`` columns ``(W, 2)``,
        bias ``(W,)`` (the latent columns are applied in :meth:`prepare`)."""
        first = self.imnet.layers[0]
        w = self.mod.width
        return first.weight[:, w : w + 2], first.weight[:, w + 2 :], first.bias

    def exact(
        self, state: DecoderState, coord: Tensor, cell: Tensor, mlp_dtype: torch.dtype
    ) -> Tensor:
        """SPEC's LM-LIIF: ``Σ_v w_v · render([latent_v, rel_v, rel_cell], m_v)``, no residual."""
        w_rel, w_cell, bias = self._first_layer_columns()
        nb = neighbours(state, coord)
        rows = gather_rows(state.table, nb.index)  # (B, Q, 4, D)
        const = F.linear(rel_cell(cell, state.lr_hw), w_cell, bias).unsqueeze(2)  # (B, Q|1, 1, W)
        x = rows[..., self.mod.latent_at] + torch.matmul(nb.rel, w_rel.t()) + const  # (B, Q, 4, W)
        pred = render(self.imnet.layers, x, rows, self.mod, mlp_dtype, first_done=True)
        return ensemble_sum(pred, nb.weights)  # (B, Q, 3)

    def fast(
        self, state: DecoderState, coord: Tensor, cell: Tensor, mlp_dtype: torch.dtype
    ) -> Tensor:
        """:meth:`exact` through the blocked render driver: layer 0 finished in a reused buffer."""
        w_rel, w_cell, bias = self._first_layer_columns()
        w_rel_y, w_rel_x = w_rel[:, 0], w_rel[:, 1]  # (W,) each
        nb = neighbours(state, coord)
        # Cell term plus bias: one row per image when every query shares the cell.
        const = F.linear(rel_cell(cell, state.lr_hw), w_cell, bias).unsqueeze(2)  # (B, Q|1, 1, W)
        latent = self.mod.latent_at
        buf = torch.empty(
            4 * min(coord.shape[1], BLOCK),
            self.mod.width,
            dtype=state.table.dtype,
            device=coord.device,
        )

        def first_layer(g: Tensor, ry: Tensor, rx: Tensor, cst: Tensor) -> Tensor:
            x = buf[: g.shape[0]].copy_(g[:, latent])  # (4n', W)
            x.view(-1, 4, x.shape[1]).add_(cst)
            x.addr_(ry.view(-1), w_rel_y)
            return x.addr_(rx.view(-1), w_rel_x)  # layer 0's Linear output

        layers = linears(self.imnet.layers, mlp_dtype)[1:]
        return blocked_render(
            state.table, nb, const, first_layer, layers, self.mod, mlp_dtype, first_done=True
        )


# --- the family's declaration ------------------------------------------------------------------------


@dataclass(frozen=True)
class LMLIIFConfig(FamilyConfig):
    """LM-LIIF's constructor arguments but ``in_channels``, with their bounds; defaults: the paper's
    EDSR-baseline and RDN models (SwinIR: ``render_depth`` 8, :data:`PRESETS`)."""

    hypernet_hidden: tuple[int, ...] = param(MLP_HIDDEN, (208,))
    render_width: int = param(int_field(1, MAX_WIDTH), 16)
    render_depth: int = param(RENDER_DEPTH, 6)
    mod_scale: bool = param(bool_field(), True)
    mod_shift: bool = param(bool_field(), True)


#: Named configurations: the paper's (EDSR-baseline, RDN) and its SwinIR one (render depth 8,
#: hypernetwork 578 -> 208 -> 272); ``conf/model/lm_liif.yaml`` and ``conf/recipe/swinir_lm_liif.yaml``.
PRESETS = {"lm_liif": LMLIIFConfig(), "lm_liif_swinir": LMLIIFConfig(render_depth=8)}

#: The released booleans lte implements only as true (``mod_input``: the compressed latent code).
SWITCHES = ("local_ensemble", "feat_unfold", "cell_decode", "mod_input")
#: Every argument an ``lmliif`` file may hold besides ``encoder_spec``.
RELEASE_ARGUMENTS = ("imnet_spec", "hypernet_spec", *SWITCHES, "mixed_le")


def read_release(args: Mapping[str, Any], path: str) -> dict[str, Any]:
    """LM-LIIF's fields of a released ``lmliif`` file's arguments (allow-listed already)."""
    check_node(args, path, ("imnet_spec", "hypernet_spec"), RELEASE_ARGUMENTS)
    render_fields = read_render_spec(args["imnet_spec"], f"{path}.imnet_spec")
    read_switches(args, path, "LM-LIIF", SWITCHES)
    return {
        "hypernet_hidden": read_hypernet_spec(args["hypernet_spec"], f"{path}.hypernet_spec"),
        **render_fields,
    }


def write_release(decoder: Mapping[str, Any]) -> dict[str, Any]:
    """The ``lmliif`` arguments (besides ``encoder_spec``) of an LM-LIIF description."""
    mod = Modulations(
        decoder["render_width"],
        decoder["render_depth"],
        decoder["mod_scale"],
        decoder["mod_shift"],
        decoder["render_width"],
    )
    return {**write_specs(decoder, mod.total), **dict.fromkeys(SWITCHES, True)}


#: The ``lmliif`` release (SPEC "Checkpoints"): nested ``imnet_spec`` (lmmlp) and ``hypernet_spec``.
RELEASE = DecoderRelease(
    name="lmliif",
    title="LM-LIIF",
    defaults=LMLIIFConfig(),
    read=read_release,
    write=write_release,
    extra=RELEASE_ARGUMENTS,
)

FAMILY = DecoderFamily(module=LMLIIFDecoder, config=LMLIIFConfig, release=RELEASE)
