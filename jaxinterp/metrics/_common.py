"""Helpers of the metrics: per-pixel scores and ranks, and NaN for invalid attributions.

A *pixel* of a channels-last input ``[B, ..., C]`` (``ndim >= 3``) is one position of the
middle axes with all its ``C`` channels; of a flat input ``[B, D]`` it is one entry. Pixel
scores are ``[B, P]`` with ``P`` the number of pixels.

An attribution with a NaN or an infinite entry is no explanation: every metric of an
attribution returns NaN for that example (:func:`nan_where_invalid`), never a number that
could be averaged with the others unnoticed. Argument checks and array operations
shared with the other subpackages are in :mod:`jaxinterp.core`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import jax
import jax.numpy as jnp

# descending_ranks: the random tie order has one home, in core.
from jaxinterp.core.ops import descending_ranks, per_example

__all__ = [
    "descending_ranks",
    "invalid_examples",
    "nan_where_invalid",
    "pixel_scores",
    "pixel_shape",
]

T = TypeVar("T")


def pixel_shape(x: jax.Array) -> tuple[int, ...]:
    """The pixel axes of one example: ``x.shape[1:-1]`` for ``ndim >= 3``, else ``x.shape[1:]``."""
    return tuple(x.shape[1:-1]) if x.ndim >= 3 else tuple(x.shape[1:])


def pixel_scores(a: jax.Array, *, absolute: bool) -> jax.Array:
    """``[B, P]``: ``Σ_c |a|`` (``absolute``) or ``Σ_c a`` per pixel (no channel sum for 2-D)."""
    a = jnp.abs(a) if absolute else a
    a = jnp.sum(a, axis=-1) if a.ndim >= 3 else a
    return a.reshape(a.shape[0], -1)


def invalid_examples(*maps: jax.Array) -> jax.Array:
    """``[B]`` bool: example ``b`` of some map ``[B, ...]`` holds a NaN or an infinity."""
    bad = jnp.zeros(maps[0].shape[:1], jnp.bool_)
    for m in maps:
        if jnp.issubdtype(m.dtype, jnp.inexact):
            bad = bad | ~jnp.all(jnp.isfinite(m.reshape(m.shape[0], -1)), axis=1)
    return bad


def nan_where_invalid(maps: jax.Array | Sequence[jax.Array], value: T) -> T:
    """``value`` (an array ``[B, ...]`` or a pytree of them) with NaN for every example whose
    attribution in ``maps`` (one array ``[B, ...]`` or several) holds a NaN or an infinity.

    The other examples are unchanged (the test is per example, so batching does not change a
    value), and it traces under ``jit``; float leaves only (a bool or int leaf is kept).
    """
    arrays = (maps,) if isinstance(maps, jax.Array) else tuple(maps)
    bad = invalid_examples(*arrays)

    def mark(v: jax.Array) -> jax.Array:
        if not jnp.issubdtype(v.dtype, jnp.inexact):
            return v
        return jnp.where(per_example(bad, v.ndim), jnp.nan, v)

    return jax.tree.map(mark, value)
