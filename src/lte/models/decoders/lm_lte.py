"""LM-LTE: LTE as a latent modulated function (He & Jin, CVPR 2024), SPEC.md "LMF" and "LM-LTE".

LR space, once per code for the image's cell (:meth:`LMLTEDecoder.prepare`): amplitude ``A`` and
frequency ``Φ`` by 3x3 convolutions, ``θ_k = Φ_{2k} + Φ_{2k+1} + P(rel_cell)_k`` (no offset term),
``z = A ⊙ [cos πθ | sin πθ]``, and the hypernetwork's modulation vector ``m = hypernet(z)``: the render
MLP's scales and shifts, then a latent amplitude ``a'`` and a latent frequency ``φ'``.
HR space, per query and neighbour (:meth:`LMLTEDecoder.exact`): ``θ'_k = φ'_{2k}·rel_y + φ'_{2k+1}·rel_x
+ P'(rel_cell)_k``, ``x = a' ⊙ [cos πθ' | sin πθ']`` through the modulated render MLP; the local
ensemble with swapped areas, plus the bilinear residual of the input, as LTE.

The family's declaration (:data:`FAMILY`) sits at the end: its fields and the ``lmlte`` release.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lte import geometry
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
    FieldError,
    bool_field,
    check_node,
    int_field,
    param,
)
from lte.models.mlp import MLP


class LMLTEDecoder(Decoder):
    """LTE's texture estimator in LR space, a hypernetwork per code, a modulated 16-wide render MLP.

    Args:
        in_channels: encoder output width C.
        hidden_dim: the LR texture estimator's width (128): amplitudes, twice the phases.
        hypernet_hidden: hidden widths of the hypernetwork (``[288]``).
        render_width: the render MLP's width W (16): also the latent amplitude's width, and twice
            the number of latent frequencies.
        render_depth: the render MLP's hidden layers D (8), each modulated.
        mod_scale: whether the hidden layers are scaled by ``1 + s_l``.
        mod_shift: whether they are shifted by ``t_l``.

    The hypernetwork outputs ``W·D·(mod_scale + mod_shift) + 2W`` values per code (288). Parameter
    names follow the released checkpoints (``coef``, ``freq``, ``phase``, ``hypernet``, ``imphase``,
    ``imnet``).
    """

    kind = "lm_lte"
    cell_dependent = True
    #: CMSR's candidate thresholds for LM-LTE span [0, 0.5] (the official ``init_cmsr``).
    complexity_max = 0.5

    def __init__(
        self,
        in_channels: int,
        hidden_dim: int = 128,
        hypernet_hidden: Sequence[int] = (288,),
        render_width: int = 16,
        render_depth: int = 8,
        mod_scale: bool = True,
        mod_shift: bool = True,
    ) -> None:
        super().__init__()
        #: Constructor arguments but ``in_channels`` (the encoder's width): the decoder's identity.
        self.config = LMLTEConfig(
            hidden_dim, hypernet_hidden, render_width, render_depth, mod_scale, mod_shift
        ).to_dict()
        if hidden_dim % 2 or render_width % 2:
            raise ValueError(
                f"hidden_dim and render_width must be even (cos and sin halves), got {hidden_dim} "
                f"and {render_width}"
            )
        self.hidden_dim = hidden_dim
        self.mod = Modulations(render_width, render_depth, mod_scale, mod_shift, 2 * render_width)
        self.coef = nn.Conv2d(in_channels, hidden_dim, 3, padding=1)
        self.freq = nn.Conv2d(in_channels, hidden_dim, 3, padding=1)
        self.phase = nn.Linear(2, hidden_dim // 2, bias=False)
        self.hypernet = MLP(hidden_dim, self.mod.total, list(hypernet_hidden))
        self.imphase = nn.Linear(2, render_width // 2, bias=False)
        self.imnet = MLP(render_width, 3, [render_width] * render_depth)

    def prepare(self, feat: Tensor, rel_cell: Tensor | None = None) -> Tensor:
        """The modulation vector of every code for the image's cell: ``(B, h, w, D)`` (D = 288).

        Amplitude and frequency come from one convolution with the two kernels stacked; the
        frequency pairs are summed after it, as the official code does (summing the kernels first
        is the same function, rounded differently where θ is large). ``rel_cell``: ``(B, 2)``, the
        cell in half codes. Under autocast θ and the Fourier features stay float32 (geometry); the
        hypernetwork's linears run in the low type.
        """
        if rel_cell is None:
            raise ValueError(
                "lm_lte: the table depends on the output cell: prepare(feat, rel_cell)"
            )
        hid = self.hidden_dim
        weight = torch.cat([self.coef.weight, self.freq.weight])
        bias = torch.cat([self.coef.bias, self.freq.bias])
        maps = F.conv2d(feat, weight, bias, padding=1).permute(0, 2, 3, 1)  # (B, h, w, 2·128)
        with torch.autocast(feat.device.type, enabled=False):
            maps = maps.float()
            phase = self.phase(rel_cell.float())[:, None, None, :]  # (B, 1, 1, 64)
            # No offset term in the latent step: θ_k = Φ_{2k} + Φ_{2k+1} + P(rel_cell)_k.
            theta = maps[..., hid::2] + maps[..., hid + 1 :: 2] + phase  # (B, h, w, 64)
            theta = math.pi * theta
            z = maps[..., :hid] * torch.cat([torch.cos(theta), torch.sin(theta)], dim=-1)
        return self.mod.add_one_to_scales(self.hypernet(z).float())  # (B, h, w, 288)

    def complexity(self, table: Tensor) -> Tensor:
        """Mean ``|shift|`` of each code's modulations, ``(B, h, w)`` (CMSR)."""
        if not self.mod.shift:
            raise ValueError(
                "lm_lte with mod_shift false has no shifts: CMSR measures codes by them"
            )
        return self.mod.complexity(table)

    def _latent(self, rows: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """A row's latent amplitude ``(..., W)`` and frequency components ``f_y``, ``f_x``
        ``(..., W/2)``: channels ``2k`` and ``2k+1`` of ``φ'`` are frequency k's (y, x)."""
        start, w = self.mod.dim, self.mod.width
        return (
            rows[..., start : start + w],
            rows[..., start + w : start + 2 * w : 2],
            rows[..., start + w + 1 : start + 2 * w : 2],
        )

    def exact(
        self, state: DecoderState, coord: Tensor, cell: Tensor, mlp_dtype: torch.dtype
    ) -> Tensor:
        """SPEC's LM-LTE: ``Σ_v w_v · render(a'_v ⊙ [cos πθ'_v | sin πθ'_v], m_v) + bilinear(lr)``."""
        nb = neighbours(state, coord)
        rows = gather_rows(state.table, nb.index)  # (B, Q, 4, D)
        amp, fy, fx = self._latent(rows)
        with torch.autocast(coord.device.type, enabled=False):
            phase = self.imphase(rel_cell(cell, state.lr_hw)).unsqueeze(2)  # (B, Q or 1, 1, W/2)
            theta = math.pi * (
                fy * nb.rel[..., :1] + fx * nb.rel[..., 1:] + phase
            )  # (B, Q, 4, W/2)
            x = amp * torch.cat([torch.cos(theta), torch.sin(theta)], dim=-1)  # (B, Q, 4, W)
        pred = render(self.imnet.layers, x, rows, self.mod, mlp_dtype)  # (B, Q, 4, 3)
        return ensemble_sum(pred, nb.weights) + geometry.bilinear_sample(state.lr, coord)

    def fast(
        self, state: DecoderState, coord: Tensor, cell: Tensor, mlp_dtype: torch.dtype
    ) -> Tensor:
        """:meth:`exact` through the blocked render driver: θ' and ``[cos | sin] ⊙ a'`` in reused
        buffers, the modulations applied in place from the gathered rows."""
        w, half = self.mod.width, self.mod.width // 2
        nb = neighbours(state, coord)
        # The phase term depends on the cell only: with one shared cell it is one row per image.
        phase = self.imphase(rel_cell(cell, state.lr_hw)).unsqueeze(2)  # (B, Q or 1, 1, W/2)
        rows = 4 * min(coord.shape[1], BLOCK)
        theta_buf = torch.empty(rows, half, dtype=state.table.dtype, device=coord.device)
        z_buf = torch.empty(rows, w, dtype=state.table.dtype, device=coord.device)

        def features(g: Tensor, ry: Tensor, rx: Tensor, ph: Tensor) -> Tensor:
            n = g.shape[0]
            amp, fy, fx = self._latent(g)
            theta = torch.mul(fy, ry, out=theta_buf[:n])
            theta.addcmul_(fx, rx)  # (4n', W/2)
            theta.view(-1, 4, half).add_(ph)
            theta.mul_(math.pi)
            z = z_buf[:n]  # (4n', W): [cos | sin] ⊙ a'
            torch.cos(theta, out=z[:, :half])
            torch.sin(theta, out=z[:, half:])
            return z.mul_(amp)

        layers = linears(self.imnet.layers, mlp_dtype)
        out = blocked_render(state.table, nb, phase, features, layers, self.mod, mlp_dtype)
        return out + geometry.bilinear_sample(state.lr, coord)


# --- the family's declaration ------------------------------------------------------------------------

#: An even width (cosine and sine halves).
EVEN_WIDTH = int_field(2, MAX_WIDTH, even=True)


@dataclass(frozen=True)
class LMLTEConfig(FamilyConfig):
    """LM-LTE's constructor arguments but ``in_channels``, with their bounds; defaults: the paper's
    (the same for EDSR-baseline, RDN and SwinIR)."""

    hidden_dim: int = param(EVEN_WIDTH, 128)
    hypernet_hidden: tuple[int, ...] = param(MLP_HIDDEN, (288,))
    render_width: int = param(EVEN_WIDTH, 16)
    render_depth: int = param(RENDER_DEPTH, 8)
    mod_scale: bool = param(bool_field(), True)
    mod_shift: bool = param(bool_field(), True)


#: Named configurations (``conf/model/lm_lte.yaml`` holds the first).
PRESETS = {"lm_lte": LMLTEConfig()}

#: The released booleans lte implements only as true (``mod_input``: the compressed latent code).
SWITCHES = ("local_ensemble", "cell_decode", "mod_input")


def read_release(args: Mapping[str, Any], path: str) -> dict[str, Any]:
    """LM-LTE's fields of a released ``lmlte`` file's arguments (allow-listed already)."""
    check_node(args, path, ("imnet_spec", "hypernet_spec"), RELEASE_ARGUMENTS)
    render_fields = read_render_spec(args["imnet_spec"], f"{path}.imnet_spec")
    if render_fields["render_width"] % 2:
        raise FieldError(
            f"{path}.imnet_spec.args.hidden_dim",
            f"must be even (latent frequencies come in (y, x) pairs), got "
            f"{render_fields['render_width']}",
        )
    read_switches(args, path, "LM-LTE", SWITCHES)
    return {
        "hidden_dim": EVEN_WIDTH(args.get("hidden_dim", 128), f"{path}.hidden_dim"),
        "hypernet_hidden": read_hypernet_spec(args["hypernet_spec"], f"{path}.hypernet_spec"),
        **render_fields,
    }


def write_release(decoder: Mapping[str, Any]) -> dict[str, Any]:
    """The ``lmlte`` arguments (besides ``encoder_spec``) of an LM-LTE description."""
    mod = Modulations(
        decoder["render_width"],
        decoder["render_depth"],
        decoder["mod_scale"],
        decoder["mod_shift"],
        2 * decoder["render_width"],
    )
    return {
        **write_specs(decoder, mod.total),
        "hidden_dim": decoder["hidden_dim"],
        **dict.fromkeys(SWITCHES, True),
    }


#: Every argument an ``lmlte`` file may hold besides ``encoder_spec``.
RELEASE_ARGUMENTS = ("imnet_spec", "hypernet_spec", "hidden_dim", *SWITCHES, "mixed_le")

#: The ``lmlte`` release (SPEC "Checkpoints"): nested ``imnet_spec`` (lmmlp) and ``hypernet_spec``.
RELEASE = DecoderRelease(
    name="lmlte",
    title="LM-LTE",
    defaults=LMLTEConfig(),
    read=read_release,
    write=write_release,
    extra=RELEASE_ARGUMENTS,
)

FAMILY = DecoderFamily(module=LMLTEDecoder, config=LMLTEConfig, release=RELEASE)
