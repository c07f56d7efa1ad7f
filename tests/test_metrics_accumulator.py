"""Tests for the mergeable metric accumulator."""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxinterp.metrics import Accumulator, accumulate

BATCHES = [
    np.array([1.0, 2.0, 3.5], np.float32),
    np.array([-4.0], np.float32),
    np.array([10.0, 0.25, 7.0, 7.0, -1.0], np.float32),
]


def _check(result, values):
    values = np.asarray(values, np.float64)
    assert result["count"] == values.size
    np.testing.assert_allclose(result["mean"], values.mean(), rtol=1e-6)
    np.testing.assert_allclose(result["std"], values.std(ddof=0), rtol=1e-5)


def test_merge_equals_numpy_over_the_concatenation_in_any_order():
    everything = np.concatenate(BATCHES)
    for order in itertools.permutations(range(len(BATCHES))):
        acc = Accumulator.empty()
        for i in order:
            acc = acc.update(BATCHES[i])
        _check(acc.compute(), everything)
    # A tree of merges (pairwise, as across devices) gives the same.
    a, b, c = (Accumulator.from_values(v) for v in BATCHES)
    _check(a.merge(b.merge(c)).compute(), everything)
    _check(c.merge(a).merge(b).compute(), everything)


def test_from_values_and_dtypes():
    acc = Accumulator.from_values(jnp.array([True, False, True, True]))
    assert acc.count.dtype == jnp.int32 and acc.mean.dtype == jnp.float32
    _check(acc.compute(), [1, 0, 1, 1])
    m2 = float(Accumulator.from_values(BATCHES[2]).m2)
    np.testing.assert_allclose(m2, np.sum(np.square(BATCHES[2] - BATCHES[2].mean())), rtol=1e-6)


def test_empty_is_the_merge_identity():
    empty = Accumulator.empty()
    a = Accumulator.from_values(BATCHES[0])
    for merged in (a.merge(empty), empty.merge(a)):
        np.testing.assert_array_equal(np.asarray(merged), np.asarray(a))
    result = empty.merge(empty).compute()
    assert result["count"] == 0 and math.isnan(result["mean"]) and math.isnan(result["std"])
    assert Accumulator.from_values(np.zeros(0, np.float32)).compute()["count"] == 0
    _check(Accumulator.from_values(np.zeros(0)).merge(a).compute(), BATCHES[0])


def test_nan_propagates():
    acc = Accumulator.from_values([1.0, float("nan")]).update([2.0])
    assert math.isnan(acc.compute()["mean"]) and math.isnan(acc.compute()["std"])


def test_under_jit_and_scan():
    @jax.jit
    def step(acc, v):
        return acc.update(v)

    acc = Accumulator.empty()
    for v in (BATCHES[0], BATCHES[2][:3]):
        acc = step(acc, v)
    _check(acc.compute(), np.concatenate([BATCHES[0], BATCHES[2][:3]]))

    stacked = jnp.arange(12.0).reshape(4, 3)
    final, _ = jax.lax.scan(lambda a, v: (a.update(v), None), Accumulator.empty(), stacked)
    _check(final.compute(), np.arange(12.0))


def test_accumulate_dicts():
    accs = accumulate({}, {"a": BATCHES[0], "b": BATCHES[1]})
    accs = jax.jit(accumulate)(accs, {"a": BATCHES[2], "c": BATCHES[1]})
    assert set(accs) == {"a", "b", "c"}
    _check(accs["a"].compute(), np.concatenate([BATCHES[0], BATCHES[2]]))
    _check(accs["b"].compute(), BATCHES[1])
    _check(accs["c"].compute(), BATCHES[1])


def test_bad_values():
    with pytest.raises(ValueError, match=r"\[B\]"):
        Accumulator.from_values(np.zeros((2, 3)))
    with pytest.raises(TypeError, match="Accumulator"):
        Accumulator.empty().merge((1, 2, 3))
