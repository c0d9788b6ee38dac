"""The arbitrary-scale SR network: an encoder on the LR grid plus an implicit decoder queried anywhere."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor, nn

from lte.models.decoders import State


class SRModel(nn.Module):
    """Encoder + implicit decoder, with the stateless ``encode`` / ``query`` split.

    Args:
        encoder: a feature extractor exposing ``out_channels`` (and ``pad_multiple``, 0 when any
            input size works as is).
        decoder: a callable that builds the decoder from the encoder's width, i.e. a Hydra
            ``_partial_`` of :class:`~lte.models.decoders.LTEDecoder` (or LIIF / Meta-SR); an already
            built decoder module is accepted too.
        scale_max: the largest training scale. Inference beyond it enlarges the cell by
            ``max(s / scale_max, 1)`` (SPEC), so the value belongs to the model and is saved with it.

    ``encode(lr)`` returns everything a query needs as a dict of tensors, so callers can chunk or tile
    queries freely; nothing is stored on the module between calls.
    """

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module | Callable[..., nn.Module],
        scale_max: float = 4.0,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = (
            decoder if isinstance(decoder, nn.Module) else decoder(in_channels=encoder.out_channels)
        )
        self.scale_max = float(scale_max)

    def describe(self) -> dict[str, Any]:
        """The model as plain data: decoder and encoder kind with their constructor arguments, and
        ``scale_max``. This, not a config file's name, is the model's identity in checkpoints,
        results and W&B, and what :mod:`lte.models.spec` validates and builds from.
        """
        return {
            "decoder": {"kind": self.decoder.kind, **self.decoder.config},
            "encoder": {"kind": self.encoder.kind, **self.encoder.config},
            "scale_max": self.scale_max,
        }

    @property
    def pad_multiple(self) -> int:
        """Input sides must be a multiple of this for the test protocol's padding (SwinIR: 8), else 0."""
        return int(getattr(self.encoder, "pad_multiple", 0))

    def encode(self, lr: Tensor) -> State:
        """Features of a normalised ``(B, 3, h, w)`` LR batch, prepared for :meth:`query`."""
        return self.decoder.prepare(self.encoder(lr), lr)

    def query(self, state: State, coord: Tensor, cell: Tensor) -> Tensor:
        """RGB (normalised) at ``(B, Q, 2)`` coordinates with ``(B, Q, 2)`` cells: ``(B, Q, 3)``."""
        return self.decoder.query(state, coord, cell)

    def forward(self, lr: Tensor, coord: Tensor, cell: Tensor) -> Tensor:
        return self.query(self.encode(lr), coord, cell)
