"""An architecture family's declaration: its class, its typed configuration, its presets and how the
official releases store it, written once beside the class (``FAMILY`` at the end of ``edsr.py``, ...).

As timm keeps each variant and its ``checkpoint_filter_fn`` in the model's own file, an lte family's
file holds everything that is particular to it. The rest of lte only reads these records: the model
description (:mod:`lte.models.spec`), the labels (:mod:`lte.models.identity`), training's size checks
and the checkpoint readers and writers (:mod:`lte.checkpoint`), whose official layouts are driven by
the ``release`` tables below, one table per family for both reading and writing. Which families exist
is the closed tuple in :mod:`lte.models.families` (plus what code registers there from Python).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lte.models.fields import FamilyConfig

if TYPE_CHECKING:
    from torch import Tensor, nn


def unchanged(value: Any) -> Any:
    """The identity: a :class:`KeyRule` that renames keys but leaves their tensors alone."""
    return value


# --- encoders ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EncoderRelease:
    """How the LTE/LIIF releases name and configure one encoder family (their ``encoder_spec``).

    Read and written through this one table: a released name stands for a preset, each released
    argument sets one field (checked by that field's rule), a ``choices`` argument sets several.

    Attributes:
        names: released encoder name -> the preset its defaults are (``"edsr-baseline"`` ->
            ``"edsr_baseline"``). Export writes a preset under its released name, with no arguments.
        arguments: released argument -> config field (RDN's ``"G0"`` -> ``"g0"``).
        choices: released argument whose value names several fields at once -> ``{value: fields}``
            (RDN's ``RDNconfig``: ``"A"`` and ``"B"``, each a ``n_blocks, n_layers, growth``).
        general: the released name under which a configuration that is no preset is written, every
            argument spelled out; ``None`` when the released code builds only its presets (SwinIR).
        buffers: the tensors a released file holds that this module recomputes or never uses, for an
            encoder description: skipped on load (only those keys), written on export.
    """

    names: Mapping[str, str]
    arguments: Mapping[str, str] = field(default_factory=dict)
    choices: Mapping[str, Mapping[str, Mapping[str, Any]]] = field(default_factory=dict)
    general: str | None = None
    buffers: Callable[[Mapping[str, Any]], dict[str, Tensor]] | None = None


@dataclass(frozen=True)
class EncoderFamily:
    """One encoder architecture: its module, configuration, presets and release adapter.

    Attributes:
        module: the ``nn.Module`` class; its ``kind`` names the family in descriptions and its
            constructor takes the config's fields as keyword arguments.
        config: the :class:`~lte.models.fields.FamilyConfig` subclass declaring those fields.
        presets: named configurations (``conf/encoder/<name>.yaml`` holds each one, tested).
        labels: the presets whose name is the model's label when it has exactly that configuration
            (the papers' encoders; tiny test variants are not among them). The first is the base
            other configurations of the family are spelled against (``edsr-n_feats=16``).
        release: how the official releases store it (``None``: it has no released form).
        v1_targets: the ``_target_`` strings format-1 lte checkpoints name it by (looked up, never
            imported).
    """

    module: type[nn.Module]
    config: type[FamilyConfig]
    presets: Mapping[str, FamilyConfig] = field(default_factory=dict)
    labels: tuple[str, ...] = ()
    release: EncoderRelease | None = None
    v1_targets: tuple[str, ...] = ()

    @property
    def kind(self) -> str:
        """The family's name in model descriptions (the module's ``kind``)."""
        return str(self.module.kind)

    @property
    def fixed_scale(self) -> bool:
        """Whether it has an upsampler tail (an ``upscale`` field): the fixed-scale baselines."""
        return "upscale" in self.config.rules()

    def describe(self, preset: str) -> dict[str, Any]:
        """A preset as a description's encoder node: ``{"kind": ..., **fields}``."""
        return {"kind": self.kind, **self.presets[preset].to_dict()}

    def build(self, config: FamilyConfig) -> nn.Module:
        """The encoder module of ``config`` (constructor called with its fields)."""
        return self.module(**config.to_dict())


# --- decoders ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyRule:
    """One rule of a released layout's weight names: our keys starting with ``ours`` are stored as
    ``theirs`` + the rest, each tensor passed through ``save`` on export and ``load`` on reading.

    ``what`` names what the rule moves, for the message when a file holds keys under ``ours``.
    ``load`` must pass on unchanged anything it cannot convert, so the shape check names it.
    """

    ours: str
    theirs: str
    what: str = ""
    save: Callable[[Tensor], Tensor] = unchanged
    load: Callable[[Any], Any] = unchanged


@dataclass(frozen=True)
class DecoderLayout:
    """Another released layout of the same decoder, with its own model name (LTE+'s ``lte-fast``).

    Attributes:
        name: the released model name, also the ``layout=`` of :func:`lte.checkpoint.official_state`.
        arguments: the released arguments besides ``encoder_spec``.
        read: released arguments and their path (``model.args``) -> the decoder's fields (a
            ``FieldError`` naming a bad one).
        write: decoder description -> released arguments (a ``UserError`` when it has none).
        keys: how its weight names and tensors differ from ours (:class:`KeyRule`).
    """

    name: str
    arguments: tuple[str, ...]
    read: Callable[[Mapping[str, Any], str], dict[str, Any]]
    write: Callable[[Mapping[str, Any]], dict[str, Any]]
    keys: tuple[KeyRule, ...] = ()


@dataclass(frozen=True)
class DecoderRelease:
    """How the LTE/LIIF releases store one decoder family: model name, arguments and defaults.

    Attributes:
        name: the released model name (``lte``, ``liif``, ``metasr``).
        title: the family in messages (``Meta-SR``).
        defaults: what a file that leaves an argument out stands for.
        mlp: whether ``imnet_spec.args.hidden_list`` holds ``mlp_hidden``; without it the released
            code fixes the MLP to the defaults'.
        arguments: released argument -> config field (``hidden_dim``).
        flags: released booleans that lte implements only as ``True`` (LIIF's ``local_ensemble``).
        layouts: other layouts of the same decoder (:class:`DecoderLayout`).
        read: for a release whose arguments the fields above cannot say (LMF's nested
            ``imnet_spec`` / ``hypernet_spec``): its arguments (all but ``encoder_spec``) and their
            path -> the decoder's fields, a ``FieldError`` naming a bad one. ``mlp``, ``arguments``
            and ``flags`` are then unused.
        write: with ``read``: decoder description -> the released arguments (a ``UserError`` when
            there are none).
        extra: with ``read``: the arguments a file may hold besides ``encoder_spec``.

    A field neither ``mlp`` nor ``arguments`` carries must equal the defaults' to be exported.
    """

    name: str
    title: str
    defaults: FamilyConfig
    mlp: bool = False
    arguments: Mapping[str, str] = field(default_factory=dict)
    flags: tuple[str, ...] = ()
    layouts: tuple[DecoderLayout, ...] = ()
    read: Callable[[Mapping[str, Any], str], dict[str, Any]] | None = None
    write: Callable[[Mapping[str, Any]], dict[str, Any]] | None = None
    extra: tuple[str, ...] = ()

    @property
    def accepted(self) -> tuple[str, ...]:
        """Every argument a released file of this model may hold besides ``encoder_spec``."""
        if self.read is not None:
            return self.extra
        return (*(("imnet_spec",) if self.mlp else ()), *self.arguments, *self.flags)


@dataclass(frozen=True)
class FixedScaleRelease:
    """The releases of the fixed-scale baselines: the ``wraps`` model with no MLP (no
    ``imnet_spec``) around an encoder that keeps its upsampler (``encoder_spec.args.scale = s``;
    ``default_scale`` when left out). Only families with an ``upscale`` field have one."""

    wraps: str = "liif"
    default_scale: int = 2


@dataclass(frozen=True)
class DecoderFamily:
    """One decoder architecture: its module, configuration and release adapter.

    Attributes:
        module: the :class:`~lte.models.decoders.Decoder` subclass; its ``kind`` names the family
            and its constructor takes ``in_channels`` plus the config's fields.
        config: the :class:`~lte.models.fields.FamilyConfig` subclass declaring those fields.
        release: how the official releases store it (``None``: it has no released form).
        v1_targets: the ``_target_`` strings format-1 lte checkpoints name it by.
    """

    module: type[nn.Module]
    config: type[FamilyConfig]
    release: DecoderRelease | FixedScaleRelease | None = None
    v1_targets: tuple[str, ...] = ()

    @property
    def kind(self) -> str:
        """The family's name in model descriptions (the module's ``kind``)."""
        return str(self.module.kind)

    def build(self, config: FamilyConfig, in_channels: int) -> nn.Module:
        """The decoder module of ``config`` for an encoder of width ``in_channels``."""
        return self.module(in_channels=in_channels, **config.to_dict())
