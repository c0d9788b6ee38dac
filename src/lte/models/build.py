"""Build models from the Hydra config groups in ``conf/`` outside a Hydra app (scripts, tests).

The same YAML files drive training, so a model built here is the model a run trains. These are the
user's own configs: ``_target_`` is instantiated. A checkpoint never comes through here; files are
read as data by :mod:`lte.checkpoint` through :class:`lte.models.spec.ModelSpec`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from lte.conf import CONF_DIR
from lte.errors import UserError
from lte.models.sr import SRModel


def available(group: str) -> list[str]:
    """Names of the configs in a group, e.g. ``available("encoder")``."""
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def load_group(group: str, name: str) -> DictConfig:
    """The YAML of ``conf/<group>/<name>.yaml``; a UserError lists the valid names otherwise."""
    path = CONF_DIR / group / f"{name}.yaml"
    if not path.is_file():
        raise UserError(f"unknown {group} '{name}': choose one of {', '.join(available(group))}")
    cfg = OmegaConf.load(path)
    assert isinstance(cfg, DictConfig)
    return cfg


def model_config(model: str, encoder: str, overrides: Sequence[str] = ()) -> DictConfig:
    """The composed ``{model, encoder}`` config, with dotted overrides like ``encoder.n_resblocks=4``."""
    cfg = OmegaConf.create(
        {"model": load_group("model", model), "encoder": load_group("encoder", encoder)}
    )
    if overrides:
        cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(list(overrides)))
    assert isinstance(cfg, DictConfig)
    return cfg


def instantiate_model(cfg: DictConfig | dict[str, Any]) -> SRModel:
    """Build the SRModel of a composed config holding ``model`` and ``encoder`` nodes."""
    cfg = OmegaConf.create(cfg) if isinstance(cfg, dict) else cfg
    model = instantiate(cfg.model, encoder=cfg.encoder)
    assert isinstance(model, SRModel)
    return model


def build_model(
    model: str = "lte", encoder: str = "edsr_baseline", overrides: Sequence[str] = ()
) -> SRModel:
    """Build e.g. ``build_model("lte", "edsr_baseline")`` with random weights."""
    return instantiate_model(model_config(model, encoder, overrides))
