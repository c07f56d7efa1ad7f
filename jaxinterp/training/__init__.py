"""Train state, pure train/eval steps, data parallelism, checkpoints and logging."""

from jaxinterp.training.checkpoint import Checkpointer, all_finite
from jaxinterp.training.errors import NonFiniteError
from jaxinterp.training.lock import WorkdirLock
from jaxinterp.training.logging import (
    MetricsWriter,
    progress_bar,
    tensorboard_summary_writer,
    write_atomic,
    write_json_atomic,
)
from jaxinterp.training.optim import OPTIMIZERS, SCHEDULES, make_optimizer, make_schedule
from jaxinterp.training.parallel import (
    batch_sharding,
    initialize_distributed,
    make_data_mesh,
    replicate,
    replicated_sharding,
    shard_batch,
)
from jaxinterp.training.state import TrainState, create_train_state
from jaxinterp.training.step import (
    cross_entropy,
    jit_eval_step,
    jit_train_step,
    make_eval_step,
    make_train_step,
)

__all__ = [
    "OPTIMIZERS",
    "SCHEDULES",
    "Checkpointer",
    "MetricsWriter",
    "NonFiniteError",
    "TrainState",
    "WorkdirLock",
    "all_finite",
    "batch_sharding",
    "create_train_state",
    "cross_entropy",
    "initialize_distributed",
    "jit_eval_step",
    "jit_train_step",
    "make_data_mesh",
    "make_eval_step",
    "make_optimizer",
    "make_schedule",
    "make_train_step",
    "progress_bar",
    "replicate",
    "replicated_sharding",
    "shard_batch",
    "tensorboard_summary_writer",
    "write_atomic",
    "write_json_atomic",
]
