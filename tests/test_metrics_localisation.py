"""Tests for box masks, the energy and pointing games, the Gini index and retrieval."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxinterp import metrics


def test_box_mask():
    boxes = np.array([[1, 2, 4, 5], [0.4, 0.0, 2.6, 1.0], [3, 3, 3, 5]], np.float32)
    m = np.asarray(metrics.box_mask(boxes, (6, 7)))
    assert m.shape == (3, 6, 7) and m.dtype == bool
    expected = np.zeros((3, 6, 7), bool)
    expected[0, 1:4, 2:5] = True  # Max exclusive.
    expected[1, 0:3, 0:1] = True  # Pixel centres 0.5, 1.5, 2.5 lie in [0.4, 2.6).
    np.testing.assert_array_equal(m, expected)  # Box 2 is empty.
    with pytest.raises(ValueError, match=r"\[B, 4\]"):
        metrics.box_mask(boxes[:, :3], (6, 7))


def test_energy_game():
    box = np.array([[2, 1, 5, 4], [0, 0, 2, 8]], np.float32)  # 9 and 16 of 64 pixels.
    inside = np.asarray(metrics.box_mask(box, (8, 8)))
    a = np.where(inside, 1.0, 0.0)[..., None] * np.array([0.5, 0.25])  # [B, 8, 8, 2]
    np.testing.assert_allclose(metrics.energy_game(a, box), 1.0)
    uniform = np.ones((2, 8, 8, 3), np.float32)
    np.testing.assert_allclose(metrics.energy_game(uniform, box), [9 / 64, 16 / 64], rtol=1e-6)
    np.testing.assert_allclose(metrics.energy_game(uniform, inside), [9 / 64, 16 / 64], rtol=1e-6)
    # Negative attribution does not count; channels are summed with their signs.
    signed = np.where(inside, 1.0, -5.0)[..., None]
    np.testing.assert_allclose(metrics.energy_game(signed, box), 1.0)
    cancel = np.zeros((2, 8, 8, 2), np.float32)
    cancel[:, 7, 7] = [3.0, -3.0]  # Σ_c = 0 outside the box.
    cancel[:, 0, 1] = [1.0, 1.0]  # Outside box 0, inside box 1 (rows 0-1).
    np.testing.assert_allclose(metrics.energy_game(cancel, box), [0.0, 1.0])
    # A map [B, H, W] directly, and the all-zero map.
    np.testing.assert_allclose(metrics.energy_game(np.ones((2, 8, 8)), box), [9 / 64, 0.25])
    np.testing.assert_array_equal(metrics.energy_game(np.zeros((2, 8, 8, 1)), box), 0.0)
    with pytest.raises(ValueError, match="region"):
        metrics.energy_game(uniform, inside[:, :7])


def test_pointing_game():
    region = np.zeros((1, 9, 9), bool)
    region[0, 2:4, 2:4] = True  # Rows and columns 2, 3.

    def peak_at(i, j, channels=2):
        a = np.full((1, 9, 9, channels), 0.01, np.float32)
        a[0, i, j] = -1.0  # |a| counts.
        return a

    np.testing.assert_array_equal(metrics.pointing_game(peak_at(3, 2), region), [1.0])
    np.testing.assert_array_equal(metrics.pointing_game(peak_at(5, 3), region), [0.0])
    # Two rows below the region: a hit from tolerance 2 on.
    np.testing.assert_array_equal(metrics.pointing_game(peak_at(5, 3), region, tolerance=1), 0)
    np.testing.assert_array_equal(metrics.pointing_game(peak_at(5, 3), region, tolerance=2), 1)
    # Diagonal neighbour of the corner (3, 3): distance √2.
    np.testing.assert_array_equal(metrics.pointing_game(peak_at(4, 4), region, tolerance=1), 0)
    np.testing.assert_array_equal(metrics.pointing_game(peak_at(4, 4), region, tolerance=1.5), 1)
    box = np.array([[2, 2, 4, 4]], np.float32)
    np.testing.assert_array_equal(metrics.pointing_game(peak_at(2, 3), box), [1.0])
    # No peak (all zero) or no region: a miss.
    np.testing.assert_array_equal(metrics.pointing_game(np.zeros((1, 9, 9, 1)), ~region), 0)
    np.testing.assert_array_equal(
        metrics.pointing_game(peak_at(3, 3), np.zeros_like(region), tolerance=20), 0
    )
    with pytest.raises(ValueError, match="tolerance"):
        metrics.pointing_game(peak_at(3, 3), region, tolerance=-1)


def test_gini():
    n = 4 * 4 * 2
    uniform = -np.ones((1, 4, 4, 2), np.float32)
    onehot = np.zeros((1, 4, 4, 2), np.float32)
    onehot[0, 1, 2, 1] = -7.0
    np.testing.assert_allclose(metrics.gini(uniform), [0.0], atol=1e-6)
    np.testing.assert_allclose(metrics.gini(onehot), [(n - 1) / n], rtol=1e-6)
    # [0, 0, 1, 3]: 1 − 2 · ((1/4)(1.5/4) + (3/4)(0.5/4)) = 0.625.
    np.testing.assert_allclose(metrics.gini(np.array([[0.0, 3.0, 0.0, -1.0]])), [0.625])
    # Equal to the mean-absolute-difference form Σ_ij |v_i − v_j| / (2 n² mean(v)).
    v = np.abs(np.asarray(jax.random.normal(jax.random.key(0, impl="rbg"), (3, 40))))
    md = np.abs(v[:, :, None] - v[:, None, :]).sum((1, 2)) / (2 * 40**2 * v.mean(1))
    np.testing.assert_allclose(metrics.gini(v), md, rtol=1e-5)
    np.testing.assert_array_equal(metrics.gini(np.zeros((2, 5))), 0.0)


def two_class_linear(params, x):
    """Logits ``[Σ w ⊙ x, 0]``."""
    s = jnp.sum((x * params[None]).reshape(x.shape[0], -1), axis=1)
    return jnp.stack([s, jnp.zeros_like(s)], axis=1)


def test_retrieval():
    w = jnp.broadcast_to(jnp.array([[1.0, 1.0], [-3.0, 0.0]])[..., None], (2, 2, 2))  # C = 2
    x_adv = jnp.ones((2, 2, 2, 2))  # Logit 0 = 2 · (1 + 1 − 3) < 0: predicted class 1.
    assert np.all(np.argmax(two_class_linear(w, x_adv), -1) == 1)
    keeps = jnp.zeros((2, 2)).at[0, :].set(1.0)  # Mask on the positive weights.
    drops = jnp.zeros((2, 2)).at[1, 0].set(1.0)  # Mask on the negative weight.
    a = jnp.stack([keeps, drops])[..., None] * jnp.array([1.0, -0.5]).reshape(1, 1, 1, 2)
    hits = metrics.retrieval(two_class_linear, w, x_adv, a, jnp.array([0, 0]))
    np.testing.assert_array_equal(hits, [1.0, 0.0])
    np.testing.assert_array_equal(
        metrics.retrieval(two_class_linear, w, x_adv, a, jnp.array([1, 1])), [0.0, 1.0]
    )
    with pytest.raises(ValueError, match="clean_label"):
        metrics.retrieval(two_class_linear, w, x_adv, a, jnp.array([0.0, 0.0]))


def _quadrant_model(params, x):
    """Class ``c`` of 4 scores the ink of quadrant ``c`` of an 8x8 image: a known answer."""
    q = x[..., 0].reshape(x.shape[0], 2, 4, 2, 4).sum(axis=(2, 4))  # [B, 2, 2]
    return params * q.reshape(x.shape[0], 4)


def _quadrant(c: jax.Array) -> jax.Array:
    """``[B, 8, 8, 1]`` indicator of quadrant ``c`` (row-major: 0 TL, 1 TR, 2 BL, 3 BR)."""
    rows, cols = jnp.arange(8)[:, None] // 4, jnp.arange(8)[None, :] // 4
    return ((2 * rows + cols)[None] == c[:, None, None]).astype(jnp.float32)[..., None]


def test_retrieval_specificity_on_a_model_where_the_answer_is_known():
    b = 400
    keys = jax.random.split(jax.random.PRNGKey(0), 4)
    x_adv = jax.random.uniform(keys[0], (b, 8, 8, 1), minval=0.5, maxval=1.0)
    clean = jax.random.randint(keys[1], (b,), 0, 4)
    third = (clean + jax.random.randint(keys[2], (b,), 1, 4)) % 4  # Never the clean class.
    kw = dict(fraction=0.25, key=keys[3])  # 16 of 64 pixels: one quadrant.
    # A "map" that points at whatever class it is asked for: perfect retrieval, no evidence.
    any_class = metrics.retrieval_specificity(
        _quadrant_model, 1.0, x_adv, _quadrant(clean), _quadrant(third), clean, third, **kw
    )
    np.testing.assert_array_equal(any_class["clean"], 1.0)
    np.testing.assert_array_equal(any_class["other"], 1.0)
    np.testing.assert_array_equal(any_class["specificity"], 0.0)
    # A map that recovers the clean class's evidence whatever it is asked: specificity 1.
    faithful = metrics.retrieval_specificity(
        _quadrant_model, 1.0, x_adv, _quadrant(clean), _quadrant(clean), clean, third, **kw
    )
    np.testing.assert_array_equal(faithful["specificity"], 1.0)
    # A map of equal values: a random top quarter, so chance for both classes (not index ties,
    # which would always keep the first rows: quadrants 0 and 1).
    flat = jnp.ones_like(x_adv)
    tied = metrics.retrieval_specificity(
        _quadrant_model, 1.0, x_adv, flat, flat, clean, third, **kw
    )
    assert abs(float(jnp.mean(tied["specificity"]))) < 0.1
    assert 0.1 < float(jnp.mean(tied["clean"])) < 0.4
    # The soft mask (no fraction) of a one-quadrant map keeps only that quadrant as well.
    soft = metrics.retrieval(_quadrant_model, 1.0, x_adv, _quadrant(third), third)
    np.testing.assert_array_equal(soft, 1.0)


def test_spatial_coherence_orders_blob_noise_checkerboard_and_ignores_scale():
    key = jax.random.PRNGKey(0)
    rows, cols = jnp.mgrid[:16, :16]
    blob = jnp.exp(-((rows - 8.0) ** 2 + (cols - 8.0) ** 2) / 20.0)[None, ..., None]
    board = ((rows + cols) % 2).astype(jnp.float32)[None, ..., None]
    noise = jax.random.uniform(jax.random.PRNGKey(1), (64, 16, 16, 1))
    c = lambda a: metrics.spatial_coherence(a, key=key, num_permutations=16)  # noqa: E731
    assert float(c(blob)[0]) > 0.6
    assert abs(float(jnp.mean(c(noise)))) < 0.05  # i.i.d. noise: as smooth as shuffled.
    assert float(c(board)[0]) < -0.9
    np.testing.assert_allclose(c(blob * 37.0), c(blob), rtol=1e-5)  # Scale-free.
    np.testing.assert_array_equal(c(jnp.ones((2, 4, 4))), 0.0)  # Constant: no structure.
