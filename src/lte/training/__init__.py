"""Training: the LightningModule around an SRModel, its callbacks, W&B bookkeeping and RNG state.

The networks (:mod:`lte.models`) and the data (:mod:`lte.data`) know nothing about training; this
package holds everything that does: :func:`lte.training.run.train` runs one job from a composed
config, and ``python -m lte.train`` (:mod:`lte.cli.train`) wires it to Hydra.
"""

from lte.training.callbacks import (
    AtomicCheckpointIO,
    ImageLogger,
    RNGState,
    RunCheckpoint,
    side_by_side,
)
from lte.training.module import NonFiniteLossError, SRLitModule
from lte.training.rng import capture_rng_state, restore_rng_state

__all__ = [
    "AtomicCheckpointIO",
    "ImageLogger",
    "NonFiniteLossError",
    "RNGState",
    "RunCheckpoint",
    "SRLitModule",
    "capture_rng_state",
    "restore_rng_state",
    "side_by_side",
]
