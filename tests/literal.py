"""A literal, per-neighbour reading of SPEC.md, kept as the reference the fast paths are tested against.

Written for clarity, not speed: one ``grid_sample(mode="nearest")`` per neighbour and per tensor, a
Python loop over the four neighbours, and the areas swapped by hand. It reads the parameters of an
:class:`lte.models.SRModel` but none of its query code, and no helper from :mod:`lte.geometry` except
``make_coord`` (the pixel-centre grid, which SPEC defines).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from lte.geometry import make_coord
from lte.models import SRModel


def _nearest(grid_map: Tensor, coord: Tensor) -> Tensor:
    """Value of ``grid_map`` (B, C, h, w) at the code containing each (y, x) of ``coord`` (B, Q, 2)."""
    out = F.grid_sample(grid_map, coord.flip(-1).unsqueeze(1), mode="nearest", align_corners=False)
    return out[:, :, 0, :].permute(0, 2, 1)  # (B, Q, C)


def _centres(feat: Tensor) -> Tensor:
    """Code centres as a (B, 2, h, w) map."""
    b, _, h, w = feat.shape
    return make_coord((h, w), flatten=False).permute(2, 0, 1).unsqueeze(0).expand(b, 2, h, w)


def _ensemble(feat: Tensor, coord: Tensor, predict) -> Tensor:
    """SPEC's four-neighbour local ensemble around ``predict(q_shifted, rel) -> (B, Q, 3)``."""
    h, w = feat.shape[-2:]
    rx, ry = 1 / h, 1 / w
    preds, areas = [], []
    for vx in (-1, 1):  # along rows (y)
        for vy in (-1, 1):  # along columns (x)
            q = coord.clone()
            q[:, :, 0] += vx * rx + 1e-6
            q[:, :, 1] += vy * ry + 1e-6
            q.clamp_(-1 + 1e-6, 1 - 1e-6)
            centre = _nearest(_centres(feat), q)
            rel = coord - centre
            rel[:, :, 0] *= h
            rel[:, :, 1] *= w
            preds.append(predict(q, rel))
            areas.append(torch.abs(rel[:, :, 0] * rel[:, :, 1]) + 1e-9)
    total = torch.stack(areas).sum(dim=0)
    areas[0], areas[3] = areas[3], areas[0]  # each prediction takes the opposite neighbour's area
    areas[1], areas[2] = areas[2], areas[1]
    out = 0
    for pred, area in zip(preds, areas, strict=True):
        out = out + pred * (area / total).unsqueeze(-1)
    return out


def literal_lte(model: SRModel, inp: Tensor, coord: Tensor, cell: Tensor) -> Tensor:
    """LTE (SPEC "LTE decoder"): Fourier features from amplitude, frequency and phase, then the MLP."""
    dec = model.decoder
    feat = model.encoder(inp)
    coef, freq = dec.coef(feat), dec.freq(feat)
    h, w = feat.shape[-2:]
    b, n = coord.shape[:2]

    def predict(q: Tensor, rel: Tensor) -> Tensor:
        a = _nearest(coef, q)
        phi = _nearest(freq, q)
        phi = torch.stack(
            torch.split(phi, 2, dim=-1), dim=-1
        )  # (B, Q, 2, 128): [j, k] = channel 2k+j
        theta = (phi * rel.unsqueeze(-1)).sum(dim=-2)
        rel_cell = cell.clone()
        rel_cell[:, :, 0] *= h
        rel_cell[:, :, 1] *= w
        theta = theta + dec.phase(rel_cell.view(b * n, -1)).view(b, n, -1)
        z = torch.cat([torch.cos(math.pi * theta), torch.sin(math.pi * theta)], dim=-1)
        return dec.imnet(torch.mul(a, z).contiguous().view(b * n, -1)).view(b, n, -1)

    out = _ensemble(feat, coord, predict)
    residual = F.grid_sample(
        inp,
        coord.flip(-1).unsqueeze(1),
        mode="bilinear",
        padding_mode="border",
        align_corners=False,
    )
    return out + residual[:, :, 0, :].permute(0, 2, 1)


def _unfold(feat: Tensor) -> Tensor:
    b, c, h, w = feat.shape
    return F.unfold(feat, 3, padding=1).view(b, c * 9, h, w)


def literal_liif(model: SRModel, inp: Tensor, coord: Tensor, cell: Tensor) -> Tensor:
    """LIIF (SPEC "LIIF decoder"): ``[features(9C), rel(2), rel_cell(2)]`` through the MLP, ensembled."""
    feat = model.encoder(inp)
    h, w = feat.shape[-2:]
    unf = _unfold(feat)
    b, n = coord.shape[:2]

    def predict(q: Tensor, rel: Tensor) -> Tensor:
        rel_cell = cell.clone()
        rel_cell[:, :, 0] *= h
        rel_cell[:, :, 1] *= w
        x = torch.cat([_nearest(unf, q), rel, rel_cell], dim=-1)
        return model.decoder.imnet(x.contiguous().view(b * n, -1)).view(b, n, -1)

    return _ensemble(feat, coord, predict)


def literal_metasr(model: SRModel, inp: Tensor, coord: Tensor, cell: Tensor) -> Tensor:
    """Meta-SR (SPEC "Meta-SR"): corner-aligned codes, predicted (9C, 3) weights, no ensemble."""
    feat = model.encoder(inp)
    b, c, h, w = feat.shape
    unf = _unfold(feat)
    corners = _centres(feat).clone()
    corners[:, 0] -= (2 / h) / 2
    corners[:, 1] -= (2 / w) / 2
    q = coord.clone()
    q[:, :, 0] -= cell[:, :, 0] / 2
    q[:, :, 1] -= cell[:, :, 1] / 2
    q_look = (q + 1e-6).clamp(-1 + 1e-6, 1 - 1e-6)
    phi = _nearest(unf, q_look)
    corner = _nearest(corners, q_look)
    rel = q - corner
    rel[:, :, 0] *= h / 2
    rel[:, :, 1] *= w / 2
    s = cell[:, :, 0] * (h / 2)
    n = coord.shape[1]
    weight = model.decoder.imnet(torch.cat([rel, s.unsqueeze(-1)], dim=-1).view(b * n, -1))
    weight = weight.view(b * n, c * 9, 3)
    return torch.bmm(phi.contiguous().view(b * n, 1, -1), weight).view(b, n, 3)


def _modulated_mlp(imnet, x: Tensor, mods: Tensor, config: dict) -> Tensor:
    """SPEC "LMF": hidden layer l is ``Linear``, then ``x ⊙ (1 + s_l) + t_l``, then ReLU; the output
    Linear is not modulated. ``mods`` (..., ·) holds all scales first, then all shifts."""
    width, depth = config["render_width"], config["render_depth"]
    linears = [m for m in imnet.layers if isinstance(m, torch.nn.Linear)]
    shift_start = width * depth if config["mod_scale"] else 0
    for layer in range(depth):
        x = linears[layer](x)
        if config["mod_scale"]:
            x = x * (1 + mods[..., width * layer : width * (layer + 1)])
        if config["mod_shift"]:
            start = shift_start + width * layer
            x = x + mods[..., start : start + width]
        x = torch.relu(x)
    return linears[-1](x)


def _image_rel_cell(cell: Tensor, h: int, w: int) -> Tensor:
    """The hypernetwork's cell (SPEC "Hypernetwork cell"): one per image, in half codes, (B, 2)."""
    rel_cell = cell[:, 0].clone()
    rel_cell[:, 0] *= h
    rel_cell[:, 1] *= w
    return rel_cell


def _mod_dim(config: dict) -> int:
    return (
        config["render_width"]
        * config["render_depth"]
        * (config["mod_scale"] + config["mod_shift"])
    )


def literal_lm_lte(model: SRModel, inp: Tensor, coord: Tensor, cell: Tensor) -> Tensor:
    """LM-LTE (SPEC "LMF"): the latent step once per code, then per neighbour the latent Fourier
    features through the modulated render MLP; ensembled, plus the bilinear residual."""
    dec = model.decoder
    config = dec.config
    feat = model.encoder(inp)
    h, w = feat.shape[-2:]
    b, n = coord.shape[:2]
    coef, freq = dec.coef(feat), dec.freq(feat)  # (B, 128, h, w)
    # Latent step: theta_k = Phi_2k + Phi_2k+1 + P(rel_cell)_k, no offset term.
    theta = freq[:, 0::2] + freq[:, 1::2] + dec.phase(_image_rel_cell(cell, h, w))[:, :, None, None]
    z = coef * torch.cat([torch.cos(math.pi * theta), torch.sin(math.pi * theta)], dim=1)
    m = dec.hypernet(z.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)  # (B, 288, h, w)
    dim, width = _mod_dim(config), config["render_width"]
    mods, amp, lat_freq = m[:, :dim], m[:, dim : dim + width], m[:, dim + width : dim + 2 * width]

    def predict(q: Tensor, rel: Tensor) -> Tensor:
        phi = _nearest(lat_freq, q)
        phi = torch.stack(torch.split(phi, 2, dim=-1), dim=-1)  # (B, Q, 2, 8): [j, k] = ch 2k+j
        th = (phi * rel.unsqueeze(-1)).sum(dim=-2)
        rel_cell = cell.clone()
        rel_cell[:, :, 0] *= h
        rel_cell[:, :, 1] *= w
        th = th + dec.imphase(rel_cell.view(b * n, -1)).view(b, n, -1)
        x = _nearest(amp, q) * torch.cat([torch.cos(math.pi * th), torch.sin(math.pi * th)], dim=-1)
        return _modulated_mlp(dec.imnet, x, _nearest(mods, q), config)

    out = _ensemble(feat, coord, predict)
    residual = F.grid_sample(
        inp,
        coord.flip(-1).unsqueeze(1),
        mode="bilinear",
        padding_mode="border",
        align_corners=False,
    )
    return out + residual[:, :, 0, :].permute(0, 2, 1)


def literal_lm_liif(model: SRModel, inp: Tensor, coord: Tensor, cell: Tensor) -> Tensor:
    """LM-LIIF (SPEC "LMF"): the hypernetwork on ``[unfold(F), rel_cell]`` once per code, then per
    neighbour ``[latent, rel, rel_cell]`` through the modulated render MLP; ensembled, no residual."""
    dec = model.decoder
    config = dec.config
    feat = model.encoder(inp)
    h, w = feat.shape[-2:]
    b = coord.shape[0]
    unf = _unfold(feat)  # (B, 9C, h, w)
    rel_cell_map = _image_rel_cell(cell, h, w)[:, :, None, None].expand(b, 2, h, w)
    m = dec.hypernet(torch.cat([unf, rel_cell_map], dim=1).permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    dim, width = _mod_dim(config), config["render_width"]
    mods, latent = m[:, :dim], m[:, dim : dim + width]

    def predict(q: Tensor, rel: Tensor) -> Tensor:
        rel_cell = cell.clone()
        rel_cell[:, :, 0] *= h
        rel_cell[:, :, 1] *= w
        x = torch.cat([_nearest(latent, q), rel, rel_cell], dim=-1)
        return _modulated_mlp(dec.imnet, x, _nearest(mods, q), config)

    return _ensemble(feat, coord, predict)


LITERAL = {
    "lte": literal_lte,
    "liif": literal_liif,
    "metasr": literal_metasr,
    "lm_lte": literal_lm_lte,
    "lm_liif": literal_lm_liif,
}


def literal_image(model: SRModel, lr: Tensor, out_hw: tuple[int, int], chunk: int) -> Tensor:
    """The official test loop over the literal decoders: ``(B, 3, H, W)`` from a normalised LR.

    As the papers' test code does, the encoder (and LTE's coefficient / frequency maps, the official
    ``gen_feat``) runs once per image and the decoder answers ``chunk`` queries at a time; cells are
    enlarged per axis beyond ``model.scale_max`` as SPEC says. The benchmarks' baseline.
    """
    from types import SimpleNamespace

    from grids import query_grid
    from lte.geometry import cell_enlargement

    kind = model.decoder.kind
    cell_scale = tuple(
        cell_enlargement(out / inp, model.scale_max)
        for out, inp in zip(out_hw, lr.shape[-2:], strict=True)
    )
    with torch.no_grad():
        feat = model.encoder(lr)
        dec = model.decoder
        if kind == "lte":
            coef, freq = dec.coef(feat), dec.freq(feat)
            dec = SimpleNamespace(
                coef=lambda _: coef, freq=lambda _: freq, phase=dec.phase, imnet=dec.imnet
            )
        wrapped = SimpleNamespace(encoder=lambda _: feat, decoder=dec)
        coord, cell = query_grid(out_hw, lr.shape[0], cell_scale=cell_scale)
        parts = [
            LITERAL[kind](wrapped, lr, coord[:, i : i + chunk], cell[:, i : i + chunk])
            for i in range(0, coord.shape[1], chunk)
        ]
        rgb = torch.cat(parts, dim=1)
    return rgb.transpose(1, 2).reshape(lr.shape[0], 3, *out_hw)
