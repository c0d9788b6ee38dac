"""The arbitrary-scale SR network: an encoder on the LR grid plus an implicit decoder queried anywhere.

``SRModel`` is the only way into a network: inference, evaluation and training call ``encode``,
``query`` and the properties below, never ``.encoder`` / ``.decoder`` directly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lte import geometry
from lte.models.decoders import Decoder, DecoderState, Kernel
from lte.models.decoders.base import FourierMaps
from lte.models.encoder import check_encoder

#: The decoder kind that reads a fixed-scale encoder's output (and nothing else does).
FIXED_SCALE_DECODER = "nearest"


class SRModel(nn.Module):
    """Encoder + implicit decoder, with the stateless ``encode`` / ``query`` split.

    Args:
        encoder: a feature extractor following :class:`lte.models.encoder.Encoder` (declares
            ``out_channels``, ``pad_multiple``, ``receptive_radius``); checked here.
        decoder: a :class:`~lte.models.decoders.Decoder`, or a callable that builds one from the
            encoder's width (a Hydra ``_partial_`` of ``LTEDecoder`` / ``LIIFDecoder`` / ...).
        scale_max: the largest training scale. Inference beyond it enlarges the cell by
            ``max(s / scale_max, 1)`` (SPEC), so the value belongs to the model and is saved with it.

    ``encode`` returns everything a query needs as a :class:`DecoderState`, so callers can chunk or
    tile queries freely; nothing is stored on the module between calls.
    """

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module | Callable[..., nn.Module],
        scale_max: float = 4.0,
    ) -> None:
        super().__init__()
        upscale = check_encoder(encoder)
        self.encoder = encoder
        self.decoder = (
            decoder if isinstance(decoder, nn.Module) else decoder(in_channels=encoder.out_channels)
        )
        if not isinstance(self.decoder, Decoder):
            raise TypeError(
                f"decoder {type(self.decoder).__name__} is not an lte.models.decoders.Decoder: "
                "subclass it and write prepare() and exact()"
            )
        #: The encoder's fixed output scale (its declared ``upscale``), or ``None``.
        self._upscale = upscale
        if (upscale is not None) != (self.decoder.kind == FIXED_SCALE_DECODER):
            raise TypeError(
                f"a fixed-scale encoder (upscale=s) goes with the {FIXED_SCALE_DECODER} decoder and "
                f"only with it: got {type(encoder).__name__}(upscale={upscale}) with decoder "
                f"{self.decoder.kind!r}"
            )
        if not float(scale_max) > 0:
            raise ValueError(f"scale_max must be positive, got {scale_max}")
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

    # --- what inference needs to know --------------------------------------------------------

    @property
    def pad_multiple(self) -> int:
        """Input sides must be a multiple of this for the test protocol's padding (SwinIR: 8), else 0."""
        return self.encoder.pad_multiple

    @property
    def native_scale(self) -> int | None:
        """The one integer scale a fixed-scale model makes (its encoder's ``upscale``), or ``None``
        for an arbitrary-scale model. Evaluation scores a fixed-scale model only at this scale."""
        return self._upscale

    @property
    def receptive_radius(self) -> int | None:
        """LR pixels of context one output pixel depends on: the encoder's radius plus the decoder's
        reach; ``None`` when the encoder is global (SwinIR), so no finite tile margin is exact."""
        radius = self.encoder.receptive_radius
        return None if radius is None else radius + self.decoder.reach

    @property
    def inference_kernel(self) -> Kernel:
        """The kernel inference uses by default: the decoder's fast kernel when it has one."""
        return self.decoder.inference_kernel

    @property
    def has_compiled_kernel(self) -> bool:
        """Whether the decoder has a ``kernel="compiled"`` (LTE, LIIF); see
        :func:`lte.inference.kernel_for_backend`."""
        return self.decoder.has_compiled_kernel

    def bytes_per_code(self) -> int:
        """Rough peak bytes per LR pixel of encoding one tile and building its code table.

        Encoder: a few live maps of its widest layer (RDN's fusion input is 1024 wide). Decoder: its
        prepared table counted twice, at least ``9 × out_channels`` (the table is the convolution's
        own channels-last output since :meth:`features`, so the second copy is now a margin for the
        query chunks and the allocator). An estimate, used only to size tiles; it errs on the large
        side, which is what keeps a 1024² -> 2048² upscale under 1 GB.
        """
        widths = [
            max(m.in_channels, m.out_channels)
            for m in self.encoder.modules()
            if isinstance(m, nn.Conv2d)
        ]
        widths += [m.out_features for m in self.encoder.modules() if isinstance(m, nn.Linear)]
        encoder = 4 * max(widths, default=64)
        if self.native_scale is not None:  # the tail's maps are s² times larger than the LR grid
            encoder *= self.native_scale**2
        table = 2 * sum(m.out_channels for m in self.decoder.modules() if isinstance(m, nn.Conv2d))
        table = max(table, 9 * self.encoder.out_channels)
        return 4 * (encoder + table)

    def enlarge_cell(self, cell: Tensor, scale: float | tuple[float, float]) -> Tensor:
        """``cell`` enlarged per axis by ``max(s / scale_max, 1)`` for a resize by ``scale`` (y, x)."""
        sy, sx = (scale, scale) if isinstance(scale, int | float) else scale
        return geometry.enlarge_cell(cell, (float(sy), float(sx)), self.scale_max)

    # --- encode / query ------------------------------------------------------------------------

    @property
    def cell_dependent(self) -> bool:
        """Whether :meth:`encode` needs the output cell (LMF: the table holds modulations computed
        for the image's one cell)."""
        return self.decoder.cell_dependent

    def encode(
        self,
        lr: Tensor,
        *,
        full_lr: Tensor | None = None,
        origin: tuple[int, int] = (0, 0),
        cell: Tensor | None = None,
    ) -> DecoderState:
        """Encode a normalised ``(B, 3, h, w)`` float32 image, or one tile of a larger image.

        For a tile, ``lr`` is the crop, ``full_lr`` the whole image and ``origin`` the crop's
        top-left (row, col) in it: queries then use the whole image's geometry.

        ``cell`` is the output cell the queries will use, ``(B, 2)`` or ``(B, Q or 1, 2)`` (enlarged
        beyond ``scale_max`` as for the queries). A :attr:`cell_dependent` decoder (LMF) needs it and
        reads one cell per image, the first query's (the official code reads the first ``h·w``
        queries' cells, all equal); other decoders ignore it.

        A fixed-scale encoder's ``(B, 3, s·h, s·w)`` output is packed onto the LR grid first
        (``pixel_unshuffle(s)``: ``(B, 3·s², h, w)``), so every table lives on the LR grid and tiles,
        origins and margins mean the same for every decoder.
        """
        if lr.dtype != torch.float32:
            raise ValueError(
                f"SRModel computes in float32, the image is {lr.dtype} (float64 is not supported): "
                "convert it with .float(); use dtype= for a bfloat16/float16 decoder MLP"
            )
        oy, ox = int(origin[0]), int(origin[1])
        if full_lr is None:
            if (oy, ox) != (0, 0):
                raise ValueError(
                    f"encode: origin {origin} needs full_lr, the image the tile is from"
                )
            full_lr = lr
        elif (
            full_lr.shape[:2] != lr.shape[:2]
            or full_lr.dtype != lr.dtype
            or oy < 0
            or ox < 0
            or oy + lr.shape[-2] > full_lr.shape[-2]
            or ox + lr.shape[-1] > full_lr.shape[-1]
        ):
            raise ValueError(
                f"encode: a {tuple(lr.shape)} {lr.dtype} tile at {origin} does not lie in the "
                f"{tuple(full_lr.shape)} {full_lr.dtype} full_lr"
            )
        rel = None if not self.cell_dependent else self._image_rel_cell(cell, full_lr)
        feat = self.features(lr)
        if self.native_scale is not None:
            feat = F.pixel_unshuffle(feat, self.native_scale)
        table = self.decoder.prepare(feat) if rel is None else self.decoder.prepare(feat, rel)
        # Under autocast (trainer.precision=bf16-mixed) the convolutions return bf16: the table is
        # upcast (a no-op in float32) so the decoders' geometry (θ, offsets) stays float32.
        return DecoderState(table.float(), full_lr, (oy, ox))

    def features(self, lr: Tensor) -> Tensor:
        """The encoder's output for a normalised ``(B, 3, h, w)`` image, channels-last in memory.

        Same shapes and math as ``self.encoder(lr)``; only the memory layout of the activations
        differs (NHWC), and with it the convolutions' float32 summation order. Why: oneDNN and
        cuDNN convolve channels-last maps without reordering every layer's input and output
        (EDSR-baseline's encoder ran 1.4x faster on a 2-core AVX2 EPYC, docs/benchmarks.md), and
        the decoders' table convolution then writes the ``(B, h, w, D)`` channel-last table
        directly, with no copy (0.2-0.3 GB less at the peak of a 1024² -> 2048² upscale).
        """
        feat = self.encoder(lr.contiguous(memory_format=torch.channels_last))
        # A no-op for the convolutional encoders; SwinIR's tokens come back NCHW, and copying its
        # C channels here is cheaper than the table convolution's output copied later.
        return feat.contiguous(memory_format=torch.channels_last)

    def _image_rel_cell(self, cell: Tensor | None, full_lr: Tensor) -> Tensor:
        """The image's one cell in half codes of the whole LR grid, ``(B, 2)``, from ``cell``."""
        if cell is None:
            raise ValueError(
                f"the {self.decoder.kind} decoder's code table depends on the output cell: "
                "encode(lr, cell=...) with the cell the queries use (lte.inference.predict does it)"
            )
        if cell.dim() == 3:
            cell = cell[:, 0]  # one cell per image: the first query's
        b = full_lr.shape[0]
        if cell.shape not in ((b, 2), (1, 2)) or cell.dtype != torch.float32:
            raise ValueError(
                f"encode: cell must be float32 (B, 2) or (B, Q, 2) for a batch of {b}, got "
                f"{cell.dtype} {tuple(cell.shape)}"
            )
        h, w = full_lr.shape[-2:]
        return (cell * cell.new_tensor([h, w])).expand(b, 2)

    def query(
        self,
        state: DecoderState,
        coord: Tensor,
        cell: Tensor,
        *,
        dtype: torch.dtype | None = None,
        kernel: Kernel = "exact",
    ) -> Tensor:
        """RGB (normalised) at ``(B, Q, 2)`` coordinates with ``(B, Q or 1, 2)`` cells: ``(B, Q, 3)``.

        ``kernel="exact"`` is the differentiable definition (training); ``"fast"`` the decoder's
        inference kernel, if it has one (:attr:`inference_kernel`); ``"compiled"`` its
        ``torch.compile``d kernel (:attr:`has_compiled_kernel`). ``dtype`` is the decoder MLP's
        compute type (``torch.bfloat16`` / ``torch.float16``); every kernel honours it.
        """
        return self.decoder.query(state, coord, cell, dtype=dtype, kernel=kernel)

    # --- what the texture estimator sees (docs/fourier.md) -----------------------------------------

    @property
    def has_fourier(self) -> bool:
        """Whether the decoder estimates Fourier features (LTE), i.e. whether :meth:`fourier` works."""
        return self.decoder.has_fourier

    def fourier(self, lr: Tensor, scale: float | None = None) -> FourierMaps:
        """The decoder's estimated frequencies and amplitudes on the LR grid of ``lr`` ``(B, 3, h, w)``.

        Frequencies and amplitudes depend on the image only. With ``scale``, the phase term
        ``P(rel_cell)`` of an output ``scale`` times larger is added, with the cell enlarged beyond
        ``scale_max`` exactly as inference does.

        Raises:
            ValueError: the decoder has no texture estimator (LIIF, Meta-SR, fixed-scale models).
        """
        if not self.has_fourier:
            raise ValueError(
                f"the {self.decoder.kind} decoder estimates no Fourier features: only LTE has them"
            )
        if lr.dtype != torch.float32:
            raise ValueError(f"SRModel computes in float32, the image is {lr.dtype}")
        rel = None
        if scale is not None:
            if not (float(scale) > 0 and float(scale) < float("inf")):
                raise ValueError(f"scale must be a positive number, got {scale}")
            h, w = lr.shape[-2:]
            cell = lr.new_tensor([[2.0 / (scale * h), 2.0 / (scale * w)]]).expand(lr.shape[0], 2)
            rel = self.enlarge_cell(cell, scale) * lr.new_tensor([h, w])
        return self.decoder.fourier(self.features(lr), rel)

    # --- multi-scale rendering (CMSR, lte.multiscale) -------------------------------------------

    @property
    def has_complexity(self) -> bool:
        """Whether the decoder has modulations whose strength CMSR reads (LM-LTE, LM-LIIF)."""
        return self.decoder.has_complexity

    @property
    def complexity_max(self) -> float | None:
        """The largest code complexity CMSR's threshold search considers (``None``: no CMSR)."""
        return self.decoder.complexity_max

    def complexity(self, state: DecoderState) -> Tensor:
        """Each code's modulation strength, ``(B, h_t, w_t)`` over the state's table (CMSR).

        Raises:
            ValueError: the decoder has no modulations (only the LMF families have them).
        """
        if not self.has_complexity:
            raise ValueError(
                f"the {self.decoder.kind} decoder has no latent modulations: multi-scale rendering "
                "(CMSR) needs an LMF model (lm_lte, lm_liif)"
            )
        return self.decoder.complexity(state.table)

    def forward(self, lr: Tensor, coord: Tensor, cell: Tensor) -> Tensor:
        """The differentiable definition end to end (training): ``query(encode(lr), coord, cell)``;
        a cell-dependent decoder's table is built for the first query's cell."""
        return self.query(self.encode(lr, cell=cell), coord, cell)
