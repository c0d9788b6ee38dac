"""EDSR (Lim et al., "Enhanced Deep Residual Networks", CVPRW 2017): feature extractor or fixed-scale SR.

By default used without its upsampler: the implicit decoders read the LR-resolution feature map
directly. With ``upscale=s`` (2, 3 or 4) it keeps EDSR's tail and outputs RGB at ``s`` times the LR
size: the fixed-scale "EDSR-baseline" rows of the papers' tables (SPEC.md, "Fixed-scale baselines").
The released files also store EDSR's mean-shift layers (``sub_mean``, ``add_mean``), which their
forward pass never calls; they are not part of this module: :data:`RELEASE` lists them among the
buffers the checkpoint loader skips and export writes back.

The family's declaration (:data:`FAMILY`) sits at the end: its typed fields (:class:`EDSRConfig`),
presets and how the official releases name and configure it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from lte.models.family import EncoderFamily, EncoderRelease
from lte.models.fields import (
    IN_CHANNELS,
    MAX_DEPTH,
    MAX_WIDTH,
    UPSCALE,
    FamilyConfig,
    float_field,
    int_field,
    param,
)

#: Integer scales a fixed-scale tail exists for (SPEC: one network per scale).
UPSCALES = (2, 3, 4)


def conv3x3(in_ch: int, out_ch: int) -> nn.Conv2d:
    """3×3 convolution with 'same' zero padding and a bias, EDSR's only layer type."""
    return nn.Conv2d(in_ch, out_ch, 3, padding=1)


class ResBlock(nn.Module):
    """conv → ReLU → conv, scaled by ``res_scale``, plus the identity."""

    def __init__(self, n_feats: int, res_scale: float = 1.0) -> None:
        super().__init__()
        self.body = nn.Sequential(
            conv3x3(n_feats, n_feats), nn.ReLU(inplace=True), conv3x3(n_feats, n_feats)
        )
        self.res_scale = res_scale

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x).mul(self.res_scale) + x


def check_upscale(upscale: int | None, family: str) -> None:
    """``upscale`` must be ``None`` (feature extractor) or one of :data:`UPSCALES` (a ``ValueError``)."""
    if upscale is not None and (
        not isinstance(upscale, int) or isinstance(upscale, bool) or upscale not in UPSCALES
    ):
        raise ValueError(
            f"{family}: upscale must be None (feature extractor) or one of 2, 3, 4, got {upscale!r}"
        )


def edsr_tail(n_feats: int, upscale: int) -> nn.Sequential:
    """EDSR's upsampler then conv → RGB (SPEC): ``tail.0`` is [conv n→4n, PixelShuffle(2)] × log2(s)
    for s = 2, 4, or [conv n→9n, PixelShuffle(3)] for s = 3; ``tail.1`` is conv n → 3. No mean shift.
    """
    steps: list[nn.Module] = []
    if upscale == 3:
        steps += [conv3x3(n_feats, 9 * n_feats), nn.PixelShuffle(3)]
    else:
        for _ in range(upscale.bit_length() - 1):  # log2(s): 1 for x2, 2 for x4
            steps += [conv3x3(n_feats, 4 * n_feats), nn.PixelShuffle(2)]
    return nn.Sequential(nn.Sequential(*steps), conv3x3(n_feats, 3))


class EDSR(nn.Module):
    """EDSR feature extractor: head conv → ``n_resblocks`` residual blocks → conv, plus a long skip.

    Args:
        n_resblocks: residual blocks (16 for EDSR-baseline, 32 for EDSR).
        n_feats: channel width, also the output width (64 baseline, 256 full).
        res_scale: residual scaling inside each block (1 baseline, 0.1 full).
        in_channels: input channels (3 for RGB).
        upscale: ``None`` (default): the LR feature map, ``n_feats`` wide. 2, 3 or 4: EDSR's tail
            (:func:`edsr_tail`), RGB of ``upscale`` times the LR size (3 channels).

    Defaults are EDSR-baseline. Receptive field: ``2 * n_resblocks + 2`` stacked 3×3 convolutions,
    i.e. a radius of that many LR pixels (34 for the baseline, 66 for EDSR); the tail's
    convolutions add at most one LR pixel each.
    """

    #: The allow-listed name of this family in model descriptions (see ``SRModel.describe``).
    kind = "edsr"

    # The encoder contract (lte.models.encoder.Encoder), declared explicitly.
    out_channels: int
    #: Any input size works as is.
    pad_multiple: int = 0
    #: LR pixels each side one output feature depends on (set from the depth in ``__init__``).
    receptive_radius: int | None
    #: The fixed output scale, or ``None`` for a feature extractor (``SRModel.native_scale``).
    upscale: int | None

    def __init__(
        self,
        n_resblocks: int = 16,
        n_feats: int = 64,
        res_scale: float = 1.0,
        in_channels: int = 3,
        upscale: int | None = None,
    ) -> None:
        super().__init__()
        check_upscale(upscale, "EDSR")
        #: Constructor arguments: the encoder's identity in checkpoints, results and W&B (an unset
        #: ``upscale`` is left out: feature extractors' descriptions are their identity).
        self.config = EDSRConfig(n_resblocks, n_feats, res_scale, in_channels, upscale).to_dict()
        self.upscale = upscale
        self.out_channels = int(n_feats) if upscale is None else 3
        self.receptive_radius = int(2 * n_resblocks + 2)
        self.head = nn.Sequential(conv3x3(in_channels, n_feats))
        blocks: list[nn.Module] = [ResBlock(n_feats, res_scale) for _ in range(n_resblocks)]
        blocks.append(conv3x3(n_feats, n_feats))
        self.body = nn.Sequential(*blocks)
        if upscale is not None:
            self.tail = edsr_tail(n_feats, upscale)
            n_tail = sum(isinstance(m, nn.Conv2d) for m in self.tail.modules())
            self.receptive_radius += n_tail

    def forward(self, x: Tensor) -> Tensor:
        """``(B, n_feats, h, w)`` features, or ``(B, 3, s·h, s·w)`` RGB with ``upscale=s``."""
        x = self.head(x)
        res = self.body(x) + x
        return res if self.upscale is None else self.tail(res)


# --- the family's declaration ------------------------------------------------------------------------


@dataclass(frozen=True)
class EDSRConfig(FamilyConfig):
    """EDSR's constructor arguments with their bounds (see :class:`EDSR`); defaults: EDSR-baseline."""

    n_resblocks: int = param(int_field(1, MAX_DEPTH), 16)
    n_feats: int = param(int_field(1, MAX_WIDTH), 64)
    res_scale: float = param(float_field(0.0, 10.0, lo_open=True), 1.0)
    in_channels: int = param(IN_CHANNELS, 3)
    upscale: int | None = param(UPSCALE, None, optional=True)


#: Named configurations: the papers' two EDSRs and a tiny one for tests (``conf/encoder/<name>.yaml``).
PRESETS: Mapping[str, EDSRConfig] = {
    "edsr_baseline": EDSRConfig(),
    "edsr": EDSRConfig(n_resblocks=32, n_feats=256, res_scale=0.1),
    "edsr_tiny": EDSRConfig(n_resblocks=2, n_feats=16),
}

#: EDSR's DIV2K RGB mean, held by the released files' (unused) mean-shift layers.
RGB_MEAN = (0.4488, 0.4371, 0.4040)


def release_buffers(encoder: Mapping[str, Any]) -> dict[str, Tensor]:
    """The mean-shift layers a released EDSR holds and never calls (1x1 convolutions adding or
    subtracting :data:`RGB_MEAN`): skipped on load, written back on export for a faithful file."""
    mean = torch.tensor(RGB_MEAN)
    eye = torch.eye(3).view(3, 3, 1, 1)
    return {
        "sub_mean.weight": eye.clone(),
        "sub_mean.bias": -mean,
        "add_mean.weight": eye.clone(),
        "add_mean.bias": mean.clone(),
    }


#: The LTE/LIIF releases: ``edsr-baseline`` and ``edsr`` by name; any other EDSR as ``edsr`` with
#: its three sizes spelled out.
RELEASE = EncoderRelease(
    names={"edsr-baseline": "edsr_baseline", "edsr": "edsr"},
    arguments={"n_resblocks": "n_resblocks", "n_feats": "n_feats", "res_scale": "res_scale"},
    general="edsr",
    buffers=release_buffers,
)

FAMILY = EncoderFamily(
    module=EDSR,
    config=EDSRConfig,
    presets=PRESETS,
    labels=("edsr_baseline", "edsr"),
    release=RELEASE,
    v1_targets=("lte.models.EDSR", "lte.models.edsr.EDSR"),
)
