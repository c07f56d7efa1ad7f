"""Tests for the adopted APE metric and its masked PGD."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxinterp import metrics
from jaxinterp.metrics._ape import _masked_pgd
from tests._metrics_util import _key, run

EPS = 0.1


def two_class_linear(params, x):
    """Logits ``[Σ w ⊙ x, −Σ w ⊙ x]``."""
    s = jnp.sum((x * params[None]).reshape(x.shape[0], -1), axis=1)
    return jnp.stack([s, -s], axis=1)


@pytest.fixture(scope="module")
def setup():
    # Only a 2×2 block of an 8×8 image matters (4 of 64 pixels), with mixed signs.
    w = jnp.zeros((8, 8, 1)).at[2:4, 5:7, 0].set(jnp.array([[2.0, -1.5], [1.0, -2.5]]))
    x = jax.random.uniform(_key(0), (3, 8, 8, 1), minval=0.0, maxval=1.0)
    x = x.at[0, 2, 5, 0].set(0.98)  # Bounds bind on this pixel.
    y = jnp.argmax(two_class_linear(w, x), -1)
    return w, x, y


def test_right_explanation_beats_its_complement_and_a_random_one(setup):
    w, x, y = setup
    right = jnp.broadcast_to(jnp.abs(w)[None], x.shape)  # Names the 4 relevant pixels.
    out = run(metrics.ape, two_class_linear, w, x, y, right, epsilon=EPS, fraction=4 / 64)
    assert set(out) == {"ape", "ape_complement"}
    assert all(v.shape == (3,) and v.dtype == jnp.float32 for v in out.values())
    assert np.all(out["ape"] > 1e-3)
    np.testing.assert_array_equal(out["ape_complement"], 0.0)  # Weight 0 there: no effect.
    noise = jax.random.uniform(_key(1), x.shape)
    rand = run(metrics.ape, two_class_linear, w, x, y, noise, epsilon=EPS, fraction=4 / 64)
    assert np.all(out["ape"] > rand["ape"])
    # By hand: the attack lowers the margin by at most ε Σ|w| on the block.
    p = jax.nn.softmax(two_class_linear(w, x), -1)[jnp.arange(3), y]
    s = jnp.abs(jnp.sum((x * w[None]).reshape(3, -1), axis=1))
    p_worst = jax.nn.sigmoid(2 * (s - EPS * jnp.sum(jnp.abs(w))))
    assert np.all(out["ape"] <= p - p_worst + 1e-6)
    # The margin form: margin 2s drops by 2 Σ_T |w||δ| <= 2 ε Σ|w|, and not on the complement.
    m = run(metrics.ape, two_class_linear, w, x, y, right, epsilon=EPS, fraction=4 / 64,
            score="margin")  # fmt: skip
    assert np.all(m["ape"] > 1e-3) and np.all(m["ape"] <= 2 * EPS * jnp.sum(jnp.abs(w)) + 1e-5)
    np.testing.assert_array_equal(m["ape_complement"], 0.0)
    with pytest.raises(ValueError, match="score"):
        metrics.ape(two_class_linear, w, x, y, right, epsilon=EPS, score="logit")


def test_masked_pgd_stays_in_the_ball_bounds_and_mask(setup):
    w, x, y = setup
    mask = jnp.zeros(x.shape).at[:, 2:4, 3:7].set(1.0)
    x_adv = _masked_pgd(
        two_class_linear,
        w,
        x,
        y,
        mask,
        epsilon=EPS,
        num_steps=5,
        step_size=0.05,
        score="probability",
        bounds=(0.0, 1.0),
    )
    delta = x_adv - x
    assert float(jnp.max(jnp.abs(delta))) <= EPS + 1e-6
    assert float(jnp.min(x_adv)) >= 0.0 and float(jnp.max(x_adv)) <= 1.0
    np.testing.assert_array_equal(delta * (1 - mask), 0.0)
    # On a linear model each relevant pixel ends at the edge of the ball (or the bound),
    # moved against the sign of the true class's weight.
    sign = jnp.where(y == 0, 1.0, -1.0).reshape(3, 1, 1, 1) * jnp.sign(w)[None]
    target = jnp.clip(x - EPS * sign, 0.0, 1.0)
    relevant = (w != 0)[None] & jnp.ones(x.shape, bool)
    np.testing.assert_allclose(
        jnp.where(relevant, x_adv, 0), jnp.where(relevant, target, 0), atol=1e-6
    )


def test_ape_flat_inputs_and_checks(setup):
    w, x, y = setup
    flat_w, flat_x = w.reshape(-1), x.reshape(3, -1)
    right = jnp.broadcast_to(jnp.abs(flat_w)[None], flat_x.shape)
    out = run(metrics.ape, two_class_linear, flat_w, flat_x, y, right, epsilon=EPS, fraction=4 / 64)
    image = run(
        metrics.ape,
        two_class_linear,
        w,
        x,
        y,
        jnp.abs(w)[None] * jnp.ones(x.shape),
        epsilon=EPS,
        fraction=4 / 64,
    )
    np.testing.assert_allclose(out["ape"], image["ape"], rtol=1e-6)
    with pytest.raises(ValueError, match="fraction"):
        metrics.ape(two_class_linear, w, x, y, x, epsilon=EPS, fraction=0.7)
    with pytest.raises(ValueError, match="fraction"):  # a concrete array is checked too
        metrics.ape(two_class_linear, w, x, y, x, epsilon=EPS, fraction=jnp.float32(0.7))
    with pytest.raises(ValueError, match="bounds"):
        metrics.ape(two_class_linear, w, x + 1.0, y, x, epsilon=EPS)
    with pytest.raises(ValueError, match=r"y must be \[B\]"):
        metrics.ape(two_class_linear, w, x, y[:2], x, epsilon=EPS)
    with pytest.raises(ValueError, match="epsilon"):
        metrics.ape(two_class_linear, w, x, y, x, epsilon=0.0)


def test_ape_traced_fraction_one_program_the_concrete_values(setup):
    # A traced fraction (k = 4 and 16 of 64 pixels here): the values of the concrete fraction,
    # from one compiled program; the two fractions give different values.
    w, x, y = setup
    a = jax.random.uniform(_key(5), x.shape)
    one = jax.jit(
        lambda q: metrics.ape(two_class_linear, w, x, y, a, epsilon=EPS, fraction=q, key=_key(6))
    )
    outs = {}
    for q in (4 / 64, 16 / 64):
        outs[q] = run(metrics.ape, two_class_linear, w, x, y, a, epsilon=EPS, fraction=q,
                      key=_key(6))  # fmt: skip
        traced = one(jnp.float32(q))
        for name in ("ape", "ape_complement"):
            np.testing.assert_allclose(traced[name], outs[q][name], rtol=1e-6, atol=1e-7)
    assert one._cache_size() == 1
    assert not np.allclose(outs[4 / 64]["ape_complement"], outs[16 / 64]["ape_complement"])
