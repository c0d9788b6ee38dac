"""SwinIR as a feature extractor (Liang et al., "SwinIR: Image Restoration Using Swin Transformer", 2021).

The classical-SR configuration used by LTE: embedding 180, 6 residual Swin transformer blocks (RSTB) of
depth 6, 6 heads, window 8, MLP ratio 2, a one-conv residual connection, stochastic depth 0.1 and no
mean shift. Instead of an upsampler, conv3×3(180→64) + LeakyReLU gives 64 output channels.

Any input size works: the input is reflect-padded to a multiple of the window, and unlike the released
module the features are cropped back to the input size, so that feature ``(i, j)`` belongs to LR pixel
``(i, j)``. The test protocol pads the LR itself (mirror, 1–8 px) before encoding, which makes this
internal padding a no-op there. Shift masks and relative-position indices are recomputed, never loaded.

The family's declaration (:data:`FAMILY`) sits at the end: its typed fields (:class:`SwinIRConfig`),
presets and how the official release names it and holds those recomputed buffers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lte.models.family import EncoderFamily, EncoderRelease
from lte.models.fields import (
    IN_CHANNELS,
    MAX_DEPTH,
    MAX_WIDTH,
    FamilyConfig,
    FieldError,
    float_field,
    int_field,
    int_list_field,
    param,
)


class DropPath(nn.Module):
    """Stochastic depth: drop the whole residual branch of a sample with probability ``p`` in training."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep


class Mlp(nn.Module):
    """Transformer feed-forward: Linear → GELU → Linear."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


def relative_position_index(window: int) -> Tensor:
    """Index into the ``(2w-1)²`` bias table for every pair of positions in a ``w × w`` window."""
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij"))
    flat = coords.flatten(1)  # (2, w*w)
    rel = (flat[:, :, None] - flat[:, None, :]).permute(1, 2, 0) + (window - 1)  # (w², w², 2)
    return rel[..., 0] * (2 * window - 1) + rel[..., 1]  # (w², w²)


def window_partition(x: Tensor, window: int) -> Tensor:
    """``(B, H, W, C)`` → ``(B * nW, w*w, C)`` non-overlapping windows, row-major."""
    b, h, w, c = x.shape
    x = x.view(b, h // window, window, w // window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window * window, c)


def window_reverse(windows: Tensor, window: int, h: int, w: int) -> Tensor:
    """Inverse of :func:`window_partition`: ``(B * nW, w*w, C)`` → ``(B, H, W, C)``."""
    c = windows.shape[-1]
    b = windows.shape[0] // ((h // window) * (w // window))
    x = windows.view(b, h // window, w // window, window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(b, h, w, c)


def shift_attention_mask(h: int, w: int, window: int, shift: int, device: torch.device) -> Tensor:
    """Mask (0 or -100) that stops shifted windows attending across the cyclic-shift seam: ``(nW, N, N)``."""
    region = torch.zeros(1, h, w, 1, device=device)
    spans = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
    label = 0
    for hs in spans:
        for ws in spans:
            region[:, hs, ws, :] = label
            label += 1
    ids = window_partition(region, window).squeeze(-1)  # (nW, N)
    diff = ids.unsqueeze(1) - ids.unsqueeze(2)  # (nW, N, N)
    return torch.zeros_like(diff).masked_fill(diff != 0, -100.0)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside a window, with a learned relative-position bias."""

    def __init__(self, dim: int, window: int, num_heads: int) -> None:
        super().__init__()
        self.window = window
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * window - 1) ** 2, num_heads)
        )
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.register_buffer(
            "relative_position_index", relative_position_index(window), persistent=False
        )
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        bw, n, c = x.shape
        heads = self.num_heads
        qkv = (
            self.qkv(x).reshape(bw, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
        )  # (3, Bw, h, N, d)
        q, k, v = qkv[0] * self.scale, qkv[1], qkv[2]
        attn = q @ k.transpose(-2, -1)  # (Bw, heads, N, N)
        bias = self.relative_position_bias_table[self.relative_position_index.reshape(-1)]
        attn = attn + bias.view(n, n, heads).permute(2, 0, 1).unsqueeze(0)
        if mask is not None:
            nw = mask.shape[0]
            attn = attn.view(bw // nw, nw, heads, n, n) + mask.unsqueeze(1).unsqueeze(0)
            attn = attn.view(bw, heads, n, n)
        attn = attn.softmax(dim=-1)
        out = (attn @ v).transpose(1, 2).reshape(bw, n, c)  # (Bw, N, C)
        return self.proj(out)


class SwinBlock(nn.Module):
    """Pre-norm Swin transformer block: (shifted) window attention, then an MLP, each residual."""

    def __init__(
        self, dim: int, num_heads: int, window: int, shift: int, mlp_ratio: float, drop_path: float
    ) -> None:
        super().__init__()
        self.window, self.shift = window, shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window, num_heads)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor, hw: tuple[int, int], mask: Tensor | None) -> Tensor:
        h, w = hw
        b, _, c = x.shape
        y = self.norm1(x).view(b, h, w, c)
        if self.shift:
            y = torch.roll(y, shifts=(-self.shift, -self.shift), dims=(1, 2))
        y = self.attn(window_partition(y, self.window), mask if self.shift else None)
        y = window_reverse(y, self.window, h, w)
        if self.shift:
            y = torch.roll(y, shifts=(self.shift, self.shift), dims=(1, 2))
        x = x + self.drop_path(y.reshape(b, h * w, c))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class BasicLayer(nn.Module):
    """``depth`` Swin blocks alternating regular and half-window-shifted windows."""

    def __init__(
        self,
        dim: int,
        depth: int,
        num_heads: int,
        window: int,
        mlp_ratio: float,
        drop_path: Sequence[float],
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            [
                SwinBlock(
                    dim,
                    num_heads,
                    window,
                    0 if i % 2 == 0 else window // 2,
                    mlp_ratio,
                    drop_path[i],
                )
                for i in range(depth)
            ]
        )

    def forward(self, x: Tensor, hw: tuple[int, int], mask: Tensor | None) -> Tensor:
        for block in self.blocks:
            x = block(x, hw, mask)
        return x


class RSTB(nn.Module):
    """Residual Swin transformer block: a BasicLayer, then a 3×3 conv on the image layout, plus identity."""

    def __init__(
        self,
        dim: int,
        depth: int,
        num_heads: int,
        window: int,
        mlp_ratio: float,
        drop_path: Sequence[float],
    ) -> None:
        super().__init__()
        self.residual_group = BasicLayer(dim, depth, num_heads, window, mlp_ratio, drop_path)
        self.conv = nn.Conv2d(dim, dim, 3, padding=1)

    def forward(self, x: Tensor, hw: tuple[int, int], mask: Tensor | None) -> Tensor:
        b, _, c = x.shape
        y = self.residual_group(x, hw, mask).transpose(1, 2).reshape(b, c, *hw)  # (B, C, H, W)
        return self.conv(y).flatten(2).transpose(1, 2) + x


class PatchEmbedNorm(nn.Module):
    """SwinIR's patch embedding with patch size 1: just a LayerNorm over tokens (``patch_embed.norm``)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(x)


class SwinIR(nn.Module):
    """SwinIR feature extractor (no upsampler), 64 output channels.

    Args:
        embed_dim: token width (180).
        depths: blocks per RSTB (``[6] * 6``).
        num_heads: heads per RSTB (``[6] * 6``).
        window_size: attention window (8); inputs are padded to a multiple of it.
        mlp_ratio: MLP hidden width over ``embed_dim`` (2).
        drop_path_rate: stochastic depth, linearly increasing over all blocks up to this value (0.1).
        out_channels: width of the final conv (64).
        in_channels: input channels (3).
    """

    #: The allow-listed name of this family in model descriptions (see ``SRModel.describe``).
    kind = "swinir"

    # The encoder contract (lte.models.encoder.Encoder), declared explicitly.
    out_channels: int
    #: The test protocol mirror-pads inputs to a multiple of the window (set in ``__init__``).
    pad_multiple: int
    #: Shifted-window attention has no finite receptive field: ``None`` means global.
    receptive_radius: int | None = None
    #: Always a feature extractor: no fixed-scale tail here.
    upscale: int | None = None

    def __init__(
        self,
        embed_dim: int = 180,
        depths: Sequence[int] = (6, 6, 6, 6, 6, 6),
        num_heads: Sequence[int] = (6, 6, 6, 6, 6, 6),
        window_size: int = 8,
        mlp_ratio: float = 2.0,
        drop_path_rate: float = 0.1,
        out_channels: int = 64,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        depths, num_heads = list(depths), list(num_heads)
        if len(depths) != len(num_heads):
            raise ValueError(f"depths {depths} and num_heads {num_heads} must have the same length")
        #: Constructor arguments: the encoder's identity in checkpoints, results and W&B.
        self.config = SwinIRConfig(
            embed_dim,
            depths,
            num_heads,
            window_size,
            mlp_ratio,
            drop_path_rate,
            out_channels,
            in_channels,
        ).to_dict()
        self.out_channels = int(out_channels)
        self.window_size = window_size
        self.pad_multiple = int(window_size)
        self.receptive_radius = None
        self.conv_first = nn.Conv2d(in_channels, embed_dim, 3, padding=1)
        self.patch_embed = PatchEmbedNorm(embed_dim)
        # Python floats, computed on the CPU even under a meta-device context (skeleton checks).
        rates = torch.linspace(0, drop_path_rate, sum(depths), device="cpu").tolist()
        self.layers = nn.ModuleList()
        start = 0
        for depth, heads in zip(depths, num_heads, strict=True):
            self.layers.append(
                RSTB(embed_dim, depth, heads, window_size, mlp_ratio, rates[start : start + depth])
            )
            start += depth
        self.norm = nn.LayerNorm(embed_dim)
        self.conv_after_body = nn.Conv2d(embed_dim, embed_dim, 3, padding=1)
        self.conv_before_upsample = nn.Sequential(
            nn.Conv2d(embed_dim, out_channels, 3, padding=1), nn.LeakyReLU(inplace=True)
        )
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    def forward_features(self, x: Tensor) -> Tensor:
        """Tokens through every RSTB, back to ``(B, C, H, W)``; ``x`` is already window-aligned."""
        b, c, h, w = x.shape
        shift = self.window_size // 2
        # One mask serves every shifted block; it depends only on the (padded) input size.
        mask = (
            shift_attention_mask(h, w, self.window_size, shift, x.device).to(x.dtype)
            if shift
            else None
        )
        tokens = self.patch_embed(x.flatten(2).transpose(1, 2))  # (B, H*W, C)
        for layer in self.layers:
            tokens = layer(tokens, (h, w), mask)
        tokens = self.norm(tokens)
        return tokens.transpose(1, 2).reshape(b, c, h, w)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        pad_h = (self.window_size - h % self.window_size) % self.window_size
        pad_w = (self.window_size - w % self.window_size) % self.window_size
        if pad_h or pad_w:
            # reflect (as released) needs the pad to be smaller than the image; tiny inputs replicate.
            mode = "reflect" if pad_h < h and pad_w < w else "replicate"
            x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
        x = self.conv_first(x)
        x = self.conv_after_body(self.forward_features(x)) + x
        x = self.conv_before_upsample(x)
        return x[..., :h, :w]  # features of the padding are cropped: (B, 64, h, w)


# --- the family's declaration ------------------------------------------------------------------------


@dataclass(frozen=True)
class SwinIRConfig(FamilyConfig):
    """SwinIR's constructor arguments with their bounds (see :class:`SwinIR`); defaults: the
    classical-SR configuration LTE uses."""

    embed_dim: int = param(int_field(1, MAX_WIDTH), 180)
    depths: tuple[int, ...] = param(int_list_field(1, MAX_DEPTH, 32), (6, 6, 6, 6, 6, 6))
    num_heads: tuple[int, ...] = param(int_list_field(1, 512, 32), (6, 6, 6, 6, 6, 6))
    window_size: int = param(int_field(1, 64), 8)
    mlp_ratio: float = param(float_field(0.0, 64.0, lo_open=True), 2.0)
    drop_path_rate: float = param(float_field(0.0, 1.0, hi_open=True), 0.1)
    out_channels: int = param(int_field(1, MAX_WIDTH), 64)
    in_channels: int = param(IN_CHANNELS, 3)

    def check(self, path: str) -> None:
        """One head count per stage, and every head count dividing the width."""
        if len(self.depths) != len(self.num_heads):
            raise FieldError(
                f"{path}.num_heads",
                f"must have one entry per stage of depths ({len(self.depths)}), "
                f"got {len(self.num_heads)}",
            )
        for i, h in enumerate(self.num_heads):
            if self.embed_dim % h:
                raise FieldError(
                    f"{path}.num_heads[{i}]", f"must divide embed_dim {self.embed_dim}, got {h}"
                )


#: Named configurations: LTE's SwinIR and a tiny one for tests.
PRESETS: Mapping[str, SwinIRConfig] = {
    "swinir": SwinIRConfig(),
    "swinir_tiny": SwinIRConfig(
        embed_dim=24, depths=(2, 2), num_heads=(2, 2), window_size=4, out_channels=16
    ),
}

#: The training patch size the released SwinIR attention masks were built for.
RELEASE_IMG_SIZE = 48


def release_buffers(encoder: Mapping[str, Any]) -> dict[str, Tensor]:
    """The buffers a released SwinIR holds and this module recomputes: each block's
    ``relative_position_index`` and each shifted block's ``attn_mask`` (for 48 x 48 patches)."""
    window = encoder["window_size"]
    size = RELEASE_IMG_SIZE
    mask = shift_attention_mask(size, size, window, window // 2, torch.device("cpu"))
    out: dict[str, Tensor] = {}
    for i, depth in enumerate(encoder["depths"]):
        for j in range(depth):
            prefix = f"layers.{i}.residual_group.blocks.{j}"
            out[f"{prefix}.attn.relative_position_index"] = relative_position_index(window)
            if j % 2 == 1:
                out[f"{prefix}.attn_mask"] = mask.clone()
    return out


#: The LTE release: ``swinir`` only (the released code builds its classical-SR configuration; the
#: sizes it reads are accepted, but only the preset is written).
RELEASE = EncoderRelease(
    names={"swinir": "swinir"},
    arguments={
        "embed_dim": "embed_dim",
        "depths": "depths",
        "num_heads": "num_heads",
        "window_size": "window_size",
        "mlp_ratio": "mlp_ratio",
    },
    buffers=release_buffers,
)

FAMILY = EncoderFamily(
    module=SwinIR,
    config=SwinIRConfig,
    presets=PRESETS,
    labels=("swinir",),
    release=RELEASE,
    v1_targets=("lte.models.SwinIR", "lte.models.swinir.SwinIR"),
)
