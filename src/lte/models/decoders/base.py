"""The decoder contract: a typed per-image state, one differentiable definition, an optional fast kernel.

A decoder turns encoder features into a *code table* once per image (:meth:`Decoder.prepare`) and
then answers queries from a :class:`DecoderState` (:meth:`Decoder.query`). Its math is written once,
in :meth:`Decoder.exact`, with plain differentiable tensor operations: that is what training
differentiates and what every test compares against. A family may add :meth:`Decoder.fast`, an
inference kernel that must compute the same function (tests hold it to the literal reading of SPEC);
the caller picks it explicitly with ``kernel="fast"``, never global state such as grad mode. A
decoder with no fast kernel works everywhere (training, tiled ``predict``, evaluation) through
``exact``. LTE and LIIF also have :meth:`Decoder.compiled` (``kernel="compiled"``): the same blocks
as ``fast``, each one ``torch.compile``d once (:mod:`lte.models.decoders.compiled`). A family that
estimates Fourier features (LTE) also writes :meth:`Decoder.fourier` (:class:`FourierMaps`).

A table may depend on the output cell as well as on the image: LMF's hypernetwork runs once per code
for the image's one cell (SPEC.md "LMF"). Such a family sets :attr:`Decoder.cell_dependent`; its
:meth:`prepare` then takes ``rel_cell`` and ``SRModel.encode`` needs the cell the queries will use.
Queries still carry their own cells (the render step reads them), so one state answers queries at
another scale with the modulations of the first, which is what multi-scale rendering (CMSR) does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn

#: Which implementation answers a query: the differentiable definition, a decoder's fast (eager)
#: kernel, or its ``torch.compile``d block kernel.
Kernel = Literal["exact", "fast", "compiled"]
KERNELS: tuple[str, ...] = ("exact", "fast", "compiled")

#: Types the decoder MLP may compute in (``dtype=``); geometry and outputs stay float32.
MLP_DTYPES: tuple[torch.dtype, ...] = (torch.float32, torch.bfloat16, torch.float16)

#: Instance attribute holding a decoder's compiled block functions: a plain dict, so it is in no
#: ``state_dict``, checkpoint or description, and :meth:`Decoder.__getstate__` drops it.
COMPILED_CACHE_ATTR = "_compiled_blocks"


@dataclass(frozen=True, eq=False)
class DecoderState:
    """What a query needs of one encoded image (or one tile of it).

    Attributes:
        table: ``(B, h_t, w_t, D)`` channel-last code table from :meth:`Decoder.prepare`.
        lr: ``(B, 3, h, w)`` the *whole* normalised LR image: it fixes the global code grid (and LTE's
            bilinear residual), also when ``table`` was built from a tile.
        origin: ``(row, col)`` of the tile's top-left LR pixel in ``lr``; ``(0, 0)`` untiled. Lookups
            use the whole image's geometry and subtract it, so a tile answers exactly as the whole
            image would. Ints; an exported query graph (:mod:`lte.onnx_export`) passes two 0-d
            integer tensors instead, so that the origin is an input of the graph, not a constant.
    """

    table: Tensor
    lr: Tensor
    origin: tuple[int, int] = (0, 0)

    def __post_init__(self) -> None:
        if self.table.dim() != 4 or self.lr.dim() != 4:
            raise ValueError(
                f"DecoderState wants a (B, h, w, D) table and a (B, 3, h, w) image, got "
                f"{tuple(self.table.shape)} and {tuple(self.lr.shape)}"
            )
        if self.table.shape[0] != self.lr.shape[0]:
            raise ValueError(
                f"DecoderState: table batch {self.table.shape[0]} != image batch {self.lr.shape[0]}"
            )
        oy, ox = self.origin
        if not (isinstance(oy, Tensor) and isinstance(ox, Tensor)):
            object.__setattr__(self, "origin", (int(oy), int(ox)))

    @property
    def lr_hw(self) -> tuple[int, int]:
        """``(h, w)`` of the whole LR grid.

        The shape's own entries, not ``int()`` of them: while ``torch.export`` traces a query
        (:mod:`lte.onnx_export`) they are symbolic sizes, and ``int()`` would freeze the graph to
        the example image's size.
        """
        return self.lr.shape[-2], self.lr.shape[-1]


@dataclass(frozen=True, eq=False)
class FourierMaps:
    """The texture estimator's output on the LR grid, as SPEC.md "Fourier feature space" reads it.

    Attributes:
        freq: ``(B, K, 2, h, w)``: frequency k's (y, x) components, i.e. channels ``2k`` and ``2k+1``
            of the frequency convolution, in the decoder's units (``θ = f·rel`` with ``rel`` in half
            codes, and the basis is ``cos(πθ)``, ``sin(πθ)``).
        amplitude: ``(B, 2K, h, w)``: the amplitude convolution; channel ``k`` scales frequency k's
            cosine, channel ``K + k`` its sine.
        phase: ``(B, K)``: the phase term ``P(rel_cell)`` for one output scale, or ``None``. It is the
            only part that depends on the scale; frequencies and amplitudes do not.
    """

    freq: Tensor
    amplitude: Tensor
    phase: Tensor | None = None

    @property
    def magnitude(self) -> Tensor:
        """``(B, K, h, w)``: ``A[k]² + A[K+k]²``, the energy of frequency k at each code."""
        k = self.freq.shape[1]
        return self.amplitude[:, :k].square() + self.amplitude[:, k:].square()


def mlp_dtype_of(dtype: torch.dtype | None) -> torch.dtype:
    """The MLP's compute type for a ``dtype=`` argument (``None``: float32); others are refused."""
    if dtype is None:
        return torch.float32
    if dtype not in MLP_DTYPES:
        raise ValueError(
            f"dtype={dtype} is not supported: the decoder MLP runs in torch.float32 (None), "
            "torch.bfloat16 or torch.float16"
        )
    return dtype


def check_query(state: DecoderState, coord: Tensor, cell: Tensor) -> None:
    """Shapes and dtypes of a query: ``coord`` ``(B, Q, 2)``, ``cell`` ``(B, Q or 1, 2)``, float32."""
    if coord.dim() != 3 or coord.shape[-1] != 2:
        raise ValueError(f"coord must be (B, Q, 2), got {tuple(coord.shape)}")
    if cell.dim() != 3 or cell.shape[-1] != 2 or cell.shape[1] not in (1, coord.shape[1]):
        raise ValueError(
            f"cell must be (B, Q, 2) or (B, 1, 2) for coord {tuple(coord.shape)}, got {tuple(cell.shape)}"
        )
    if not coord.shape[0] == cell.shape[0] == state.table.shape[0]:
        raise ValueError(
            f"batch sizes differ: coord {coord.shape[0]}, cell {cell.shape[0]}, "
            f"state {state.table.shape[0]}"
        )
    for name, t in (("coord", coord), ("cell", cell), ("state.table", state.table)):
        if t.dtype != torch.float32:
            raise ValueError(
                f"{name} is {t.dtype}: lte decoders compute in float32 (float64 is not supported); "
                "convert with .float(), and use dtype= for a bfloat16/float16 MLP"
            )


class Decoder(nn.Module):
    """Base of every implicit decoder: subclasses write :meth:`prepare` and :meth:`exact`.

    Class attributes a family declares:
        kind: its allow-listed name in model descriptions (``SRModel.describe``).
        reach: codes it reads beyond a query's own code, for tile margins (a 3×3 conv or unfold: 1;
            the local ensemble's neighbour: 1; Meta-SR's corner shift: 1). 3 covers all of these;
            a decoder reading further must raise it.

    Instances keep ``config``: their constructor arguments but ``in_channels``.
    """

    kind: ClassVar[str]
    reach: ClassVar[int] = 3
    #: Whether the table depends on the output cell (LMF): :meth:`prepare` then takes ``rel_cell``.
    cell_dependent: ClassVar[bool] = False
    #: Multi-scale rendering (CMSR): the largest code complexity its threshold tables consider
    #: (:meth:`complexity`); ``None`` for a family without modulations.
    complexity_max: ClassVar[float | None] = None
    config: dict[str, Any]

    def prepare(self, feat: Tensor) -> Tensor:
        """The ``(B, h_t, w_t, D)`` code table of encoder features ``(B, C, h_t, w_t)``.

        A family with :attr:`cell_dependent` writes ``prepare(feat, rel_cell)`` instead: ``rel_cell``
        ``(B, 2)`` is the image's output cell in half codes of the whole image, ``cell ⊙ (h, w)``.
        """
        raise NotImplementedError

    def exact(
        self, state: DecoderState, coord: Tensor, cell: Tensor, mlp_dtype: torch.dtype
    ) -> Tensor:
        """The decoder's definition: ``(B, Q, 3)`` RGB, differentiable, the MLP in ``mlp_dtype``."""
        raise NotImplementedError

    def fast(
        self, state: DecoderState, coord: Tensor, cell: Tensor, mlp_dtype: torch.dtype
    ) -> Tensor:
        """Optional inference kernel computing :meth:`exact`'s function (run under ``no_grad``)."""
        raise NotImplementedError

    def compiled(
        self, state: DecoderState, coord: Tensor, cell: Tensor, mlp_dtype: torch.dtype
    ) -> Tensor:
        """Optional inference kernel: :meth:`fast`'s blocks through one ``torch.compile``d function."""
        raise NotImplementedError

    def fourier(self, feat: Tensor, rel_cell: Tensor | None = None) -> FourierMaps:
        """Optional: the estimated frequencies and amplitudes of encoder features ``(B, C, h, w)``,
        with the phase term of ``rel_cell`` ``(B, 2)`` when given (LTE's texture estimator)."""
        raise NotImplementedError

    def complexity(self, table: Tensor) -> Tensor:
        """Optional (CMSR): each code's modulation strength, ``(B, h_t, w_t)`` from a table
        ``(B, h_t, w_t, D)``; multi-scale rendering decodes simple codes at lower scales."""
        raise NotImplementedError

    @property
    def has_complexity(self) -> bool:
        """Whether the family overrides :meth:`complexity` (LMF: multi-scale rendering works)."""
        return type(self).complexity is not Decoder.complexity

    @property
    def has_fourier(self) -> bool:
        """Whether the family overrides :meth:`fourier` (estimates Fourier features)."""
        return type(self).fourier is not Decoder.fourier

    @property
    def has_fast_kernel(self) -> bool:
        """Whether the family overrides :meth:`fast`."""
        return type(self).fast is not Decoder.fast

    @property
    def has_compiled_kernel(self) -> bool:
        """Whether the family overrides :meth:`compiled` (whether compiling works here is
        :func:`lte.devices.compile_unavailable`'s question)."""
        return type(self).compiled is not Decoder.compiled

    def __getstate__(self) -> dict[str, Any]:
        """Pickled/deep-copied state without the compiled-kernel cache (code, not data)."""
        state = super().__getstate__()
        state = dict(state) if isinstance(state, dict) else dict(self.__dict__)
        state.pop(COMPILED_CACHE_ATTR, None)
        return state

    @property
    def inference_kernel(self) -> Kernel:
        """The kernel inference uses by default: ``"fast"`` when the family has one, else ``"exact"``."""
        return "fast" if self.has_fast_kernel else "exact"

    def query(
        self,
        state: DecoderState,
        coord: Tensor,
        cell: Tensor,
        *,
        dtype: torch.dtype | None = None,
        kernel: Kernel = "exact",
    ) -> Tensor:
        """RGB (normalised) at ``(B, Q, 2)`` coordinates: ``(B, Q, 3)`` float32.

        Args:
            state: from ``SRModel.encode``.
            coord: ``(B, Q, 2)`` (y, x) in [-1, 1] on the whole LR image's grid.
            cell: ``(B, Q, 2)``, or ``(B, 1, 2)`` when every query shares it (cell-only terms are
                then computed once).
            dtype: the MLP's compute type (``None`` = float32, ``torch.bfloat16``, ``torch.float16``).
            kernel: ``"exact"`` (the differentiable definition), ``"fast"`` or ``"compiled"``
                (inference only; a ``ValueError`` if the family has none or the state carries
                gradients). Whether ``torch.compile`` works on this machine is decided once, by
                :func:`lte.inference.kernel_for_backend`, which falls back to the eager kernel.
        """
        check_query(state, coord, cell)
        mlp_dtype = mlp_dtype_of(dtype)
        if kernel == "exact":
            return self.exact(state, coord, cell, mlp_dtype)
        if kernel not in ("fast", "compiled"):
            raise ValueError(f"kernel must be one of {', '.join(KERNELS)}, got {kernel!r}")
        has = self.has_fast_kernel if kernel == "fast" else self.has_compiled_kernel
        if not has:
            raise ValueError(f"{type(self).__name__} has no {kernel} kernel: use kernel='exact'")
        if state.table.requires_grad:
            raise ValueError(
                f"kernel='{kernel}' gives no gradients: encode under torch.no_grad()/inference_mode, "
                "or train with kernel='exact'"
            )
        with torch.no_grad():
            if kernel == "compiled":
                return self.compiled(state, coord, cell, mlp_dtype)
            return self.fast(state, coord, cell, mlp_dtype)
