"""Running a per-example computation on the examples still to do, in a few fixed sizes.

An attack run that restarts, or moves on to the next target class, need not spend work on
the examples an earlier run has already fooled: AutoAttack attacks only the points still
robust. Under ``jit`` shapes are fixed, so :func:`on_remaining` picks, at run time, the
smallest of a few static sub-batch sizes that holds every example still to do (``lax.switch``
over one traced branch per size, plus one that skips the run when nothing is left), gathers
those examples first, and scatters the results back.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeVar

import jax
import jax.numpy as jnp

from jaxinterp.core import checks
from jaxinterp.core.ops import per_example

__all__ = ["SUB_BATCH_FRACTIONS", "check_fractions", "on_remaining", "sub_batch_sizes"]

T = TypeVar("T")

SUB_BATCH_FRACTIONS = (1, 2, 4, 8)
"""The default sub-batch sizes :func:`on_remaining` compiles: ``ceil(B / d)`` for each ``d``.

Each size is a copy of the computation in the compiled program, so compiling takes about as
many times longer as there are sizes; ``(1,)`` compiles the whole batch alone (every run still
skips when nothing is left), the better choice for a program run on a few batches."""


def check_fractions(value: Any, name: str = "sub_batch_fractions") -> tuple[int, ...]:
    """``value`` as a tuple of distinct integers ``d >= 1`` that contains ``1`` (the whole
    batch, which must be among the sizes: every example may still be left to do)."""
    out = checks.sequence(name, value, checks.integer, distinct=True)
    if 1 not in out:
        raise ValueError(f"{name} must contain 1 (the whole batch), got {out}")
    return out


def sub_batch_sizes(
    batch: int, fractions: tuple[int, ...] = SUB_BATCH_FRACTIONS
) -> tuple[int, ...]:
    """The distinct sizes ``ceil(B / d)``, ``d`` in ``fractions``, largest first."""
    return tuple(sorted({math.ceil(batch / d) for d in fractions}, reverse=True))


def on_remaining(
    fn: Callable[..., T],
    todo: jax.Array,
    args: tuple[Any, ...],
    done: T,
    fractions: tuple[int, ...] = SUB_BATCH_FRACTIONS,
) -> T:
    """``fn(*args)`` on the examples where ``todo`` holds; ``done``'s rows elsewhere.

    ``fn`` must treat examples independently (row ``b`` of its outputs depends on row ``b``
    of its inputs alone), so that running it on a subset gives those rows unchanged. With
    ``n = Σ todo``, it runs once on the smallest size ``m >= n`` of :func:`sub_batch_sizes`:
    the ``n`` examples to do (in order) and ``m − n`` others, whose outputs are discarded;
    with ``n = 0`` it does not run at all.

    Args:
      fn: ``fn(*args) -> outputs``, a pytree of arrays ``[B, ...]``.
      todo: ``[B]`` bool, the examples to compute.
      args: arrays ``[B, ...]`` (or pytrees of them), one row per example.
      done: outputs shaped like ``fn``'s, the rows kept where ``todo`` is False.
      fractions: The sizes ``ceil(B / d)`` compiled (:func:`check_fractions`; default
        :data:`SUB_BATCH_FRACTIONS`).

    Returns:
      Per leaf, ``fn``'s row where ``todo`` holds, ``done``'s row elsewhere.
    """
    b = todo.shape[0]
    sizes = sub_batch_sizes(b, fractions)
    order = jnp.argsort(~todo, stable=True)  # the examples to do first, in order
    count = jnp.sum(todo)

    def sized(m: int) -> Callable[[], T]:
        def branch() -> T:
            idx = order[:m]
            out = fn(*jax.tree.map(lambda a: a[idx], args))
            keep = todo[idx]

            def put(base: jax.Array, rows: jax.Array) -> jax.Array:
                rows = jnp.where(per_example(keep, rows.ndim), rows, base[idx])
                return base.at[idx].set(rows.astype(base.dtype))

            return jax.tree.map(put, done, out)

        return branch

    branches = [sized(m) for m in sizes] + [lambda: done]
    # The smallest size that holds them all (sizes are decreasing); the last branch skips.
    fits = jnp.sum(jnp.asarray(sizes) >= count) - 1
    index = jnp.where(count == 0, len(sizes), fits)
    return jax.lax.switch(index, branches)
