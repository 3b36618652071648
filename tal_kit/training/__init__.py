"""Training machinery: optimizer groups, LR schedule, EMA, checkpoints, seeding, the loop.

``tal_kit.train`` is the entry point that wires these to the dataset, the model and the evaluator; the device and
process context they run in is :mod:`tal_kit.runtime`.
"""
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .ema import ModelEMA
from .loop import LoopSettings, Trainer
from .optim import make_optimizer, parameter_groups
from .schedule import learning_rate_at, make_scheduler
from .seeding import capture_rng_state, restore_rng_state, seed_everything

__all__ = ["CheckpointError", "LoopSettings", "ModelEMA", "Trainer", "capture_rng_state",
           "learning_rate_at", "load_checkpoint", "make_optimizer", "make_scheduler",
           "parameter_groups", "restore_rng_state", "save_checkpoint", "seed_everything"]
