"""Helpers of the metrics: per-pixel scores and ranks.

A *pixel* of a channels-last input ``[B, ..., C]`` (``ndim >= 3``) is one position of the
middle axes with all its ``C`` channels; of a flat input ``[B, D]`` it is one entry. Pixel
scores are ``[B, P]`` with ``P`` the number of pixels. Argument checks and array operations
shared with the other subpackages are in :mod:`jaxinterp.core`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxinterp.core.ops import descending_ranks  # Random tie order: one home, in core.

__all__ = ["descending_ranks", "pixel_scores", "pixel_shape"]


def pixel_shape(x: jax.Array) -> tuple[int, ...]:
    """The pixel axes of one example: ``x.shape[1:-1]`` for ``ndim >= 3``, else ``x.shape[1:]``."""
    return tuple(x.shape[1:-1]) if x.ndim >= 3 else tuple(x.shape[1:])


def pixel_scores(a: jax.Array, *, absolute: bool) -> jax.Array:
    """``[B, P]``: ``Σ_c |a|`` (``absolute``) or ``Σ_c a`` per pixel (no channel sum for 2-D)."""
    a = jnp.abs(a) if absolute else a
    a = jnp.sum(a, axis=-1) if a.ndim >= 3 else a
    return a.reshape(a.shape[0], -1)
