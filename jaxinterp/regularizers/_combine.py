"""Weighted sums of named penalties."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from jaxinterp.core import checks
from jaxinterp.core.protocols import SHARED_LOGITS, ApplyFn

__all__ = ["Penalty", "combine"]

Penalty = Callable[..., Any]
"""``penalty(apply_fn, params, x, y, *, key) -> scalar`` or ``(scalar, diagnostics)``."""


def combine(
    **named: tuple[float, Penalty],
) -> Callable[..., tuple[jax.Array, dict[str, jax.Array]]]:
    """Builds ``R = Σ_name weight_name · penalty_name`` from named, weighted penalties.

    Each penalty gets its own key, ``jax.random.fold_in(key, i)`` with ``i`` its position in
    the sorted names, so adding a penalty does not change the randomness of the others.

    Args:
      **named: ``name=(weight, penalty)``; weights are finite and non-negative.

    Returns:
      ``combined(apply_fn, params, x, y, *, key) -> (total, terms)``: ``total`` is the weighted
      scalar sum, ``terms`` maps each name to its unweighted value (and ``name/diag`` to any
      diagnostics a penalty returns), and ``shared_logits`` (unprefixed, the first
      penalty's) to the logits at ``x`` a penalty computed with params attached, from which
      :func:`~jaxinterp.training.make_train_step` computes its cross-entropy. With no
      penalties, ``total`` is ``0.0``.

    Example:
      >>> def l2(apply_fn, params, x, y, *, key):
      ...     return sum(jnp.sum(p**2) for p in jax.tree.leaves(params))
      >>> reg = combine(weight_decay=(1e-4, l2))
    """
    for name, spec in named.items():
        if not (isinstance(spec, tuple) and len(spec) == 2):
            raise checks.ArgumentTypeError(
                f"penalty {name!r} must be given as (weight, penalty), got {spec!r}"
            )
        checks.nonnegative(f"weight of penalty {name!r}", spec[0])
        checks.function(f"penalty {name!r}", spec[1])
    names = sorted(named)

    def combined(
        apply_fn: ApplyFn, params: Any, x: jax.Array, y: jax.Array, *, key: jax.Array
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        total = jnp.zeros((), jnp.float32)
        terms: dict[str, jax.Array] = {}
        for i, name in enumerate(names):
            weight, fn = named[name]
            out = fn(apply_fn, params, x, y, key=jax.random.fold_in(key, i))
            value, diags = out if isinstance(out, tuple) else (out, {})
            diags = dict(diags)
            shared = diags.pop(SHARED_LOGITS, None)
            if shared is not None and SHARED_LOGITS not in terms:
                terms[SHARED_LOGITS] = shared
            terms[name] = value
            terms.update({f"{name}/{k}": v for k, v in diags.items()})
            total = total + weight * value
        return total, terms

    return combined
