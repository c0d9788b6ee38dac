"""LTE: the Local Texture Estimator decoder (Lee & Jin, CVPR 2022), SPEC.md "LTE decoder".

The family's declaration (:data:`FAMILY`) sits at the end: its typed fields (:class:`LTEConfig`) and
its two released layouts, ``lte`` and LTE+'s ``lte-fast`` (:data:`LTE_FAST`: the MLP as 1x1
convolutions and the frequency channels paired differently, SPEC.md "LTE+").
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
from lte.errors import UserError
from lte.models.decoders.base import Decoder, DecoderState, FourierMaps
from lte.models.decoders.compiled import compiled_ensemble, lte_block
from lte.models.decoders.ensemble import (
    block_rows,
    blocked_ensemble,
    ensemble_sum,
    gather_rows,
    linears,
    neighbours,
    rel_cell,
)
from lte.models.family import DecoderFamily, DecoderLayout, DecoderRelease, KeyRule
from lte.models.fields import (
    MAX_WIDTH,
    MLP_HIDDEN,
    FamilyConfig,
    FieldError,
    int_field,
    param,
)
from lte.models.mlp import MLP


class FourierFeatures(torch.autograd.Function):
    """``z = a ⊙ [cos πθ | sin πθ]``, ``θ = f_y·r_y + f_x·r_x + phase``: LTE's features, saving less.

    Written with plain ops, autograd keeps θ's temporaries, cos and sin concatenated (``(N, 256)``)
    and the amplitude, and its backward turns each of the three slices of the gathered rows into a
    full-width zero-filled gradient. This runs the plain ops' float32 operations in their order
    (values and gradients are bitwise those of the plain ops, ``tests/test_train_speed.py``), but
    in place where autograd allows, saves only the gathered rows (which hold the amplitude and the
    frequencies) and ``πθ``, recomputes cos and sin in backward, and writes the rows' gradient
    ``[∂a | ∂f_y | ∂f_x]`` into one tensor. Double backward is not supported (training needs none).

    Inputs: ``rows`` ``(..., 4, 2H)`` = ``[amplitude (H) | f_y (H/2) | f_x (H/2)]``, the offsets
    ``ry``/``rx`` ``(..., 4, 1)`` and ``phase`` ``(..., 1, H/2)`` (broadcast over the neighbours and,
    shared by every query, over them too). Returns ``(..., 4, H)``.
    """

    @staticmethod
    def forward(ctx, rows: Tensor, ry: Tensor, rx: Tensor, phase: Tensor) -> Tensor:  # type: ignore[override]
        hid = rows.shape[-1] // 2
        half = hid // 2
        amp, fy, fx = rows[..., :hid], rows[..., hid : hid + half], rows[..., hid + half :]
        theta = torch.mul(fy, ry)
        theta.add_(fx * rx)
        theta.add_(phase)
        theta.mul_(math.pi)
        if torch.compiler.is_compiling():  # Dynamo cannot trace out= into column slices
            z = torch.cat([torch.cos(theta), torch.sin(theta)], dim=-1).mul_(amp)
        else:
            # cos, then sin, through one contiguous temporary, each scaled into its half of z (the
            # same products as z.mul_(amp)): a transcendental written straight into a column
            # slice ran up to 8x slower once torch.set_num_threads had been called, which
            # Lightning's DDP launchers do (torch 2.13, 2-core AVX2 EPYC).
            z = torch.empty(*rows.shape[:-1], hid, dtype=rows.dtype, device=rows.device)
            trig = torch.cos(theta)
            torch.mul(trig, amp[..., :half], out=z[..., :half])
            torch.sin(theta, out=trig)
            torch.mul(trig, amp[..., half:], out=z[..., half:])
        ctx.save_for_backward(rows, ry, rx, theta)
        ctx.phase_shape = phase.shape
        return z

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        rows, ry, rx, theta = ctx.saved_tensors
        hid = rows.shape[-1] // 2
        half = hid // 2
        amp_c, amp_s = rows[..., :half], rows[..., half:hid]
        fy, fx = rows[..., hid : hid + half], rows[..., hid + half :]
        g_c, g_s = grad[..., :half], grad[..., half:]
        cos, sin = torch.cos(theta), torch.sin(theta)
        # ∂/∂(θ before ·π) = π (g_s a_s cos − g_c a_c sin), in autograd's operation order.
        d_theta = torch.mul(g_s, amp_s).mul_(cos)
        d_theta.sub_(torch.mul(g_c, amp_c).mul_(sin))
        d_theta.mul_(math.pi)
        d_rows = d_ry = d_rx = d_phase = None
        if ctx.needs_input_grad[0] and torch.compiler.is_compiling():
            d_rows = torch.cat([g_c * cos, g_s * sin, d_theta * ry, d_theta * rx], dim=-1)
        elif ctx.needs_input_grad[0]:
            d_rows = torch.empty_like(rows)
            torch.mul(g_c, cos, out=d_rows[..., :half])
            torch.mul(g_s, sin, out=d_rows[..., half:hid])
            torch.mul(d_theta, ry, out=d_rows[..., hid : hid + half])
            torch.mul(d_theta, rx, out=d_rows[..., hid + half :])
        if ctx.needs_input_grad[1]:
            d_ry = (d_theta * fy).sum(-1, keepdim=True).sum_to_size(ry.shape)
        if ctx.needs_input_grad[2]:
            d_rx = (d_theta * fx).sum(-1, keepdim=True).sum_to_size(rx.shape)
        if ctx.needs_input_grad[3]:
            d_phase = d_theta.sum_to_size(ctx.phase_shape)
        return d_rows, d_ry, d_rx, d_phase


class LTEDecoder(Decoder):
    """Local Texture Estimator with local ensemble and a bilinear residual.

    Args:
        in_channels: encoder output width C.
        hidden_dim: number of Fourier features (256): amplitude width, and twice the frequency count.
        mlp_hidden: hidden widths of the MLP (``[256, 256, 256]``).

    Parameter names follow the released checkpoints (``coef``, ``freq``, ``phase``, ``imnet``).
    """

    kind = "lte"

    def __init__(
        self, in_channels: int, hidden_dim: int = 256, mlp_hidden: Sequence[int] = (256, 256, 256)
    ) -> None:
        super().__init__()
        #: Constructor arguments but ``in_channels`` (the encoder's width): the decoder's identity.
        self.config = LTEConfig(hidden_dim, mlp_hidden).to_dict()
        if hidden_dim % 2:
            raise ValueError(f"hidden_dim must be even (cos and sin halves), got {hidden_dim}")
        self.hidden_dim = hidden_dim
        self.coef = nn.Conv2d(in_channels, hidden_dim, 3, padding=1)
        self.freq = nn.Conv2d(in_channels, hidden_dim, 3, padding=1)
        self.phase = nn.Linear(2, hidden_dim // 2, bias=False)
        self.imnet = MLP(hidden_dim, 3, list(mlp_hidden))

    def prepare(self, feat: Tensor) -> Tensor:
        """One channel-last table ``[amplitude | freq_y | freq_x]`` per code: ``(B, h, w, 2·hidden)``.

        The frequency channels ``2k`` / ``2k+1`` are the (y, x) components of frequency k; storing
        all y components, then all x components, turns the per-query dot product into two
        contiguous multiply-adds. Amplitude and frequency come from one convolution with the two
        weight sets stacked, so one gather per neighbour reads both.
        """
        weight = torch.cat([self.coef.weight, self.freq.weight[0::2], self.freq.weight[1::2]])
        bias = torch.cat([self.coef.bias, self.freq.bias[0::2], self.freq.bias[1::2]])
        maps = F.conv2d(feat, weight, bias, padding=1)  # (B, 2*256, h, w)
        return maps.permute(0, 2, 3, 1).contiguous()  # (B, h, w, 512)

    def fourier(self, feat: Tensor, rel_cell: Tensor | None = None) -> FourierMaps:
        """The estimated frequencies and amplitudes of encoder features ``(B, C, h, w)``.

        Computed from the two convolutions directly (not from :meth:`prepare`'s reordered table), so
        the channel pairing is SPEC's literal one. ``rel_cell`` ``(B, 2)``, the cell in half codes,
        adds the phase term ``P(rel_cell)`` of that output scale.
        """
        freq = self.freq(feat)  # (B, 2K, h, w): channels 2k, 2k+1 = (f_y, f_x) of frequency k
        b, _, h, w = freq.shape
        freq = freq.view(b, self.hidden_dim // 2, 2, h, w)
        phase = None if rel_cell is None else self.phase(rel_cell)
        return FourierMaps(freq=freq, amplitude=self.coef(feat), phase=phase)

    def exact(
        self, state: DecoderState, coord: Tensor, cell: Tensor, mlp_dtype: torch.dtype
    ) -> Tensor:
        """SPEC's LTE: ``Σ_v w_v · MLP(a_v ⊙ [cos πθ_v | sin πθ_v]) + bilinear(lr)``.

        One row gather for the four neighbours, the Fourier features through
        :class:`FourierFeatures` (what backward needs, nothing more). Under autocast
        (``trainer.precision=bf16-mixed``) θ, its phase term and the bilinear residual stay
        float32: they are geometry; only the MLP's linears run in the low type.
        """
        nb = neighbours(state, coord)
        rows = gather_rows(state.table, nb.index)  # (B, Q, 4, 512): [amplitude | f_y | f_x]
        with torch.autocast(coord.device.type, enabled=False):
            phase = self.phase(rel_cell(cell, state.lr_hw)).unsqueeze(2)  # (B, Q or 1, 1, 128)
        z = FourierFeatures.apply(rows, nb.rel[..., :1], nb.rel[..., 1:], phase)  # (B, Q, 4, 256)
        pred = self.imnet(z, dtype=mlp_dtype)  # (B, Q, 4, 3)
        return ensemble_sum(pred, nb.weights) + geometry.bilinear_sample(state.lr, coord)

    def fast(
        self, state: DecoderState, coord: Tensor, cell: Tensor, mlp_dtype: torch.dtype
    ) -> Tensor:
        """:meth:`exact` through the blocked driver: θ and ``[cos | sin] ⊙ a`` in reused buffers."""
        table = state.table
        hid, half = self.hidden_dim, self.hidden_dim // 2
        nb = neighbours(state, coord)
        # The phase term depends on the cell only: with one shared cell it is one row per image.
        phase = self.phase(rel_cell(cell, state.lr_hw)).unsqueeze(2)  # (B, Q or 1, 1, 128)
        rows = block_rows(coord.shape[1])
        theta_buf = torch.empty(rows, half, dtype=table.dtype, device=table.device)
        sin_buf = torch.empty(rows, half, dtype=table.dtype, device=table.device)
        z_buf = torch.empty(rows, hid, dtype=table.dtype, device=table.device)

        def fourier(g: Tensor, ry: Tensor, rx: Tensor, ph: Tensor) -> Tensor:
            n = g.shape[0]
            amp, fy, fx = g[:, :hid], g[:, hid : hid + half], g[:, hid + half :]
            theta = torch.mul(fy, ry, out=theta_buf[:n])
            theta.addcmul_(fx, rx)  # (4n', 128)
            theta.view(-1, 4, half).add_(ph)
            theta.mul_(math.pi)
            # cos and sin into contiguous buffers, then scaled into z's halves: a transcendental
            # written into a column slice ran up to 6x slower once torch.set_num_threads had been
            # called (torch 2.13, 2-core AVX2 EPYC); binary ops into slices do not. Same values.
            sin = torch.sin(theta, out=sin_buf[:n])
            cos = theta.cos_()
            z = z_buf[:n]  # (4n', 256): [cos | sin] ⊙ amplitude
            torch.mul(cos, amp[:, :half], out=z[:, :half])
            torch.mul(sin, amp[:, half:], out=z[:, half:])
            return z

        layers = linears(self.imnet.layers, mlp_dtype)
        out = blocked_ensemble(table, nb, phase, fourier, hid, layers, mlp_dtype)
        return out + geometry.bilinear_sample(state.lr, coord)

    def compiled(
        self, state: DecoderState, coord: Tensor, cell: Tensor, mlp_dtype: torch.dtype
    ) -> Tensor:
        """:meth:`fast`'s blocks, each one call of a ``torch.compile``d function (see ``compiled``)."""
        nb = neighbours(state, coord)
        phase = self.phase(rel_cell(cell, state.lr_hw)).unsqueeze(2)  # (B, Q or 1, 1, 128)
        layers = linears(self.imnet.layers, mlp_dtype)
        out = compiled_ensemble(self, lte_block, state.table, nb, phase, (), layers)
        return out + geometry.bilinear_sample(state.lr, coord)


# --- the family's declaration ------------------------------------------------------------------------

#: Fourier features: an even count (cosine and sine halves).
HIDDEN_DIM = int_field(2, MAX_WIDTH, even=True)


@dataclass(frozen=True)
class LTEConfig(FamilyConfig):
    """LTE's constructor arguments but ``in_channels``, with their bounds; defaults: the paper's."""

    hidden_dim: int = param(HIDDEN_DIM, 256)
    mlp_hidden: tuple[int, ...] = param(MLP_HIDDEN, (256, 256, 256))


#: ``lte-fast``'s constructor defaults (``num_layer``, ``hidden_dim``, ``out_dim``).
LTE_FAST_DEFAULTS = {"num_layer": 3, "hidden_dim": 256, "out_dim": 3}


def lte_fast_fields(args: Mapping[str, Any], path: str) -> dict[str, Any]:
    """LTE's fields for ``lte-fast``'s arguments (already checked to be allow-listed).

    The released class uses ``hidden_dim`` both for the Fourier features and for each of its
    ``num_layer`` hidden 1x1 convolutions, so the MLP is ``[hidden_dim] * num_layer``.
    """
    merged = {**LTE_FAST_DEFAULTS, **args}
    hidden = HIDDEN_DIM(merged["hidden_dim"], f"{path}.hidden_dim")
    layers = int_field(1, MLP_HIDDEN.max_len)(merged["num_layer"], f"{path}.num_layer")
    if int_field(1, MAX_WIDTH)(merged["out_dim"], f"{path}.out_dim") != 3:
        raise FieldError(f"{path}.out_dim", f"must be 3 (RGB), got {merged['out_dim']}")
    return {"hidden_dim": hidden, "mlp_hidden": [hidden] * layers}


def lte_fast_arguments(decoder: Mapping[str, Any]) -> dict[str, Any]:
    """``lte-fast``'s ``num_layer``/``hidden_dim``/``out_dim`` for an LTE decoder description.

    Raises:
        UserError: an MLP the released class cannot build (it ties every hidden width to
            ``hidden_dim``).
    """
    hidden, mlp = decoder["hidden_dim"], list(decoder["mlp_hidden"])
    if any(width != hidden for width in mlp):
        raise UserError(
            f"layout 'lte-fast' needs every MLP hidden width equal to hidden_dim ({hidden}), as "
            f"the released class builds it; this LTE has mlp_hidden {mlp}: export it with the "
            "standard layout"
        )
    return {"num_layer": len(mlp), "hidden_dim": hidden, "out_dim": 3}


def linear_as_conv1x1(value: Tensor) -> Tensor:
    """A Linear weight ``(out, in)`` as the 1x1 convolution ``(out, in, 1, 1)`` (biases unchanged)."""
    return value.reshape(*value.shape, 1, 1) if value.dim() == 2 else value


def conv1x1_as_linear(value: Any) -> Any:
    """Inverse of :func:`linear_as_conv1x1`; any other shape passes unchanged for the shape check."""
    if isinstance(value, torch.Tensor) and value.dim() == 4 and value.shape[2:] == (1, 1):
        return value.flatten(1)
    return value


def freq_to_lte(value: Any) -> Any:
    """``lte-fast``'s frequency channels in LTE's order: LTE ``2k`` <- ``k``, ``2k+1`` <- ``K+k``.

    LTE reads frequency k from channels (2k, 2k+1) as its (y, x) components; the released LTE+
    splits the map into halves instead (y from channel k, x from K+k; SPEC.md "LTE+"). Loading
    without this reorder gives a different function (up to 7 levels off the official forward).
    Anything that is not a tensor with an even, non-empty first axis is passed on unchanged for
    the type and shape checks to name.
    """
    if not isinstance(value, torch.Tensor) or value.dim() == 0 or value.shape[0] % 2:
        return value
    half = value.shape[0] // 2
    # (2, K, ...) -> (K, 2, ...): y_k and x_k become neighbours.
    return torch.stack([value[:half], value[half:]], dim=1).flatten(0, 1).contiguous()


def freq_to_lte_fast(value: Tensor) -> Tensor:
    """Inverse of :func:`freq_to_lte`: all y components (channels ``2k``), then all x (``2k+1``)."""
    return torch.cat([value[0::2], value[1::2]]).contiguous()


#: LTE+ (EDSR-baseline-LTE+): the same LTE with its MLP as 1x1 convolutions under ``layers.*`` and
#: the frequency convolution's output channels in the halves pairing.
LTE_FAST = DecoderLayout(
    name="lte-fast",
    arguments=("num_layer", "hidden_dim", "out_dim"),
    read=lte_fast_fields,
    write=lte_fast_arguments,
    keys=(
        KeyRule(
            "imnet.layers.", "layers.", "its MLP", save=linear_as_conv1x1, load=conv1x1_as_linear
        ),
        KeyRule("freq.", "freq.", save=freq_to_lte_fast, load=freq_to_lte),
    ),
)

#: The ``lte`` release: ``imnet_spec`` holds the MLP, ``hidden_dim`` the Fourier features.
RELEASE = DecoderRelease(
    name="lte",
    title="LTE",
    defaults=LTEConfig(),
    mlp=True,
    arguments={"hidden_dim": "hidden_dim"},
    layouts=(LTE_FAST,),
)

FAMILY = DecoderFamily(
    module=LTEDecoder,
    config=LTEConfig,
    release=RELEASE,
    v1_targets=("lte.models.LTEDecoder", "lte.models.decoders.LTEDecoder"),
)
