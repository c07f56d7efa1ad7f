"""Stacked copies of a batch scored as one batch of the model (core.scores.scores_of_copies),
and the methods that score copies that way: the same values as vmapping the score."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxinterp import attribution, metrics, models
from jaxinterp.core import ops
from jaxinterp.core.scores import SCORES, class_score, scores_of_copies


def _tiny_cnn():
    model = models.get_model("cnn", num_classes=4, channels=(2, 2, 3, 3), hidden=8)
    x = jax.random.uniform(jax.random.key(0), (3, 8, 8, 1), jnp.float64)
    params = jax.jit(model.init)(jax.random.key(1), x[:1])
    params = jax.tree.map(lambda p: p.astype(jnp.float64), params)
    return model, params, x


@pytest.mark.parametrize("kind", SCORES)
@pytest.mark.parametrize("target", [2, "array"])
def test_class_score_folds_the_copies_into_one_batch_with_the_vmapped_values(kind, target):
    with jax.enable_x64(True):
        model, params, x = _tiny_cnn()
        t = jnp.asarray([0, 3, 1]) if target == "array" else target
        seen = []

        def apply_fn(p, v):
            seen.append(v.shape)  # recorded while tracing
            return model.apply_fn(p, v)

        score = class_score(apply_fn, params, t, kind)
        z = x[None] + 0.1 * jnp.arange(4.0)[:, None, None, None, None]  # [4, B, ...]
        folded = jax.jit(lambda z: scores_of_copies(score, z))(z)
        assert seen == [(12, 8, 8, 1)]  # one batch of n·B, not a vmap over n
        vmapped = jax.vmap(score)(z)
        assert folded.shape == (4, 3)
        np.testing.assert_allclose(folded, vmapped, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(folded[1], score(z[1]), rtol=1e-12, atol=1e-12)


def test_other_score_functions_are_vmapped_and_checked():
    z = jnp.arange(24.0).reshape(2, 3, 4)
    np.testing.assert_array_equal(scores_of_copies(lambda v: v.sum(-1), z), z.sum(-1))
    with pytest.raises(ValueError, match="one score per example"):
        scores_of_copies(lambda v: v, z)


@pytest.mark.parametrize("chunk", [None, 1, 2, 3, 5, 8])
def test_chunked_apply_covers_every_point_once_in_order(chunk):
    xs = {"a": jnp.arange(7.0), "b": jnp.arange(14.0).reshape(7, 2)}
    calls = []

    def fn(c):
        calls.append(c["a"].shape[0])
        return c["a"][:, None] * 10 + c["b"]

    out = ops.chunked_apply(fn, xs, chunk)
    np.testing.assert_array_equal(out, xs["a"][:, None] * 10 + xs["b"])
    c = 7 if chunk is None else min(chunk, 7)
    assert calls == [c] + ([7 % c] if 7 % c else [])
    np.testing.assert_array_equal(ops.chunked_map(lambda p: p["a"] * 10 + p["b"], xs, chunk), out)


@pytest.mark.parametrize(
    "method",
    [
        lambda s, x, a, k: attribution.occlusion(s, x, window=3, stride=2, chunk_size=4),
        lambda s, x, a, k: attribution.rise(s, x, key=k, num_masks=10, grid=3, chunk_size=4),
        lambda s, x, a, k: metrics.perturbation_curve(s, x, a, num_steps=6, chunk_size=4, key=k),
        lambda s, x, a, k: metrics.infidelity(s, x, a, key=k, num_samples=9, chunk_size=4),
        lambda s, x, a, k: attribution.integrated_gradients(s, x, num_steps=7, chunk_size=3),
        lambda s, x, a, k: attribution.smooth(
            attribution.gradient_x_input, num_samples=5, chunk_size=2, kind="vargrad"
        )(s, x, key=k),
    ],
    ids=["occlusion", "rise", "perturbation_curve", "infidelity", "ig", "vargrad_gxi"],
)
def test_methods_scoring_copies_give_the_vmapped_values(method):
    """A class score (copies folded into the batch) against the same score as a plain
    function (copies vmapped): equal in float64."""
    with jax.enable_x64(True):
        model, params, x = _tiny_cnn()
        y = jnp.asarray([0, 3, 1])
        score = class_score(model.apply_fn, params, y, "softmax")
        plain = lambda v: score(v)  # noqa: E731  (not a class score: vmapped)
        a = jax.random.normal(jax.random.key(2), x.shape, x.dtype)
        k = jax.random.key(3)
        folded = jax.jit(lambda x: method(score, x, a, k))(x)
        vmapped = jax.jit(lambda x: method(plain, x, a, k))(x)
        assert np.all(np.isfinite(folded))
        np.testing.assert_allclose(folded, vmapped, rtol=1e-10, atol=1e-12)


def test_attributions_of_copies_vmaps_other_methods_and_checks_their_shape():
    from jaxinterp.attribution._gradient import attributions_of_copies

    z = jax.random.normal(jax.random.key(0), (3, 2, 5))
    score = lambda v: jnp.sum(v**3, axis=-1)  # noqa: E731
    doubled = attributions_of_copies(lambda s, x: 2 * attribution.gradient(s, x), score, z)
    np.testing.assert_allclose(doubled, 6 * z**2, rtol=1e-6)
    np.testing.assert_allclose(
        attributions_of_copies(attribution.gradient_x_input, score, z), 3 * z**3, rtol=1e-6
    )
    with pytest.raises(ValueError, match="shaped like x"):
        attributions_of_copies(lambda s, x: x[:, :2], score, z)
