"""What the loop scores: a network or the bicubic baseline, behind one small contract.

Every table in the field has a bicubic row. It shares the protocol with the networks (same LR,
same crop, same shave, same metric) because the loop (:mod:`lte.evaluation.loop`) scores both the
same way, through :class:`Method`: prepare an input from the 8-bit LR (in DataLoader workers),
move it to the device, predict, turn the prediction into an image in [0, 1]. The loop never asks
which kind it holds; a new reference row (another interpolation, a classical method) is one more
subclass.

A record's labels are the method's ``model_name`` and ``encoder_name``; a network's come from what
it is (:func:`lte.models.identity.labels`), never from config names, and every table, log line and
W&B run spells the pair the same way (:func:`lte.results.method_label`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import Tensor

from lte.data.images import denormalize, to_tensor
from lte.evaluation.images import Prepared
from lte.evaluation.profile import NO_PROFILE, StageProfile
from lte.evaluation.protocol import (
    ImageScore,
    check_border,
    image_psnr,
    image_ssim,
    model_input,
    predict_padded,
)
from lte.evaluation.settings import EvalSettings
from lte.inference import DTYPES, kernel_for_backend, pick_backend, pick_dtype
from lte.models.decoders import Kernel
from lte.models.identity import labels
from lte.models.sr import SRModel
from lte.multiscale import check_model
from lte.results import BICUBIC_MODEL, NO_ENCODER

#: lte.test's log: the ``auto`` choices are said there, once per run.
log = logging.getLogger("lte.test")


class Method:
    """The contract between the loop and what it scores: subclasses write the five steps below,
    :meth:`score` runs them the same way for every method.

    ``preparer`` runs in DataLoader workers, so it must be picklable and light (never the model).
    :meth:`ready` is called once per evaluation, before any image, and gives the method its
    ``device``; :meth:`to_device`, :meth:`predict` and :meth:`to_image` run once per image, each
    charged to its own profile stage (``tensors``, ``model``, ``denorm``).
    """

    #: Labels of the method in results records (``model``, ``encoder``).
    model_name: str
    encoder_name: str
    #: The one scale a fixed-scale model makes (:mod:`lte.fixed_scale`); ``None``: any scale.
    native_scale: int | None
    #: Where it runs (set by :meth:`ready`; ``None`` before).
    device: torch.device | None

    def score(
        self, item: Prepared, scale: float, protocol: str, prof: StageProfile = NO_PROFILE
    ) -> ImageScore:
        """Predict one prepared image with this (ready) method and score it under ``protocol``.

        Raises:
            UserError: the HR is too small to shave the protocol's border.
        """
        assert item.gt is not None
        h, w = item.gt.shape[-2:]
        check_border(item.name, (h, w), scale, protocol)
        gt = item.gt.to(self.device, non_blocking=True)
        inp = self.to_device(item.inp)
        prof.lap("tensors")
        out = self.predict(inp, (h, w), scale)
        prof.lap("model")
        pred = self.to_image(out, (h, w))
        prof.lap("denorm")
        psnr = image_psnr(pred, gt, scale, protocol)
        prof.lap("psnr")
        ssim = image_ssim(pred, gt, scale, protocol)
        prof.lap("ssim")
        return ImageScore(item.name, psnr, ssim)

    @property
    def preparer(self) -> Callable[[np.ndarray], Any]:
        """``(h, w, 3)`` uint8 LR -> this method's input, on the CPU."""
        raise NotImplementedError

    def ready(self, settings: EvalSettings, device: torch.device, work_pixels: int = 0) -> Method:
        """This method set up for ``settings`` on ``device``, for a run of ``work_pixels`` output
        pixels (what ``eval.backend=auto`` weighs against a compile)."""
        raise NotImplementedError

    def to_device(self, inp: Any) -> Any:
        """A prepared input on the method's device."""
        raise NotImplementedError

    def predict(self, inp: Any, out_hw: tuple[int, int], scale: float) -> Tensor:
        """The raw prediction for an ``out_hw`` HR at ``scale``."""
        raise NotImplementedError

    def to_image(self, out: Tensor, out_hw: tuple[int, int]) -> Tensor:
        """The prediction as the scored ``(1, 3, H, W)`` image in [0, 1]."""
        raise NotImplementedError


@dataclass(frozen=True)
class NetworkInput:
    """A network's :attr:`Method.preparer`: :func:`~lte.evaluation.protocol.model_input` of the LR."""

    pad_multiple: int

    def __call__(self, lr: np.ndarray) -> Tensor:
        return model_input(to_tensor(lr).unsqueeze(0), self.pad_multiple)


@dataclass(frozen=True, eq=False)
class Network(Method):
    """An :class:`~lte.models.SRModel` under the test protocol (:mod:`lte.evaluation.protocol`).

    :meth:`ready` moves the model to the device in eval mode, maps ``settings.backend`` to the
    decoder kernel (:func:`lte.inference.kernel_for_backend`; ``auto`` through
    :func:`~lte.inference.pick_backend`) and ``settings.dtype`` to the MLP's type (``auto``:
    :func:`~lte.inference.pick_dtype`), each ``auto`` with one log line saying what and why. A
    network already ready for that device, backend and dtype keeps them, so ``lte.test`` decides
    them once for all its test sets.
    """

    model: SRModel
    settings: EvalSettings | None = None
    kernel: Kernel | None = None
    device: torch.device | None = None
    dtype: torch.dtype | None = None

    @property
    def model_name(self) -> str:  # type: ignore[override]
        """The decoder's label, another method's under a self-ensemble (``lte+ens8``), with
        multi-scale rendering tables (``lm_lte+cmsr``: its scores beyond ``scale_max`` differ) or
        with a low-precision MLP (``lte+bfloat16``, also when ``eval.dtype=auto`` picked it), so a
        results file never passes a bfloat16 score off as the float32 protocol's."""
        name = labels(self.model.describe())[0]
        if self.settings is None:
            return name
        if self.settings.cmsr is not None:
            name += "+cmsr"
        n = self.settings.ensemble
        name = name if n == 1 else f"{name}+ens{n}"
        return name if self.dtype is None else f"{name}+{_dtype_name(self.dtype)}"

    @property
    def encoder_name(self) -> str:  # type: ignore[override]
        return labels(self.model.describe())[1]

    @property
    def native_scale(self) -> int | None:  # type: ignore[override]
        return self.model.native_scale

    @property
    def preparer(self) -> NetworkInput:
        return NetworkInput(self.model.pad_multiple)

    def ready(self, settings: EvalSettings, device: torch.device, work_pixels: int = 0) -> Network:
        if settings.cmsr is not None:
            check_model(self.model, "eval.cmsr")
        ready = (
            self.settings is not None
            and self.settings.backend == settings.backend
            and self.settings.dtype == settings.dtype
        )
        if ready and self.device == device:
            return replace(self, settings=settings)
        model = self.model.to(device).eval()
        dtype = DTYPES.get(settings.dtype)
        if settings.dtype == "auto":
            dtype, why = pick_dtype(model)
            log.info("eval.dtype=auto: %s (%s)", _dtype_name(dtype), why)
        backend = settings.backend
        if backend == "auto":
            backend, why = pick_backend(model, work_pixels=work_pixels, dtype=dtype)
            log.info("eval.backend=auto: %s (%s)", backend, why)
        kernel = kernel_for_backend(model, backend, option="eval.backend=")
        return replace(
            self, model=model, settings=settings, kernel=kernel, device=device, dtype=dtype
        )

    def to_device(self, inp: Tensor) -> Tensor:
        return inp.to(self.device, non_blocking=True)

    def predict(self, inp: Tensor, out_hw: tuple[int, int], scale: float) -> Tensor:
        s = self.settings
        assert s is not None, "Network.predict before Network.ready"
        return predict_padded(
            self.model,
            inp,
            out_hw,
            scale,
            chunk=s.chunk,
            tile=s.tile,
            fast=s.fast,
            kernel=self.kernel,
            ensemble=s.ensemble,
            cmsr=s.cmsr,  # type: ignore[arg-type]  # loaded by EvalSettings
            dtype=self.dtype,
        )

    def to_image(self, out: Tensor, out_hw: tuple[int, int]) -> Tensor:
        return denormalize(out[..., : out_hw[0], : out_hw[1]])


def _dtype_name(dtype: torch.dtype | None) -> str:
    return "float32" if dtype is None else str(dtype).removeprefix("torch.")


def keep_lr(lr: np.ndarray) -> np.ndarray:
    """The bicubic baseline's :attr:`Method.preparer`: the 8-bit LR as it is."""
    return lr


@dataclass(frozen=True)
class BicubicBaseline(Method):
    """The bicubic reference row: the LR upscaled with PIL's bicubic to the HR size, nothing learnt.

    PIL works on the 8-bit LR and returns 8-bit pixels, the usual way the row is made.
    """

    device: torch.device | None = None

    model_name = BICUBIC_MODEL
    encoder_name = NO_ENCODER
    native_scale = None  # any scale, like an arbitrary-scale network

    def __repr__(self) -> str:
        return "BicubicBaseline()"

    @property
    def preparer(self) -> Callable[[np.ndarray], np.ndarray]:
        return keep_lr

    def ready(
        self, settings: EvalSettings, device: torch.device, work_pixels: int = 0
    ) -> BicubicBaseline:
        return replace(self, device=device)

    def to_device(self, inp: np.ndarray) -> np.ndarray:
        return inp  # PIL reads it on the CPU

    def predict(self, inp: np.ndarray, out_hw: tuple[int, int], scale: float) -> Tensor:
        return self.upscale(inp, out_hw).to(self.device)

    def to_image(self, out: Tensor, out_hw: tuple[int, int]) -> Tensor:
        return out  # already the HR size, in [0, 1]

    def upscale(self, lr: np.ndarray, out_hw: tuple[int, int]) -> Tensor:
        """``(h, w, 3)`` uint8 LR -> ``(1, 3, H, W)`` float in [0, 1] by PIL bicubic, on the CPU."""
        from PIL import Image

        up = Image.fromarray(lr).resize((out_hw[1], out_hw[0]), Image.Resampling.BICUBIC)
        return to_tensor(np.asarray(up)).unsqueeze(0)


#: The one bicubic baseline (``lte.test baseline=bicubic``).
BICUBIC = BicubicBaseline()


def as_method(model: SRModel | Method) -> Method:
    """What :func:`~lte.evaluation.evaluate_testset` scores: a network becomes a :class:`Network`."""
    return model if isinstance(model, Method) else Network(model)
