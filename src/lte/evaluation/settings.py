"""What an evaluation may vary without changing the protocol, checked once and then passed whole.

``lte.test`` builds one :class:`EvalSettings` from its config (:meth:`EvalSettings.from_config`)
before the checkpoint is loaded, so a bad value costs seconds; library callers build it directly or
hand :func:`lte.evaluation.evaluate_testset` a list of scales. Either way the object travels down to
the loop and the methods as it is, never taken apart into loose parameters.

The command's defaults live in ``conf/test.yaml`` alone: :meth:`~EvalSettings.from_config` passes
every ``eval.*`` key through. The field defaults here are the library's, the papers' protocol as
written (whole image, images prepared in the calling process). A new ``eval.*`` option is one field
with its check in :meth:`~EvalSettings.__post_init__`, its line in ``conf/test.yaml``, and its use.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from lte.errors import UserError
from lte.geometry import ENSEMBLE_SIZES
from lte.inference import DEFAULT_CHUNK, check_backend, check_dtype
from lte.multiscale import CMSRTables


@dataclass(frozen=True)
class EvalSettings:
    """``scales`` and the ``eval.*`` options of an evaluation; the messages name ``lte.test``'s options.

    Args:
        scales: the scales to score, numbers >= 1 (fractional ones too); one number is one scale.
        chunk: queries per decoder call; bounds memory, never changes a result.
        tile: LR tile side for the encoder: ``0`` the whole image (the papers), ``None`` picked
            from free memory; SwinIR is never tiled.
        fast: LTE+'s "fast" evaluation: the whole image encoded at once and the whole HR grid
            queried in one decoder call (``chunk`` unused, ``tile`` forced to 0). Same results,
            memory grows with H·W.
        workers: processes that prepare images (read, make the LR, tensors) while the model runs:
            ``0`` in the main process, ``None`` (or ``"auto"``) automatic
            (:func:`lte.evaluation.images.auto_workers`). Never changes a result.
        backend: ``auto``, ``eager`` or ``compile``, the user's word for the decoder kernel
            (:func:`lte.inference.kernel_for_backend` maps it; ``auto`` is decided per run by
            :func:`lte.inference.pick_backend` from the compile cache and the test sets' size).
        dtype: the decoder MLP's compute type: ``float32`` (the papers'), ``bfloat16``,
            ``float16``, or ``auto`` (:func:`lte.inference.pick_dtype`: bfloat16 only where it is
            native and checked for the family, else float32).
        profile: time every stage of the loop (:class:`lte.evaluation.profile.StageProfile`) and
            log the split.
        ensemble: the self-ensemble, 1 (none, the papers' protocol), 4 (the four rotations) or
            8 (also their mirror images): :func:`lte.inference.predict`'s ``ensemble``. It changes
            the result, so the records name it in their model label (``lte+ens8``).
        cmsr: multi-scale rendering tables for an LMF model (:class:`lte.multiscale.CMSRTables`,
            or the path of a table file, read and validated here): scales beyond the model's
            ``scale_max`` render simple regions at lower scales. ``None``: off.

    Raises:
        UserError: one line naming the first bad option, in the order above.
    """

    scales: tuple[float, ...]
    chunk: int = DEFAULT_CHUNK
    tile: int | None = 0
    fast: bool = False
    workers: int | None = 0
    backend: str = "eager"
    dtype: str = "float32"
    profile: bool = False
    ensemble: int = 1
    cmsr: CMSRTables | str | os.PathLike[str] | None = None

    def __post_init__(self) -> None:
        def put(name: str, value: Any) -> None:  # frozen: set once, here
            object.__setattr__(self, name, value)

        put("scales", _check_scales(self.scales))
        chunk, tile, fast, workers = self.chunk, self.tile, self.fast, self.workers
        if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk <= 0:
            raise UserError(
                f"eval.chunk={chunk} must be a positive whole number of queries per decoder call, "
                "e.g. 30000"
            )
        if tile is not None and (isinstance(tile, bool) or not isinstance(tile, int) or tile < 0):
            raise UserError(
                f"eval.tile={tile} must be 0 (whole image), null (automatic) or a tile side > 0"
            )
        if not isinstance(fast, bool):
            raise UserError(f"eval.fast={fast} must be true or false")
        if fast and tile:
            raise UserError(
                f"eval.fast=true queries the whole image in one call and cannot tile it: drop "
                f"eval.tile={tile} (or set eval.tile=0)"
            )
        if isinstance(workers, str) and workers.lower() in ("auto", "null", "none"):
            workers = None
        if workers is not None and (
            isinstance(workers, bool) or not isinstance(workers, int) or workers < 0
        ):
            raise UserError(
                f"eval.workers={workers} must be a whole number >= 0 of processes preparing "
                "images (0: in the main process) or null (automatic)"
            )
        check_backend(self.backend, "eval.backend=")
        check_dtype(self.dtype, "eval.dtype=")
        if not isinstance(self.profile, bool):
            raise UserError(f"eval.profile={self.profile} must be true or false")
        ensemble = self.ensemble
        if isinstance(ensemble, bool) or ensemble not in ENSEMBLE_SIZES:
            raise UserError(
                f"eval.ensemble={ensemble} must be 1 (no self-ensemble), 4 (the four rotations) "
                "or 8 (rotations and their mirror images)"
            )
        put("tile", 0 if fast else tile)
        put("workers", workers)
        if isinstance(self.cmsr, str | os.PathLike):
            put("cmsr", CMSRTables.load(self.cmsr, "eval.cmsr"))
        elif self.cmsr is not None and not isinstance(self.cmsr, CMSRTables):
            raise UserError(
                f"eval.cmsr={self.cmsr!r} must be the path of a CMSR table file (lte.cmsr) or null"
            )

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> EvalSettings:
        """The settings of an ``lte.test`` config: ``scales`` and every key of ``eval``, as given.

        Raises:
            UserError: a bad value, or an ``eval`` key that is no option (library configs; the
                command line refuses unknown keys before this).
        """
        node = cfg.get("eval") or {}
        options = [f.name for f in fields(cls) if f.name != "scales"]
        for key in node:
            if key not in options:
                raise UserError(
                    f"eval.{key} is not an option: use "
                    + ", ".join(f"eval.{name}" for name in options)
                )
        return cls(cfg.get("scales"), **{key: node[key] for key in node})


def _check_scales(value: Any) -> tuple[float, ...]:
    """``scales`` as floats >= 1; a single number is one scale."""
    if isinstance(value, str | bytes) or not hasattr(value, "__iter__"):
        value = [value]
    out = []
    for item in value:
        if isinstance(item, bool):
            item = str(item)
        try:
            s = float(item)
        except (TypeError, ValueError):
            raise UserError(
                f"scales: '{item}' is not a number; write e.g. scales=[2,3,4]"
            ) from None
        if not math.isfinite(s) or s < 1:
            raise UserError(f"scales: {item} is not a scale >= 1; write e.g. scales=[2,3,4]")
        out.append(s)
    if not out:
        raise UserError("scales is empty: pass e.g. scales=[2,3,4]")
    return tuple(out)
