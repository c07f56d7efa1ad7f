"""A mergeable running mean and variance of per-example metric values.

The state is three scalars, a pytree, so it can be carried through ``jit``, ``scan`` and
sharded computations, and partial results of batches, devices or hosts merge exactly (up to
float rounding) in any order with the parallel update of Chan, Golub and LeVeque.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxinterp.core import checks

__all__ = ["Accumulator", "accumulate"]


class Accumulator(NamedTuple):
    """Count, mean and sum of squared deviations of the values seen so far.

    For values ``v_1..v_n``: ``count = n``, ``mean = (1/n) Σ v_i``,
    ``m2 = Σ (v_i − mean)²``. Two states merge by

        n = n_a + n_b,  δ = mean_b − mean_a,
        mean = mean_a + δ · n_b / n,  m2 = m2_a + m2_b + δ² · n_a n_b / n,

    which is associative and commutative up to rounding, with :meth:`empty` as identity.
    ``count`` is int32, ``mean`` and ``m2`` float32 scalars. NaN values are not skipped:
    one NaN makes ``mean`` and ``std`` NaN from then on (filter them before if needed).

    Example::

        acc = Accumulator.empty()
        for batch in batches:
            acc = acc.update(metrics.gini(explain(batch)))  # values [B]
        acc.compute()  # {"mean": ..., "std": ..., "count": ...}

    References:
      Chan, Golub, LeVeque, "Updating formulae and a pairwise algorithm for computing sample
      variances", COMPSTAT 1982; Welford, Technometrics 1962.
    """

    count: jax.Array  # type: ignore[assignment]  # The public field shadows tuple.count.
    mean: jax.Array
    m2: jax.Array

    @classmethod
    def empty(cls) -> Accumulator:
        """The state of no values (``count = 0``), the identity of :meth:`merge`."""
        zero = jnp.zeros((), jnp.float32)
        return cls(jnp.zeros((), jnp.int32), zero, zero)

    @classmethod
    def from_values(cls, values: Any) -> Accumulator:
        """The state of a batch of values ``[B]`` (any real dtype, bools count as 0/1).

        Raises:
          ValueError: ``values`` is not one-dimensional.
          TypeError: ``values`` is complex or not an array.
        """
        v = checks.array(values, "values", ndims=(1,), cast=True, allow_empty=True).astype(
            jnp.float32
        )
        n = v.shape[0]
        mean = jnp.sum(v) / max(n, 1)
        m2 = jnp.sum(jnp.square(v - mean))
        return cls(jnp.asarray(n, jnp.int32), mean, m2)

    def update(self, values: Any) -> Accumulator:
        """``self.merge(Accumulator.from_values(values))``."""
        return self.merge(Accumulator.from_values(values))

    def merge(self, other: Accumulator) -> Accumulator:
        """The state of the values of ``self`` and ``other`` together (Chan et al.)."""
        if not isinstance(other, Accumulator):
            raise checks.ArgumentTypeError(
                f"other must be an Accumulator, got {type(other).__name__}"
            )
        n_a = self.count.astype(jnp.float32)
        n_b = other.count.astype(jnp.float32)
        n = n_a + n_b
        safe_n = jnp.where(n > 0, n, 1.0)
        delta = other.mean - self.mean
        mean = self.mean + delta * (n_b / safe_n)
        m2 = self.m2 + other.m2 + jnp.square(delta) * (n_a * n_b / safe_n)
        return Accumulator(self.count + other.count, mean, m2)

    def compute(self) -> dict[str, float]:
        """``{"mean", "std", "count"}`` as Python numbers (not jittable: it reads values).

        ``std`` is the population standard deviation ``sqrt(m2 / n)`` (``ddof = 0``); with
        no values, ``mean`` and ``std`` are NaN and ``count`` is 0.
        """
        count, mean, m2 = (jax.device_get(v) for v in self)
        count = int(count)
        if count == 0:
            return {"mean": math.nan, "std": math.nan, "count": 0}
        return {"mean": float(mean), "std": math.sqrt(max(float(m2), 0.0) / count), "count": count}


def accumulate(
    accumulators: Mapping[str, Accumulator], values: Mapping[str, Any]
) -> dict[str, Accumulator]:
    """Updates a dict of accumulators with a dict of per-example values ``[B]``, by key.

    Keys only in ``values`` start from :meth:`Accumulator.empty`; keys only in
    ``accumulators`` are kept unchanged. Jittable (dicts are pytrees).

    Example::

        accs = {}
        for batch in batches:
            accs = accumulate(accs, metrics.attack_robustness(...))
        {name: acc.compute() for name, acc in accs.items()}
    """
    out = dict(accumulators)
    for name, v in values.items():
        out[name] = out.get(name, Accumulator.empty()).update(v)
    return out
