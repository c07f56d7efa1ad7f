"""Gradient (saliency) and Gradient × Input, and evaluating many points a chunk at a time.

:func:`chunked_reduce` is the memory bound shared by path and noise methods (integrated
gradients, smoothing): it evaluates a function of a stack of points ``chunk_size`` points at
a time and folds the results, so only one chunk's activations are alive at once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import jax
import jax.numpy as jnp

from jaxinterp.core import checks
from jaxinterp.core.protocols import ScoreFn
from jaxinterp.core.scores import checked_score

__all__ = ["chunked_reduce", "gradient", "gradient_x_input"]

T = TypeVar("T")


def gradient(score_fn: ScoreFn, x: jax.Array) -> jax.Array:
    """Per-example input gradient (saliency).

    ``g_b = ∇ₓ s_b(x_b)``, computed as ``∇ₓ Σ_b s_b(x_b)`` in one reverse pass — exact
    because examples do not interact in ``score_fn``.

    Args:
        score_fn: ``score_fn(x [B, ...]) -> [B]``, e.g. from :func:`class_score`.
        x: Inputs ``[B, ...]`` (e.g. ``[B, H, W, C]``), floating point.

    Returns:
        ``g``, shaped like ``x``.

    Raises:
        TypeError: ``x`` is not floating point.
        ValueError: ``score_fn`` does not return shape ``[B]``.

    References:
        Simonyan, Vedaldi, Zisserman, "Deep inside convolutional networks: visualising image
        classification models and saliency maps", ICLR Workshop 2014.
    """
    x = checks.array(x)
    return jax.grad(lambda z: jnp.sum(checked_score(score_fn, z)))(x)


def gradient_x_input(score_fn: ScoreFn, x: jax.Array) -> jax.Array:
    """Gradient × Input: ``φ_b = x_b ⊙ ∇ₓ s_b(x_b)``.

    Equal to integrated gradients from a zero baseline when ``s`` is linear.

    Args:
        score_fn: ``score_fn(x [B, ...]) -> [B]``.
        x: Inputs ``[B, ...]``, floating point.

    Returns:
        ``φ``, shaped like ``x``.

    References:
        Shrikumar, Greenside, Shcherbina, Kundaje, "Not just a black box: learning important
        features through propagating activation differences", arXiv:1605.01713, 2016.
    """
    x = checks.array(x)
    return x * gradient(score_fn, x)


def chunked_reduce(
    fn: Callable[[Any], T],
    xs: Any,
    chunk_size: int | None,
    combine: Callable[[T, T], T],
    init: T,
) -> T:
    """``fn`` over a stack of ``n`` points, ``chunk_size`` points at a time, folded.

    With ``c = chunk_size`` and ``n = q·c + r``: a ``lax.scan`` over the ``q`` full chunks
    carries ``acc ← combine(acc, fn(chunk))`` from ``init``, then the ``r`` leftover points
    are one more (smaller) chunk, so every point is evaluated exactly once. The scan body is
    rematerialised (``jax.checkpoint``), so differentiating through it keeps only the
    chunk inputs, not every chunk's activations. ``None`` or ``c >= n`` returns ``fn(xs)``.

    Args:
        fn: Maps a chunk (``xs`` with leading axis ``m <= n``) to a summary (a pytree whose
            shapes do not depend on ``m``).
        xs: A pytree of arrays sharing the leading axis ``n`` (e.g. path nodes or keys).
        chunk_size: ``c >= 1``, or ``None`` for all points at once.
        combine: Associative merge of two summaries.
        init: The identity of ``combine`` (shaped like a summary).

    Returns:
        The folded summary.
    """
    n = jax.tree.leaves(xs)[0].shape[0]
    if chunk_size is None or chunk_size >= n:
        return fn(xs)
    q, r = divmod(n, chunk_size)
    full = jax.tree.map(lambda a: a[: q * chunk_size].reshape(q, chunk_size, *a.shape[1:]), xs)
    body_fn = jax.checkpoint(fn)

    def body(acc: T, chunk: Any) -> tuple[T, None]:
        return combine(acc, body_fn(chunk)), None

    acc, _ = jax.lax.scan(body, init, full)
    if r:
        acc = combine(acc, fn(jax.tree.map(lambda a: a[q * chunk_size :], xs)))
    return acc
