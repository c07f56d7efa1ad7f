"""Shared checks and helpers of the metrics: batched inputs, per-pixel scores, maps over draws.

A *pixel* of a channels-last input ``[B, ..., C]`` (``ndim >= 3``) is one position of the
middle axes with all its ``C`` channels; of a flat input ``[B, D]`` it is one entry. Pixel
scores are ``[B, P]`` with ``P`` the number of pixels.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from jaxinterp.attacks._pgd import _check_positive
from jaxinterp.attribution._scores import check_nonnegative, check_positive_int

__all__ = [
    "check_batch",
    "check_chunk_size",
    "check_key",
    "check_like",
    "check_positive",
    "check_positive_int",
    "descending_ranks",
    "is_concrete",
    "map_draws",
    "per_example",
    "pixel_scores",
    "pixel_shape",
    "row_sum",
    "safe_div",
]


def is_concrete(v: Any) -> bool:
    """Whether ``v`` holds values (not a tracer), so value checks can run."""
    return not isinstance(v, jax.core.Tracer)


def check_batch(x: Any, name: str, *, ndims: tuple[int, ...] | None = None) -> jax.Array:
    """``x`` as a floating-point JAX array ``[B, ...]`` (``ndim`` in ``ndims`` if given).

    Raises:
      TypeError: ``x`` is not a real array (bool and integers are converted to float32).
      ValueError: ``x`` has no batch axis, or a rank outside ``ndims``.
    """
    try:
        x = jnp.asarray(x)
    except TypeError:
        raise TypeError(f"{name} must be an array [B, ...], got {type(x).__name__}") from None
    if jnp.issubdtype(x.dtype, jnp.complexfloating):
        raise TypeError(f"{name} must be real, got dtype {x.dtype}")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.float32)
    if x.ndim < 1 or (ndims is not None and x.ndim not in ndims):
        want = "[B, ...]" if ndims is None else " or ".join(_RANKS.get(n, f"{n}-D") for n in ndims)
        raise ValueError(f"{name} must be {want}, got shape {tuple(x.shape)}")
    return x


_RANKS = {1: "[B]", 2: "[B, D]", 3: "[B, H, W]", 4: "[B, H, W, C]"}


def check_like(a: Any, x: jax.Array, name: str, like: str = "x") -> jax.Array:
    """``a`` as a float array of exactly ``x.shape``, else ``ValueError`` naming ``name``."""
    a = check_batch(a, name)
    if a.shape != x.shape:
        raise ValueError(
            f"{name} must have the shape of {like}, {tuple(x.shape)}, got {tuple(a.shape)}"
        )
    return a


def check_positive(name: str, value: Any, *, allow_zero: bool = False) -> float:
    """``value`` as a finite Python float ``> 0`` (``>= 0`` with ``allow_zero``), else
    ``ValueError`` naming ``name`` (the attacks' and attributions' checks)."""
    return check_nonnegative(name, value) if allow_zero else _check_positive(name, value)


def check_key(key: Any) -> Any:
    """``key`` if it is a PRNG key (typed, or raw ``uint32 [2]``/``[4]``), else ``TypeError``."""
    k = key if isinstance(key, jax.Array) else None
    typed = k is not None and jnp.issubdtype(k.dtype, jax.dtypes.prng_key)
    raw = k is not None and k.dtype == jnp.uint32 and k.ndim == 1
    if not (typed or raw):
        raise TypeError(f"key must be a PRNG key, e.g. jax.random.key(0), got {key!r}")
    return key


def pixel_shape(x: jax.Array) -> tuple[int, ...]:
    """The pixel axes of one example: ``x.shape[1:-1]`` for ``ndim >= 3``, else ``x.shape[1:]``."""
    return tuple(x.shape[1:-1]) if x.ndim >= 3 else tuple(x.shape[1:])


def pixel_scores(a: jax.Array, *, absolute: bool) -> jax.Array:
    """``[B, P]``: ``Σ_c |a|`` (``absolute``) or ``Σ_c a`` per pixel (no channel sum for 2-D)."""
    a = jnp.abs(a) if absolute else a
    a = jnp.sum(a, axis=-1) if a.ndim >= 3 else a
    return a.reshape(a.shape[0], -1)


def descending_ranks(r: jax.Array) -> jax.Array:
    """Position of each entry of each row of ``r [B, P]`` when sorted highest first, ties by
    lower index (0 = the highest), ``[B, P]`` int32. ``−0.0`` and ``0.0`` tie."""
    order = jnp.argsort(-(r + 0.0), axis=1, stable=True)
    return jnp.argsort(order, axis=1, stable=True).astype(jnp.int32)


def per_example(v: jax.Array, ndim: int) -> jax.Array:
    """``[B]`` -> ``[B, 1, ..., 1]`` with ``ndim`` axes (explicit broadcasting)."""
    return v.reshape(v.shape + (1,) * (ndim - v.ndim))


def row_sum(v: jax.Array) -> jax.Array:
    """Sum over every axis but the first: ``[B, ...] -> [B]``."""
    return jnp.sum(v, axis=tuple(range(1, v.ndim)))


def safe_div(num: jax.Array, den: jax.Array) -> jax.Array:
    """``num / den`` where ``den != 0``, else ``0`` (no NaN in values or gradients)."""
    ok = den != 0
    return jnp.where(ok, num / jnp.where(ok, den, 1), 0)


def map_draws(fn: Callable[[Any], Any], xs: Any, chunk_size: int | None) -> Any:
    """``fn`` over the leading axis of ``xs``: one ``vmap`` (``chunk_size=None``) or
    ``lax.map`` with ``batch_size=chunk_size`` (``chunk_size`` draws alive at once)."""
    if chunk_size is None:
        return jax.vmap(fn)(xs)
    return jax.lax.map(fn, xs, batch_size=chunk_size)


def check_chunk_size(chunk_size: Any) -> int | None:
    """``None`` or an integer ``>= 1``."""
    return None if chunk_size is None else check_positive_int("chunk_size", chunk_size)
