"""The β-softplus: values and derivatives to third order equal jax.nn.softplus's."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxinterp.models import get_activation, softplus_beta

# Large |x| (overflow of exp, underflow of the derivative), zero (the kinks of max and |·|
# inside the stable form), and ordinary values.
X = np.array([-200.0, -90.0, -30.0, -5.0, -1.0, -1e-3, 0.0, 1e-3, 0.5, 3.0, 20.0, 90.0, 1e4])


def _reference(beta: float):
    return lambda x: jax.nn.softplus(beta * x) / beta


def _derivative(f, order: int):
    for _ in range(order):
        f = jax.grad(f)
    return jax.jit(jax.vmap(f))


@pytest.mark.parametrize("beta", [1.0, 3.0, 20.0])
@pytest.mark.parametrize("order", [0, 1, 2, 3])
def test_softplus_matches_jax_nn_softplus_to_third_order(beta, order):
    x = jnp.asarray(X, jnp.float32)
    ours = _derivative(lambda v: softplus_beta(v, beta), order)(x)
    want = _derivative(_reference(beta), order)(x)
    assert ours.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(ours)))
    scale = beta ** max(order - 1, 0)  # The k-th derivative scales like β^(k-1).
    np.testing.assert_allclose(ours, want, rtol=2e-6, atol=2e-6 * scale)


def test_softplus_exact_at_zero_in_float64():
    # σ(0) = 1/2, σ'(0) = 1/4, σ''(0) = 0: no kink of max(z, 0) or |z| leaks in.
    with jax.enable_x64(True):
        f = lambda v: softplus_beta(v, 1.0)  # noqa: E731
        z = jnp.float64(0.0)
        assert float(f(z)) == pytest.approx(np.log(2.0), abs=1e-15)
        assert float(jax.grad(f)(z)) == pytest.approx(0.5, abs=1e-15)
        assert float(jax.grad(jax.grad(f))(z)) == pytest.approx(0.25, abs=1e-15)
        assert float(jax.grad(jax.grad(jax.grad(f)))(z)) == pytest.approx(0.0, abs=1e-15)


def test_forward_mode_equals_reverse_mode():
    x = jnp.asarray(X, jnp.float32)
    f = get_activation("softplus", beta=3.0)
    fwd = jax.vmap(jax.jacfwd(jax.jacfwd(f)))(x)
    rev = jax.vmap(jax.jacrev(jax.jacrev(f)))(x)
    np.testing.assert_allclose(fwd, rev, rtol=1e-6, atol=1e-7)


def test_softplus_float32_within_a_few_ulps_of_float64_on_a_dense_grid():
    # The float32 primal evaluates log1p(e^{-|z|}) as a polynomial (models.activations):
    # checked against float64 everywhere its value is a normal float32.
    z = np.concatenate(
        [np.linspace(-85.0, 85.0, 400_001), np.random.default_rng(0).normal(0, 4, 100_000)]
    ).astype(np.float32)
    got = np.asarray(jax.jit(lambda v: softplus_beta(v, 1.0))(jnp.asarray(z)), np.float64)
    want = np.logaddexp(z.astype(np.float64), 0.0)
    ulps = np.abs(got - want) / np.spacing(want.astype(np.float32)).astype(np.float64)
    assert float(ulps.max()) <= 3.0


def test_softplus_derivative_float32_within_a_few_ulps_of_float64_on_a_dense_grid():
    # σ(z) from the rounded output a, -expm1(-a) (models.activations): XLA:CPU's expm1 is
    # within 5 ulps, and a's rounding adds about 1.
    z = np.linspace(-80.0, 30.0, 200_001).astype(np.float32)
    got = np.asarray(jax.jit(jax.vmap(jax.grad(lambda v: softplus_beta(v, 1.0))))(z), np.float64)
    want = 1.0 / (1.0 + np.exp(-z.astype(np.float64)))
    ulps = np.abs(got - want) / np.spacing(want.astype(np.float32)).astype(np.float64)
    assert float(ulps.max()) <= 8.0
