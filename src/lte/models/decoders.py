"""Implicit decoders: LTE, LIIF and Meta-SR, exactly as SPEC.md states them.

Each decoder is stateless. :meth:`prepare` turns encoder features into the per-image tensors the query
needs (LTE's amplitude and frequency maps, LIIF's and Meta-SR's 3×3-unfolded features), computed once
per image however many query chunks follow. :meth:`query` maps ``(B, Q, 2)`` coordinates and cells to
``(B, Q, 3)`` RGB in the normalised space. Parameter names follow the released checkpoints (``coef``,
``freq``, ``phase``, ``imnet``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from lte import geometry
from lte.models.mlp import MLP

#: Per-image tensors handed from :meth:`prepare` to :meth:`query`.
State = dict[str, Tensor]


def _rel_cell(cell: Tensor, feat_hw: tuple[int, int]) -> Tensor:
    """The cell in units of half a code: ``cell ⊙ (h, w)``."""
    h, w = feat_hw
    return torch.stack([cell[..., 0] * h, cell[..., 1] * w], dim=-1)


def _feat_hw(state: State) -> tuple[int, int]:
    h, w = state["inp"].shape[-2:]
    return int(h), int(w)


class LTEDecoder(nn.Module):
    """Local Texture Estimator (Lee & Jin, CVPR 2022) with local ensemble and a bilinear residual.

    Args:
        in_channels: encoder output width C.
        hidden_dim: number of Fourier features (256): amplitude width, and twice the frequency count.
        mlp_hidden: hidden widths of the MLP (``[256, 256, 256]``).
    """

    def __init__(
        self, in_channels: int, hidden_dim: int = 256, mlp_hidden: Sequence[int] = (256, 256, 256)
    ) -> None:
        super().__init__()
        if hidden_dim % 2:
            raise ValueError(f"hidden_dim must be even (cos and sin halves), got {hidden_dim}")
        self.hidden_dim = hidden_dim
        self.coef = nn.Conv2d(in_channels, hidden_dim, 3, padding=1)
        self.freq = nn.Conv2d(in_channels, hidden_dim, 3, padding=1)
        self.phase = nn.Linear(2, hidden_dim // 2, bias=False)
        self.imnet = MLP(hidden_dim, 3, list(mlp_hidden))

    def prepare(self, feat: Tensor, inp: Tensor) -> State:
        """Amplitude and frequency maps on the LR grid, and the input for the bilinear residual."""
        return {"coef": self.coef(feat), "freq": self.freq(feat), "inp": inp}

    def query(self, state: State, coord: Tensor, cell: Tensor) -> Tensor:
        feat_hw = _feat_hw(state)
        b, q = coord.shape[:2]
        index, rel = geometry.ensemble_neighbours(coord, feat_hw)  # (B, Q, 4), (B, Q, 4, 2)
        amp = geometry.gather_codes(state["coef"], index)  # (B, Q, 4, 256)
        freq = geometry.gather_codes(state["freq"], index)  # (B, Q, 4, 256)
        # Channels 2k and 2k+1 are the (y, x) components of frequency k.
        freq = freq.view(b, q, 4, self.hidden_dim // 2, 2)  # (B, Q, 4, 128, 2)
        theta = (freq * rel.unsqueeze(-2)).sum(-1)  # (B, Q, 4, 128)
        theta = theta + self.phase(_rel_cell(cell, feat_hw)).unsqueeze(2)  # phase: (B, Q, 1, 128)
        theta = theta * math.pi
        z = amp * torch.cat([torch.cos(theta), torch.sin(theta)], dim=-1)  # (B, Q, 4, 256)
        pred = self.imnet(z)  # (B, Q, 4, 3)
        weights = geometry.ensemble_weights(rel)  # (B, Q, 4)
        out = (pred * weights.unsqueeze(-1)).sum(2)  # (B, Q, 3)
        return out + geometry.bilinear_sample(state["inp"], coord)


class LIIFDecoder(nn.Module):
    """Local Implicit Image Function (Chen et al., CVPR 2021): unfolded features, local ensemble, cell.

    Args:
        in_channels: encoder output width C (the MLP sees 9C + 4 inputs).
        mlp_hidden: hidden widths of the MLP (``[256, 256, 256, 256]``).
    """

    def __init__(self, in_channels: int, mlp_hidden: Sequence[int] = (256, 256, 256, 256)) -> None:
        super().__init__()
        self.imnet = MLP(in_channels * 9 + 4, 3, list(mlp_hidden))

    def prepare(self, feat: Tensor, inp: Tensor) -> State:
        """3×3 unfolded features, channel-major (``c * 9 + k``)."""
        return {"feat": geometry.unfold3x3(feat), "inp": inp}

    def query(self, state: State, coord: Tensor, cell: Tensor) -> Tensor:
        feat_hw = _feat_hw(state)
        index, rel = geometry.ensemble_neighbours(coord, feat_hw)  # (B, Q, 4), (B, Q, 4, 2)
        codes = geometry.gather_codes(state["feat"], index)  # (B, Q, 4, 9C)
        rel_cell = _rel_cell(cell, feat_hw).unsqueeze(2).expand_as(rel)  # (B, Q, 4, 2)
        pred = self.imnet(torch.cat([codes, rel, rel_cell], dim=-1))  # (B, Q, 4, 3)
        weights = geometry.ensemble_weights(rel)  # (B, Q, 4)
        return (pred * weights.unsqueeze(-1)).sum(2)


class MetaSRDecoder(nn.Module):
    """Meta-SR's meta-upscale module (Hu et al., CVPR 2019) as reimplemented by LIIF.

    An MLP maps the query's offset and scale to a ``(9C, 3)`` weight matrix applied to the nearest
    code's unfolded features. No ensemble and no residual.

    Args:
        in_channels: encoder output width C.
        mlp_hidden: hidden widths of the weight-prediction MLP (``[256]``).
    """

    def __init__(self, in_channels: int, mlp_hidden: Sequence[int] = (256,)) -> None:
        super().__init__()
        self.in_features = in_channels * 9
        self.imnet = MLP(3, self.in_features * 3, list(mlp_hidden))

    def prepare(self, feat: Tensor, inp: Tensor) -> State:
        """3×3 unfolded features, channel-major (``c * 9 + k``)."""
        return {"feat": geometry.unfold3x3(feat), "inp": inp}

    def query(self, state: State, coord: Tensor, cell: Tensor) -> Tensor:
        h, w = _feat_hw(state)
        eps = geometry.EPS_SHIFT
        # Meta-SR places codes at their top-left corners and queries at the target pixel's corner.
        q = coord - cell / 2  # (B, Q, 2)
        q_look = (q + eps).clamp(-1 + eps, 1 - eps)
        iy = geometry.nearest_code_index(q_look[..., 0], h)
        ix = geometry.nearest_code_index(q_look[..., 1], w)
        corner_y = geometry.make_coord_1d(h, device=coord.device) - (2 / h) / 2
        corner_x = geometry.make_coord_1d(w, device=coord.device) - (2 / w) / 2
        rel = torch.stack(
            [(q[..., 0] - corner_y[iy]) * (h / 2), (q[..., 1] - corner_x[ix]) * (w / 2)], dim=-1
        )
        scale = cell[..., :1] * (h / 2)  # (B, Q, 1)
        weight = self.imnet(torch.cat([rel, scale], dim=-1))  # (B, Q, 9C*3)
        weight = weight.view(*coord.shape[:2], self.in_features, 3)  # (B, Q, 9C, 3)
        codes = geometry.gather_codes(state["feat"], iy * w + ix)  # (B, Q, 9C)
        return (codes.unsqueeze(-2) @ weight).squeeze(-2)  # (B, Q, 3)
