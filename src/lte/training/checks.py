"""Config values training owns, checked once before anything is built: one line naming the option.

Data options (folders, patch sizes, workers, caching) are the data module's to check; the training
side owns how the global batch splits over the devices, the optimizer's learning rate and the few
top-level keys of ``train.yaml``. Errors raised while building the trainer, optimizer or callbacks
from their configs are turned into the same kind of line by :func:`build`.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from typing import Any, TypeVar

from omegaconf import DictConfig, ListConfig, OmegaConf

from lte.errors import UserError, as_user_error

T = TypeVar("T")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def device_count(trainer_cfg: DictConfig) -> int | None:
    """Processes a trainer config asks for (devices x nodes), or None when Lightning decides (``auto``)."""
    devices = trainer_cfg.get("devices", 1)
    nodes = trainer_cfg.get("num_nodes", 1)
    if nodes is None:
        nodes = 1
    if not _is_int(nodes) or nodes < 1:
        raise UserError(f"trainer.num_nodes={nodes} must be a positive whole number")
    if isinstance(devices, ListConfig | list | tuple):
        return len(devices) * nodes
    if _is_int(devices) and devices > 0:
        return devices * nodes
    if isinstance(devices, str) and devices.isdigit() and int(devices) > 0:
        return int(devices) * nodes
    if isinstance(devices, str) and "," in devices:  # Lightning's "0,1": device indices
        return len([d for d in devices.split(",") if d.strip()]) * nodes
    if devices == "auto":
        return None
    accelerator = str(trainer_cfg.get("accelerator", "auto"))
    if devices in (-1, "-1") and _gpu_count(accelerator):
        return None
    what = "is not a device count" if devices not in (-1, "-1") else "asks for every GPU"
    raise UserError(f"trainer.devices={devices} {what}: {device_choices(accelerator)}")


def _gpu_count(accelerator: str) -> int:
    """GPUs the accelerator would use here (CUDA; Apple's MPS counts as one)."""
    import torch

    if accelerator not in ("auto", "gpu", "cuda", "mps"):
        return 0
    if accelerator != "mps" and torch.cuda.is_available():
        return torch.cuda.device_count()
    return 1 if accelerator != "cuda" and torch.backends.mps.is_available() else 0


def device_choices(accelerator: str) -> str:
    """What ``trainer.devices`` may be on this machine, as advice: only values that work here."""
    gpus = _gpu_count(accelerator)
    if gpus:
        indices = ",".join(str(i) for i in range(gpus))
        return (
            f"use a number of GPUs from 1 to {gpus}, a list of their indices (this machine has "
            f"[{indices}]), -1 for all, or auto"
        )
    return (
        f"trainer.accelerator={accelerator} runs on the CPU here: use a positive number of "
        "processes (e.g. trainer.devices=1; more than 1 runs DDP over CPU processes), or auto"
    )


def check_batch(cfg: DictConfig) -> None:
    """``data.batch_size`` is the global batch: a whole number >= 1 that splits over the processes."""
    batch = cfg.data.get("batch_size")
    if not _is_int(batch) or batch < 1:
        raise UserError(
            f"data.batch_size={batch} must be a whole number of samples >= 1 (the global batch)"
        )
    world = device_count(cfg.trainer)
    if world is not None and batch % world:
        raise UserError(
            f"data.batch_size={batch} is the global batch and must divide by the {world} devices "
            f"(trainer.devices x trainer.num_nodes): use a multiple of {world}"
        )


def _as_override(value: Any) -> str:
    """A value as written on the command line: ``[400,200]`` for a list."""
    if isinstance(value, ListConfig | list | tuple):
        return "[" + ",".join(_as_override(v) for v in value) + "]"
    return str(value)


def check_scheduler(node: Any) -> None:
    """``scheduler.gamma`` in (0, 1] and ``scheduler.milestones`` strictly increasing epochs >= 1.

    torch accepts a negative or zero factor (a negative learning rate, i.e. gradient ascent, or a
    frozen model) and unsorted or repeated milestones (the factor applied twice at one epoch).
    """
    if not node:
        return
    gamma = node.get("gamma")
    if gamma is not None and (not _is_number(gamma) or not 0 < gamma <= 1):
        raise UserError(
            f"scheduler.gamma={_as_override(gamma)} must be a number in (0, 1]: the factor the "
            "learning rate is multiplied by at each milestone, e.g. scheduler.gamma=0.5"
        )
    milestones = node.get("milestones")
    if milestones is None:
        return
    values = list(milestones) if isinstance(milestones, ListConfig | list | tuple) else None
    if (
        values is None
        or not all(_is_int(v) and v >= 1 for v in values)
        or any(a >= b for a, b in itertools.pairwise(values))
    ):
        raise UserError(
            f"scheduler.milestones={_as_override(milestones)} must be strictly increasing whole "
            "numbers of epochs >= 1, e.g. scheduler.milestones=[200,400,600,800]"
        )


def check_training_samples(samples: int, repeat: int, batch: int) -> None:
    """At least one global batch of samples: fewer trains zero steps (the last partial batch is
    dropped, see :class:`lte.training.data.EpochBatches`), and the run would end "done" untrained.
    """
    if samples >= batch:
        return
    images = f"{samples // repeat} images x repeat {repeat}" if repeat >= 1 else "samples"
    raise UserError(
        f"data: {samples} training samples ({images}) are fewer than one global batch of {batch} "
        "(data.batch_size): lower data.batch_size or raise data.repeat"
    )


#: Keys of a Hydra node that are instructions to Hydra, not constructor arguments.
_HYDRA_KEYS = ("_target_", "_partial_", "_recursive_", "_convert_", "_args_")


def _description(node: Any, classes: dict[str, type]) -> dict[str, Any] | None:
    """``{"kind": ..., **arguments}`` of an encoder or decoder config node, as ``describe()`` has
    it (arguments the node leaves out take the class's defaults); None for a class lte does not
    know (a user's own ``_target_``: its own checks apply)."""
    import inspect

    from hydra.utils import get_class

    if not isinstance(node, DictConfig) or "_target_" not in node:
        return None
    try:
        cls = get_class(str(node._target_))
    except Exception:  # a bad _target_ is reported when the model is built
        return None
    kind = getattr(cls, "kind", None)
    if not isinstance(kind, str) or classes.get(kind) is not cls:
        return None
    args = {k: v for k, v in OmegaConf.to_container(node, resolve=True).items()}
    for key in _HYDRA_KEYS:
        args.pop(key, None)
    for name, param in inspect.signature(cls).parameters.items():
        # An absent optional field (default None, e.g. upscale) stays absent, as describe() has it.
        if name not in args and name != "in_channels" and param.default not in (param.empty, None):
            args[name] = param.default
    return {"kind": kind, **args}


def check_model_sizes(cfg: DictConfig) -> None:
    """The encoder's and decoder's sizes within the bounds a checkpoint is read with
    (:mod:`lte.models.spec`), before anything is built: ``model.decoder.hidden_dim=0`` would
    otherwise build and fail inside the first step with a long traceback.

    Raises:
        UserError: ``encoder.n_resblocks=-1 must be a positive int <= 256`` and the like.
    """
    from lte.models.spec import DECODERS, ENCODERS, DecoderSpec, EncoderSpec

    model = cfg.get("model")
    parts = (
        ("encoder", cfg.get("encoder"), EncoderSpec, ENCODERS),
        ("model.decoder", model.get("decoder") if model else None, DecoderSpec, DECODERS),
    )
    where = "training options"
    for option, node, spec, classes in parts:
        description = _description(node, classes)
        if description is None:
            continue
        try:
            spec.from_dict(description, where, option)
        except UserError as err:
            text = str(err).removeprefix(f"{where}: ")
            # "encoder.n_feats must be a positive int <= 4096, got 0" -> "encoder.n_feats=0 must ..."
            found = re.fullmatch(r"(\S+) (must be .*), got (.*)", text)
            if found:
                text = f"{found[1]}={found[3]} {found[2]}"
            raise UserError(text) from None


def check_config(cfg: DictConfig) -> None:
    """Every training-owned value, before any folder is read or model built.

    Raises:
        UserError: the first bad value, naming its option and what it must be.
    """
    seed = cfg.get("seed")
    if not _is_int(seed) or seed < 0:
        raise UserError(f"seed={seed} must be a whole number >= 0")
    check_batch(cfg)
    optimizer = cfg.get("optimizer")
    if optimizer is None:
        raise UserError("optimizer is not set: e.g. optimizer._target_=torch.optim.Adam")
    lr = optimizer.get("lr")
    if lr is not None and (not _is_number(lr) or not lr > 0):
        raise UserError(f"optimizer.lr={lr} must be a number > 0, e.g. optimizer.lr=1e-4")
    for key in ("max_steps", "max_epochs"):
        value = cfg.trainer.get(key)
        if value is not None and (not _is_int(value) or value < -1):
            raise UserError(
                f"trainer.{key}={value} must be a whole number (-1: no limit), "
                f"e.g. trainer.{key}=1000"
            )
    if cfg.trainer.get("max_steps", -1) == 0 or cfg.trainer.get("max_epochs") == 0:
        raise UserError(
            "trainer.max_steps=0 / trainer.max_epochs=0 trains nothing: give a limit >= 1"
        )
    from lte.training.speed import (
        check_compile_flag,
        check_keep_freed_memory,
        check_matmul_precision,
    )

    check_matmul_precision(cfg.get("float32_matmul_precision", "high"))
    check_compile_flag(cfg.model.get("compile", False) if cfg.get("model") else False)
    check_keep_freed_memory(cfg.get("keep_freed_memory", True))
    check_scheduler(cfg.get("scheduler"))
    check_model_sizes(cfg)
    ckpt = cfg.get("ckpt_path")
    if ckpt is not None and not isinstance(ckpt, str):
        raise UserError(f"ckpt_path={ckpt} must be a file path or 'last'")


def build(what: str, factory: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``factory(*args, **kwargs)`` (e.g. Hydra's ``instantiate``), bad values as one line.

    A :class:`UserError` (raised directly or wrapped by Hydra) passes through; the ``ValueError`` /
    ``TypeError`` a constructor raises for a bad argument becomes ``<what>: <its message>``.
    """
    try:
        return factory(*args, **kwargs)
    except Exception as err:
        user = as_user_error(err)
        if user is not None:
            raise user from None
        cause: BaseException = err
        while cause.__cause__ is not None:
            cause = cause.__cause__
        if isinstance(cause, ValueError | TypeError) or type(cause).__name__ in (
            "MisconfigurationException",
            "InstantiationException",
        ):
            text = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
            raise UserError(f"{what}: {text[:300]} (check the {what}.* options)") from None
        raise
