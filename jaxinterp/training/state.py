"""The train state: one pytree holding everything a step reads and writes."""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax

__all__ = ["TrainState", "create_train_state"]


@flax.struct.dataclass
class TrainState:
    """Params, optimizer state, step counter and the run's base PRNG key.

    Attributes:
      step: int32 scalar, the number of steps taken.
      params: the model's parameter pytree.
      opt_state: the optax state.
      key: uint32 ``[2]`` raw PRNG key; step ``s`` uses ``jax.random.fold_in(key, s)``, so the
        randomness of a step does not depend on how the run got there (resume-safe).
    """

    step: jax.Array
    params: Any
    opt_state: Any
    key: jax.Array


def create_train_state(
    params: Any, tx: optax.GradientTransformation, *, key: jax.Array
) -> TrainState:
    """A fresh state at step 0."""
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    return TrainState(
        step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params), key=key
    )
