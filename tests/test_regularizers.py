"""Gradient penalties: fast == autodiff (float64), against brute force, and the scale facts."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxinterp import models, regularizers
from jaxinterp.core import per_example_score
from jaxinterp.regularizers._engine import penalize_input_gradients

B = 3


@pytest.fixture(scope="module")
def tiny():
    """A smooth MLP on [B, 3, 3, 1] inputs, in float64."""
    with jax.enable_x64(True):
        m = models.get_model("mlp", num_classes=3, activation="softplus", beta=2.0, hidden=(8, 6))
        x = jax.random.uniform(jax.random.PRNGKey(0), (B, 3, 3, 1), jnp.float64)
        params = m.init(jax.random.PRNGKey(1), x[:1])
        params = jax.tree.map(lambda p: jnp.asarray(p, jnp.float64), params)
        y = jnp.array([0, 2, 1], jnp.int32)
    return m.apply_fn, params, x, y


FACTORIES = {
    "input_gradient_norm": lambda impl, **kw: regularizers.input_gradient_norm(impl=impl, **kw),
    "hessian_norm": lambda impl, **kw: regularizers.hessian_norm(impl=impl, num_probes=3, **kw),
    "gradient_alignment": lambda impl, **kw: regularizers.gradient_alignment(
        impl=impl, epsilon=0.2, **kw
    ),
    "curvature": lambda impl, **kw: regularizers.curvature(impl=impl, h=0.1, **kw),
}
VARIANTS = [
    ("input_gradient_norm", {"score": "loss"}),
    ("input_gradient_norm", {"score": "logit"}),
    ("input_gradient_norm", {"score": "log_softmax"}),
    ("hessian_norm", {"distribution": "gaussian"}),
    ("hessian_norm", {"distribution": "rademacher", "score": "log_softmax"}),
    ("gradient_alignment", {}),
    ("gradient_alignment", {"detach_source": False, "noise": "gaussian", "score": "loss"}),
    ("gradient_alignment", {"std": (0.5,), "lambda_l2": 1.0, "lambda_cos": 0.3}),
    ("curvature", {}),
]


@pytest.mark.parametrize("name, kwargs", VARIANTS)
def test_fast_matches_autodiff_in_value_and_params_gradient(tiny, name, kwargs):
    apply_fn, params, x, y = tiny
    key = jax.random.PRNGKey(7)
    with jax.enable_x64(True):
        out = {}
        for impl in ("fast", "autodiff"):
            pen = FACTORIES[name](impl, **kwargs)

            def value(p, pen=pen):
                return pen(apply_fn, p, x, y, key=key)[0]

            out[impl] = jax.jit(jax.value_and_grad(value))(params)
        (vf, gf), (va, ga) = out["fast"], out["autodiff"]
        assert vf.dtype == jnp.float64 and float(va) > 0
        np.testing.assert_allclose(vf, va, rtol=1e-10)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-12), gf, ga)
        assert max(float(jnp.max(jnp.abs(g))) for g in jax.tree.leaves(ga)) > 0


def _per_example_grads(apply_fn, params, x, y, score):
    def s(xb, yb):
        return per_example_score(apply_fn, params, xb[None], yb[None], score)[0]

    return jax.vmap(jax.jacrev(s))(x, y)


def test_input_gradient_norm_equals_brute_force(tiny):
    apply_fn, params, x, y = tiny
    with jax.enable_x64(True):
        for score in ("loss", "logit"):
            g = _per_example_grads(apply_fn, params, x, y, score)
            expected = jnp.mean(jnp.sum(g.reshape(B, -1) ** 2, axis=1))
            value, _ = regularizers.input_gradient_norm(score=score)(apply_fn, params, x, y)
            np.testing.assert_allclose(value, expected, rtol=1e-12)


@pytest.mark.parametrize("distribution", ["gaussian", "rademacher"])
def test_hessian_norm_approaches_frobenius_norm(tiny, distribution):
    apply_fn, params, x, y = tiny
    with jax.enable_x64(True):

        def s(xb, yb):
            return per_example_score(apply_fn, params, xb[None], yb[None], "logit")[0]

        h = jax.vmap(jax.hessian(s))(x, y).reshape(B, 9, 9)
        exact = jnp.mean(jnp.sum(h**2, axis=(1, 2)))
        pen = regularizers.hessian_norm(num_probes=4000, distribution=distribution)
        estimate, _ = jax.jit(lambda p: pen(apply_fn, p, x, y, key=jax.random.PRNGKey(3)))(params)
        np.testing.assert_allclose(estimate, exact, rtol=0.08)


def test_gradient_alignment_equals_the_formula_by_hand(tiny):
    apply_fn, params, x, y = tiny
    key = jax.random.PRNGKey(11)
    with jax.enable_x64(True):
        pen = regularizers.gradient_alignment(lambda_l2=0.5, lambda_cos=2.0, epsilon=0.1)
        value, terms = pen(apply_fn, params, x, y, key=key)
        delta = jax.random.uniform(key, x.shape, x.dtype, -1.0, 1.0) * 0.1
        g = _per_example_grads(apply_fn, params, x, y, "logit").reshape(B, -1)
        gn = _per_example_grads(apply_fn, params, x + delta, y, "logit").reshape(B, -1)
        l2 = np.mean(np.sum((g - gn) ** 2, axis=1))
        cos = np.sum(g * gn, axis=1) / (np.linalg.norm(g, axis=1) * np.linalg.norm(gn, axis=1))
        cosd = np.mean((1 - cos) / 2)
        np.testing.assert_allclose(terms["l2"], l2, rtol=1e-6)  # g − g' cancels digits
        np.testing.assert_allclose(terms["cosd"], cosd, rtol=1e-6)
        np.testing.assert_allclose(value, 0.5 * l2 + 2.0 * cosd, rtol=1e-6)


def test_alignment_scale_facts(tiny):
    apply_fn, params, x, y = tiny
    key = jax.random.PRNGKey(5)
    with jax.enable_x64(True):
        pen = regularizers.gradient_alignment(epsilon=0.3)
        _, base = pen(apply_fn, params, x, y, key=key)
        _, scaled = pen(lambda p, z: 3.0 * apply_fn(p, z), params, x, y, key=key)
        np.testing.assert_allclose(scaled["l2"], 9.0 * base["l2"], rtol=1e-10)  # l2 ∝ k²
        np.testing.assert_allclose(scaled["cosd"], base["cosd"], rtol=1e-10)  # cosd invariant
        for b in range(B):  # cosd(g, g') <= ‖g' − g‖² / ‖g‖², per example
            xb, yb = x[b : b + 1], y[b : b + 1]
            _, t = pen(apply_fn, params, xb, yb, key=key)
            g = _per_example_grads(apply_fn, params, xb, yb, "logit")
            assert float(t["cosd"]) <= float(t["l2"]) / float(jnp.sum(g**2)) + 1e-15


def test_curvature_matches_finite_difference_by_hand(tiny):
    apply_fn, params, x, y = tiny
    with jax.enable_x64(True):
        value, _ = regularizers.curvature(h=0.05)(apply_fn, params, x, y)
        g = _per_example_grads(apply_fn, params, x, y, "loss")
        z = 0.05 * jnp.sign(g) / jnp.sqrt(9.0)
        gz = _per_example_grads(apply_fn, params, x + z, y, "loss")
        np.testing.assert_allclose(value, jnp.mean(jnp.sum((gz - g).reshape(B, -1) ** 2, 1)))


def test_engine_points_from_the_first_gradient(tiny):
    """A later point given as a function of sg(g_0) equals passing that point; the first
    point must be an array."""
    apply_fn, params, x, y = tiny

    def functional(g, g_near):
        return jnp.sum((g_near - g) ** 2), {}

    with jax.enable_x64(True):
        g0 = _per_example_grads(apply_fn, params, x, y, "loss")
        shift = lambda g: x + 0.1 * jnp.tanh(g)  # noqa: E731
        for impl in ("fast", "autodiff"):

            def value(p, near, impl=impl):
                pts = [x, near]
                return penalize_input_gradients(functional, apply_fn, p, pts, y, "loss", impl)[0]

            v1, d1 = jax.value_and_grad(value)(params, shift)
            v2, d2 = jax.value_and_grad(value)(params, shift(g0))
            np.testing.assert_allclose(v1, v2, rtol=1e-12)
            jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-10), d1, d2)
        with pytest.raises(TypeError, match="first point must be an array"):
            penalize_input_gradients(functional, apply_fn, params, [shift, x], y, "loss", "fast")


def test_penalty_in_jit_does_not_recompile(tiny):
    apply_fn, params, x, y = tiny
    pen = regularizers.gradient_alignment()
    f = jax.jit(jax.grad(lambda p, xb, k: pen(apply_fn, p, xb, y, key=k)[0]))
    params32 = jax.tree.map(lambda p: p.astype(jnp.float32), params)
    for i in range(2):
        f(params32, x.astype(jnp.float32) + i, jax.random.PRNGKey(i))
    assert f._cache_size() == 1


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: regularizers.hessian_norm(num_probes=0), "num_probes must be an integer >= 1"),
        (lambda: regularizers.hessian_norm(distribution="uniform"), "distribution must be"),
        (lambda: regularizers.gradient_alignment(lambda_l2=-1.0), "lambda_l2 must be .* >= 0"),
        (lambda: regularizers.gradient_alignment(epsilon=2.0), "epsilon must be .* > 0 and <= 1"),
        (lambda: regularizers.gradient_alignment(epsilon=0.0), "epsilon must be .* > 0 and <= 1"),
        (lambda: regularizers.gradient_alignment(std=(0.0,)), "std\\[0\\] must be .* > 0"),
        (lambda: regularizers.gradient_alignment(noise="laplace"), "noise must be"),
        (lambda: regularizers.curvature(h=-0.1), "h must be .* > 0 and <= 1"),
        (lambda: regularizers.input_gradient_norm(score="prob"), "score must be one of .*'prob'"),
        (lambda: regularizers.input_gradient_norm(impl="slow"), "impl must be one of .*'slow'"),
    ],
)
def test_bad_hyperparameters(build, message):
    with pytest.raises(ValueError, match=message):
        build()
