"""Helpers shared by the metrics tests."""

import jax
import numpy as np


def _key(seed: int = 0) -> jax.Array:
    return jax.random.key(seed, impl="rbg")


def run(fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` under ``jit``, array arguments traced and the rest bound: XLA:CPU
    compiles one small program much faster than it dispatches a first call op by op."""
    traced = [isinstance(a, (jax.Array, np.ndarray)) for a in args]

    def bound(*arrays):
        it = iter(arrays)
        return fn(*[next(it) if t else a for a, t in zip(args, traced, strict=True)], **kwargs)

    arrays = [a for a, t in zip(args, traced, strict=True) if t]
    return jax.jit(bound, compiler_options={"xla_backend_optimization_level": 0})(*arrays)
