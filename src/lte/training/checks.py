"""Config values training owns, checked once before anything is built: one line naming the option.

Data options (folders, patch sizes, workers, caching) are the data module's to check; the training
side owns how the global batch splits over the devices, the optimizer's learning rate and the few
top-level keys of ``train.yaml``. Errors raised while building the trainer, optimizer or callbacks
from their configs are turned into the same kind of line by :func:`build`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from omegaconf import DictConfig, ListConfig

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
    if devices in ("auto", -1, "-1"):
        return None
    raise UserError(
        f"trainer.devices={devices} is not a device count: use a positive number, a list of "
        "device indices, -1 or auto"
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
    from lte.training.speed import check_compile_flag, check_matmul_precision

    check_matmul_precision(cfg.get("float32_matmul_precision", "high"))
    check_compile_flag(cfg.model.get("compile", False) if cfg.get("model") else False)
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
