"""RDN (Zhang et al., "Residual Dense Network for Image SR", CVPR 2018): feature extractor or fixed-scale SR.

Configuration B of the paper is the default: G0 = 64, D = 16 blocks, C = 8 layers, G = 64. By default
used without its upsampler; with ``upscale=s`` (2, 3 or 4) it keeps its ``UPNet`` and outputs RGB at
``s`` times the LR size (the fixed-scale "RDN" rows, SPEC.md "Fixed-scale baselines"). Module names
follow the released checkpoints (``SFENet1``, ``RDBs``, ``GFF``, ``UPNet``).

The family's declaration (:data:`FAMILY`) sits at the end: its typed fields (:class:`RDNConfig`),
presets and how the official releases name and configure it (the paper's configurations A and B).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from lte.models.edsr import check_upscale
from lte.models.family import EncoderFamily, EncoderRelease
from lte.models.fields import (
    IN_CHANNELS,
    MAX_DEPTH,
    MAX_WIDTH,
    UPSCALE,
    FamilyConfig,
    int_field,
    param,
)


class DenseLayer(nn.Module):
    """conv(k×k) → ReLU, whose output is concatenated to its input (dense connectivity)."""

    def __init__(self, in_ch: int, growth: int, kernel: int = 3) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(in_ch, growth, kernel, padding=kernel // 2), nn.ReLU(inplace=True)
        )

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([x, self.conv(x)], dim=1)


class RDB(nn.Module):
    """Residual dense block: C dense layers, 1×1 local feature fusion back to G0, plus the identity."""

    def __init__(self, g0: int, growth: int, n_layers: int, kernel: int = 3) -> None:
        super().__init__()
        self.convs = nn.Sequential(
            *[DenseLayer(g0 + i * growth, growth, kernel) for i in range(n_layers)]
        )
        self.LFF = nn.Conv2d(g0 + n_layers * growth, g0, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.LFF(self.convs(x)) + x


def rdn_upnet(g0: int, growth: int, upscale: int, kernel: int = 3) -> nn.Sequential:
    """RDN's upsampler (SPEC): s = 2, 3: [conv G0 → G s², PixelShuffle(s), conv G → 3];
    s = 4: [conv G0 → 4G, PixelShuffle(2), conv G → 4G, PixelShuffle(2), conv G → 3].
    """
    pad = kernel // 2
    if upscale == 4:
        return nn.Sequential(
            nn.Conv2d(g0, 4 * growth, kernel, padding=pad),
            nn.PixelShuffle(2),
            nn.Conv2d(growth, 4 * growth, kernel, padding=pad),
            nn.PixelShuffle(2),
            nn.Conv2d(growth, 3, kernel, padding=pad),
        )
    return nn.Sequential(
        nn.Conv2d(g0, growth * upscale * upscale, kernel, padding=pad),
        nn.PixelShuffle(upscale),
        nn.Conv2d(growth, 3, kernel, padding=pad),
    )


class RDN(nn.Module):
    """RDN feature extractor: two shallow convs, D residual dense blocks, global feature fusion.

    Args:
        g0: width of the shallow features and of the output (64).
        n_blocks: residual dense blocks D (16 in configuration B).
        n_layers: conv layers per block C (8 in configuration B).
        growth: growth rate G (64 in configuration B).
        kernel: kernel size of the 3×3 convolutions.
        in_channels: input channels (3 for RGB).
        upscale: ``None`` (default): the LR feature map, ``g0`` wide. 2, 3 or 4: the ``UPNet``
            (:func:`rdn_upnet`), RGB of ``upscale`` times the LR size (3 channels).

    Receptive field radius (kernel 3): ``2 + n_blocks * n_layers + 1`` LR pixels (131 for config B);
    the ``UPNet`` convolutions add at most ``kernel // 2`` LR pixels each.
    """

    #: The allow-listed name of this family in model descriptions (see ``SRModel.describe``).
    kind = "rdn"

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
        g0: int = 64,
        n_blocks: int = 16,
        n_layers: int = 8,
        growth: int = 64,
        kernel: int = 3,
        in_channels: int = 3,
        upscale: int | None = None,
    ) -> None:
        super().__init__()
        check_upscale(upscale, "RDN")
        #: Constructor arguments: the encoder's identity in checkpoints, results and W&B (an unset
        #: ``upscale`` is left out: feature extractors' descriptions are their identity).
        self.config = RDNConfig(
            g0, n_blocks, n_layers, growth, kernel, in_channels, upscale
        ).to_dict()
        self.upscale = upscale
        self.out_channels = int(g0) if upscale is None else 3
        self.receptive_radius = int((kernel // 2) * (3 + n_blocks * n_layers))
        self.SFENet1 = nn.Conv2d(in_channels, g0, kernel, padding=kernel // 2)
        self.SFENet2 = nn.Conv2d(g0, g0, kernel, padding=kernel // 2)
        self.RDBs = nn.ModuleList([RDB(g0, growth, n_layers, kernel) for _ in range(n_blocks)])
        self.GFF = nn.Sequential(
            nn.Conv2d(n_blocks * g0, g0, 1), nn.Conv2d(g0, g0, kernel, padding=kernel // 2)
        )
        if upscale is not None:
            self.UPNet = rdn_upnet(g0, growth, upscale, kernel)
            n_up = sum(isinstance(m, nn.Conv2d) for m in self.UPNet)
            self.receptive_radius += (kernel // 2) * n_up

    def forward(self, x: Tensor) -> Tensor:
        """``(B, G0, h, w)`` features, or ``(B, 3, s·h, s·w)`` RGB with ``upscale=s``."""
        shallow = self.SFENet1(x)
        x = self.SFENet2(shallow)
        outs = []
        for block in self.RDBs:
            x = block(x)
            outs.append(x)
        feat = self.GFF(torch.cat(outs, dim=1)) + shallow  # (B, G0, h, w)
        return feat if self.upscale is None else self.UPNet(feat)


# --- the family's declaration ------------------------------------------------------------------------


@dataclass(frozen=True)
class RDNConfig(FamilyConfig):
    """RDN's constructor arguments with their bounds (see :class:`RDN`); defaults: configuration B."""

    g0: int = param(int_field(1, MAX_WIDTH), 64)
    n_blocks: int = param(int_field(1, MAX_DEPTH), 16)
    n_layers: int = param(int_field(1, MAX_DEPTH), 8)
    growth: int = param(int_field(1, MAX_WIDTH), 64)
    kernel: int = param(int_field(1, 15, odd=True), 3)  # 'same' padding needs an odd kernel
    in_channels: int = param(IN_CHANNELS, 3)
    upscale: int | None = param(UPSCALE, None, optional=True)


#: Named configurations: the paper's configuration B and a tiny one for tests.
PRESETS: Mapping[str, RDNConfig] = {
    "rdn": RDNConfig(),
    "rdn_tiny": RDNConfig(g0=16, n_blocks=2, n_layers=2, growth=8),
}

#: The LTE/LIIF releases: ``rdn`` (configuration B by default); ``G0`` and ``RDNkSize`` set single
#: fields, ``RDNconfig`` the paper's (D, C, G): A = (20, 6, 32), B = (16, 8, 64).
RELEASE = EncoderRelease(
    names={"rdn": "rdn"},
    arguments={"G0": "g0", "RDNkSize": "kernel"},
    choices={
        "RDNconfig": {
            "A": {"n_blocks": 20, "n_layers": 6, "growth": 32},
            "B": {"n_blocks": 16, "n_layers": 8, "growth": 64},
        }
    },
    general="rdn",
)

FAMILY = EncoderFamily(
    module=RDN,
    config=RDNConfig,
    presets=PRESETS,
    labels=("rdn",),
    release=RELEASE,
    v1_targets=("lte.models.RDN", "lte.models.rdn.RDN"),
)
