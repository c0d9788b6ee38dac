"""EDSR as a feature extractor (Lim et al., "Enhanced Deep Residual Networks", CVPRW 2017).

Used without its upsampler: the implicit decoders read the LR-resolution feature map directly. The
released LTE/LIIF files also store EDSR's mean-shift layers (``sub_mean``, ``add_mean``), which their
forward pass never calls; they are not part of this module, and the checkpoint loader skips them.
"""

from __future__ import annotations

from torch import Tensor, nn


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


class EDSR(nn.Module):
    """EDSR feature extractor: head conv → ``n_resblocks`` residual blocks → conv, plus a long skip.

    Args:
        n_resblocks: residual blocks (16 for EDSR-baseline, 32 for EDSR).
        n_feats: channel width, also the output width (64 baseline, 256 full).
        res_scale: residual scaling inside each block (1 baseline, 0.1 full).
        in_channels: input channels (3 for RGB).

    Defaults are EDSR-baseline. Receptive field: ``2 * n_resblocks + 2`` stacked 3×3 convolutions,
    i.e. a radius of that many LR pixels (34 for the baseline, 66 for EDSR).
    """

    #: The allow-listed name of this family in model descriptions (see ``SRModel.describe``).
    kind = "edsr"

    # The encoder contract (lte.models.encoder.Encoder), declared explicitly.
    out_channels: int
    #: Any input size works as is.
    pad_multiple: int = 0
    #: LR pixels each side one output feature depends on (set from the depth in ``__init__``).
    receptive_radius: int | None

    def __init__(
        self, n_resblocks: int = 16, n_feats: int = 64, res_scale: float = 1.0, in_channels: int = 3
    ) -> None:
        super().__init__()
        #: Constructor arguments: the encoder's identity in checkpoints, results and W&B.
        self.config = {
            "n_resblocks": int(n_resblocks),
            "n_feats": int(n_feats),
            "res_scale": float(res_scale),
            "in_channels": int(in_channels),
        }
        self.out_channels = int(n_feats)
        self.receptive_radius = int(2 * n_resblocks + 2)
        self.head = nn.Sequential(conv3x3(in_channels, n_feats))
        blocks: list[nn.Module] = [ResBlock(n_feats, res_scale) for _ in range(n_resblocks)]
        blocks.append(conv3x3(n_feats, n_feats))
        self.body = nn.Sequential(*blocks)

    def forward(self, x: Tensor) -> Tensor:
        x = self.head(x)
        return self.body(x) + x
