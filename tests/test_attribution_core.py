"""Attribution core: scores, gradient, integrated gradients (rules, completeness, chunking),
noise smoothing; differentiability (finite differences, float64), jit, bad inputs."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxinterp import attribution, models

B = 3
SHAPE = (B, 4, 4, 1)


def _rbg(seed):
    """Keys of the "rbg" PRNG: XLA:CPU compiles threefry slowly."""
    return jax.random.key(seed, impl="rbg")


@pytest.fixture(scope="module")
def mlp():
    """A smooth (softplus) MLP, its float64 params, inputs [3, 4, 4, 1] and a score."""
    with jax.enable_x64(True):
        m = models.get_model("mlp", num_classes=10, activation="softplus", beta=3.0, hidden=(8, 6))
        x = jax.random.uniform(_rbg(0), SHAPE, jnp.float64)
        params = jax.jit(m.init)(_rbg(1), x[:1])
        params = jax.tree.map(lambda p: jnp.asarray(p, jnp.float64), params)
        y = jnp.array([0, 3, 7], jnp.int32)
    return m.apply_fn, params, x, y


# ----------------------------------------------------------------------------- scores


def test_class_score_kinds_and_targets(mlp):
    apply_fn, params, x, y = mlp
    with jax.enable_x64(True):

        @jax.jit
        def scores(z):
            out = {k: attribution.class_score(apply_fn, params, y, k)(z) for k in attribution.KINDS}
            return out, attribution.class_score(apply_fn, params, 4)(z), apply_fn(params, z)

        got, got4, logits = jax.tree.map(np.asarray, scores(x))
        p = np.exp(logits - logits.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        expected = {"logit": logits, "log_softmax": np.log(p), "softmax": p}
        for kind, table in expected.items():
            np.testing.assert_allclose(got[kind], table[np.arange(B), np.asarray(y)], rtol=1e-12)
        np.testing.assert_allclose(got4, logits[:, 4], rtol=1e-12)


def test_gradient_and_gradient_x_input_are_per_example(mlp):
    apply_fn, params, x, y = mlp
    with jax.enable_x64(True):
        score_fn = attribution.class_score(apply_fn, params, y)
        g, gxi = jax.jit(
            lambda z: (attribution.gradient(score_fn, z), attribution.gradient_x_input(score_fn, z))
        )(x)

        def one(xb, yb):  # a single example, as a batch of one
            return attribution.class_score(apply_fn, params, yb[None])(xb[None])[0]

        np.testing.assert_allclose(g, jax.jit(jax.vmap(jax.grad(one)))(x, y), rtol=1e-12)
        np.testing.assert_allclose(gxi, x * g, rtol=1e-15)


# ----------------------------------------------------------------------------- rules

_GL_IN = math.sqrt(3 / 7 - 2 / 7 * math.sqrt(6 / 5))
_GL_OUT = math.sqrt(3 / 7 + 2 / 7 * math.sqrt(6 / 5))
_W_IN, _W_OUT = (18 + math.sqrt(30)) / 36, (18 - math.sqrt(30)) / 36
RULES_N4 = {  # (alphas, weights) for n = 4, written out by hand.
    "riemann_left": ([0, 0.25, 0.5, 0.75], [0.25] * 4),
    "riemann_right": ([0.25, 0.5, 0.75, 1], [0.25] * 4),
    "riemann_middle": ([0.125, 0.375, 0.625, 0.875], [0.25] * 4),
    "riemann_trapezoid": ([0, 1 / 3, 2 / 3, 1], [1 / 8, 1 / 4, 1 / 4, 1 / 8]),  # Captum's
    "trapezoid": ([0, 1 / 3, 2 / 3, 1], [1 / 6, 1 / 3, 1 / 3, 1 / 6]),
    "gauss_legendre": (
        [(1 - _GL_OUT) / 2, (1 - _GL_IN) / 2, (1 + _GL_IN) / 2, (1 + _GL_OUT) / 2],
        [_W_OUT / 2, _W_IN / 2, _W_IN / 2, _W_OUT / 2],
    ),
}


def test_quadrature_by_hand_for_n4():
    assert set(RULES_N4) == set(attribution.METHODS)
    for method, (alphas, weights) in RULES_N4.items():
        a, w = attribution.quadrature(method, 4)
        np.testing.assert_allclose(a, alphas, rtol=0, atol=1e-15, err_msg=method)
        np.testing.assert_allclose(w, weights, rtol=0, atol=1e-15, err_msg=method)


@pytest.mark.parametrize("n", [2, 3, 5, 7])
def test_quadrature_matches_captum_rederivation(n):
    """Captum's nodes (torch.linspace there, numpy here) and step sizes, its trapezoid
    weights 1/n with halved ends (summing to (n-1)/n) included; `trapezoid` sums to 1."""
    captum_deltas = np.full(n, 1 / n)
    trap = captum_deltas.copy()
    trap[[0, -1]] /= 2
    t, v = np.polynomial.legendre.leggauss(n)
    expected = {
        "riemann_left": (np.linspace(0, 1 - 1 / n, n), captum_deltas),
        "riemann_right": (np.linspace(1 / n, 1, n), captum_deltas),
        "riemann_middle": (np.linspace(1 / (2 * n), 1 - 1 / (2 * n), n), captum_deltas),
        "riemann_trapezoid": (np.linspace(0, 1, n), trap),
        "trapezoid": (np.linspace(0, 1, n), trap * n / (n - 1)),
        "gauss_legendre": (0.5 * (1 + t), 0.5 * v),
    }
    for method, (alphas, weights) in expected.items():
        a, w = attribution.quadrature(method, n)
        np.testing.assert_allclose(a, alphas, atol=1e-15, err_msg=method)
        np.testing.assert_allclose(w, weights, atol=1e-15, err_msg=method)
        total = (n - 1) / n if method == "riemann_trapezoid" else 1.0
        assert math.isclose(w.sum(), total, rel_tol=1e-14)
    np.testing.assert_array_equal(attribution.quadrature("gausslegendre", n)[0], 0.5 * (1 + t))


# ----------------------------------------------------------------------------- IG


@pytest.mark.parametrize("method", [m for m in attribution.METHODS if m != "riemann_trapezoid"])
def test_every_rule_is_exact_on_a_linear_model(method):
    with jax.enable_x64(True):
        rng = np.random.default_rng(2)
        x, w, base = rng.normal(size=SHAPE), rng.normal(size=16), rng.normal(size=SHAPE[1:])

        def score_fn(z):
            return z.reshape(len(z), -1) @ w

        for baseline, xb in ((None, 0.0), (0.5, 0.5), (base, base[None])):  # base: [4, 4, 1]
            phi, delta = attribution.integrated_gradients(
                score_fn, x, baseline=baseline, num_steps=3, method=method, return_delta=True
            )
            np.testing.assert_allclose(phi, (x - xb) * w.reshape(1, 4, 4, 1), atol=1e-14)
            np.testing.assert_allclose(delta, 0.0, atol=1e-13)


def test_captum_riemann_trapezoid_misses_completeness_by_its_weight_sum():
    with jax.enable_x64(True):
        rng = np.random.default_rng(3)
        x, w = rng.normal(size=SHAPE), rng.normal(size=16)

        def score_fn(z):
            return z.reshape(len(z), -1) @ w

        for n in (2, 5):
            phi = attribution.integrated_gradients(
                score_fn, x, num_steps=n, method="riemann_trapezoid"
            )
            np.testing.assert_allclose(phi, (n - 1) / n * x * w.reshape(1, 4, 4, 1), atol=1e-14)


def test_gauss_legendre_integrates_a_cubic_exactly():
    """s = Σ x⁴: the path integrand is a cubic in α, exact for 2 Gauss–Legendre nodes."""
    with jax.enable_x64(True):
        x = jax.random.normal(_rbg(5), SHAPE, jnp.float64)

        def score_fn(z):
            return jnp.sum(z.reshape(len(z), -1) ** 4, axis=1)

        gl = attribution.integrated_gradients(score_fn, x, num_steps=2, method="gauss_legendre")
        np.testing.assert_allclose(gl, x**4, rtol=1e-12)
        mid = attribution.integrated_gradients(score_fn, x, num_steps=2, method="riemann_middle")
        assert not np.allclose(mid, x**4, rtol=1e-3)


def test_completeness_on_a_smooth_model(mlp):
    apply_fn, params, x, y = mlp
    with jax.enable_x64(True):
        score_fn = attribution.class_score(apply_fn, params, y)
        baseline = jax.random.uniform(_rbg(6), SHAPE, jnp.float64)
        ig = functools.partial(attribution.integrated_gradients, score_fn, return_delta=True)

        @jax.jit
        def run(z, b):
            coarse = ig(z, baseline=b, num_steps=1, method="riemann_left")[1]
            return ig(z, baseline=b, num_steps=64), coarse, score_fn(z) - score_fn(b)

        (phi, delta), coarse_delta, gap = run(x, baseline)
        assert np.all(np.abs(gap) > 1e-3)  # the 1% below is relative to a non-trivial gap
        np.testing.assert_allclose(jnp.sum(phi, axis=(1, 2, 3)), gap, rtol=1e-2)
        np.testing.assert_allclose(delta, jnp.sum(phi, axis=(1, 2, 3)) - gap, atol=1e-15)
        # One left-Riemann step is visibly incomplete, so the check above can fail.
        assert np.max(np.abs(coarse_delta)) > 1e-2 * np.max(np.abs(gap))


def _tiny_cnn_ig(batch, seed):
    """A tiny CNN's params, inputs ``[batch, 8, 8, 1]`` and ``ig(chunk_size) -> f(p, z)``,
    32-point integrated gradients of the class logit."""
    m = models.get_model(
        "cnn", num_classes=10, activation="softplus", beta=3.0, channels=(2, 2, 3, 3), hidden=5
    )
    x = jax.random.uniform(_rbg(seed), (batch, 8, 8, 1))
    params = jax.jit(m.init)(_rbg(0), x[:1])
    y = jnp.arange(batch) % 10

    def ig(chunk_size):
        def f(p, z):
            score_fn = attribution.class_score(m.apply_fn, p, y)
            return attribution.integrated_gradients(
                score_fn, z, num_steps=32, chunk_size=chunk_size
            )

        return f

    return params, x, ig


def test_chunked_matches_unchunked_with_less_memory():
    params, x, ig = _tiny_cnn_ig(8, 7)

    def build(chunk_size):
        return jax.jit(ig(chunk_size)).lower(params, x).compile()

    full, chunked = build(None), build(4)
    np.testing.assert_allclose(chunked(params, x), full(params, x), rtol=1e-5, atol=1e-7)
    temp_full = full.memory_analysis().temp_size_in_bytes
    temp_chunked = chunked.memory_analysis().temp_size_in_bytes
    assert temp_chunked < temp_full / 3, (temp_chunked, temp_full)


def test_auto_chunk_size_bounds_the_examples_of_a_pass():
    from jaxinterp.core.ops import AUTO_CHUNK_EXAMPLES, auto_chunk_size

    assert auto_chunk_size(32, 128, backend="cpu") == 4  # 8 passes of 512
    assert auto_chunk_size(4, 128, backend="cpu") is None  # 512: one pass
    assert auto_chunk_size(32, 128, backend="gpu") is None  # accelerators: one pass
    assert auto_chunk_size(3, 2048, backend="cpu") == 1  # one point is already too many
    for n in (2, 7, 25, 32, 50, 101):
        for e in (1, 3, 16, 100, 128, 500, 513):
            c = auto_chunk_size(n, e, backend="cpu")
            if n * e <= AUTO_CHUNK_EXAMPLES:
                assert c is None
            else:
                assert 1 <= c < n and (c * e <= AUTO_CHUNK_EXAMPLES or c == 1), (n, e, c)
                # Balanced: no more passes than the bound needs.
                assert -(-n // c) == -(-n // max(1, AUTO_CHUNK_EXAMPLES // e)), (n, e, c)


def test_ig_without_chunk_size_runs_bounded_passes_on_cpu_with_the_same_values():
    assert jax.default_backend() == "cpu"
    params, x, ig = _tiny_cnn_ig(40, 9)  # 32 points x 40 = 1280 examples
    auto, one_pass = ig(None), ig(32)
    assert "scan" in str(jax.make_jaxpr(auto)(params, x))
    assert "scan" not in str(jax.make_jaxpr(one_pass)(params, x))
    np.testing.assert_allclose(
        jax.jit(auto)(params, x), jax.jit(one_pass)(params, x), rtol=1e-5, atol=1e-7
    )


def test_chunked_ig_bounds_memory_when_differentiated():
    """The chunk body is rematerialised, so a gradient through IG keeps one chunk alive."""
    m = models.get_model("mlp", num_classes=10, activation="softplus", beta=3.0, hidden=(8, 6))
    x = jax.random.uniform(_rbg(8), (8, 8, 8, 1))
    params = jax.jit(m.init)(_rbg(0), x[:1])
    score_fn = attribution.class_score(m.apply_fn, params, jnp.arange(8) % 10)

    def temp_bytes(chunk_size):
        def f(z):
            phi = attribution.integrated_gradients(score_fn, z, num_steps=32, chunk_size=chunk_size)
            return jnp.sum(phi**2)

        compiled = jax.jit(jax.grad(f)).lower(x).compile()
        return compiled.memory_analysis().temp_size_in_bytes

    full, chunked = temp_bytes(None), temp_bytes(4)
    assert chunked < full / 3, (chunked, full)


def test_chunk_with_remainder_and_expected_ig(mlp):
    apply_fn, params, x, y = mlp
    with jax.enable_x64(True):
        score_fn = attribution.class_score(apply_fn, params, y, "log_softmax")
        ig = jax.jit(
            functools.partial(
                attribution.integrated_gradients, score_fn, num_steps=7, return_delta=True
            ),
            static_argnames="chunk_size",
        )
        baselines = jnp.stack([jnp.zeros(SHAPE), jnp.full(SHAPE, 0.5), x[::-1]])
        parts = [ig(x, baseline=b) for b in baselines]
        phi3, delta3 = ig(x, baseline=baselines[1], chunk_size=3)  # 7 = 2 * 3 + 1
        np.testing.assert_allclose(phi3, parts[1][0], rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(delta3, parts[1][1], atol=1e-14)
        for chunk_size in (None, 2):
            phi, delta = jax.jit(
                functools.partial(
                    attribution.expected_integrated_gradients,
                    score_fn,
                    num_steps=7,
                    chunk_size=chunk_size,
                    return_delta=True,
                )
            )(x, baselines)
            np.testing.assert_allclose(phi, sum(p for p, _ in parts) / 3, rtol=1e-12, atol=1e-15)
            np.testing.assert_allclose(delta, sum(d for _, d in parts) / 3, atol=1e-14)


# ----------------------------------------------------------------------------- smoothing


def test_smoothgrad_tends_to_the_gradient(mlp):
    apply_fn, params, x, y = mlp
    with jax.enable_x64(True):
        score_fn = attribution.class_score(apply_fn, params, y)

        @functools.partial(jax.jit, static_argnums=1)
        def sg(z, level):
            smoothed = attribution.smooth(attribution.gradient, num_samples=4, noise_level=level)
            return smoothed(score_fn, z, key=_rbg(8)), attribution.gradient(score_fn, z)

        tiny, g = sg(x, 1e-7)
        np.testing.assert_allclose(tiny, g, rtol=1e-5, atol=1e-7)
        far, _ = sg(x, 0.5)
        assert not np.allclose(far, g, rtol=1e-3, atol=1e-7)


@pytest.mark.parametrize("chunk_size", [None, 3])
def test_smoothing_statistics_match_the_documented_noise(mlp, chunk_size):
    apply_fn, params, x, y = mlp
    num_samples, level, key = 7, 0.2, _rbg(9)
    with jax.enable_x64(True):
        score_fn = attribution.class_score(apply_fn, params, y)

        @jax.jit
        def all_kinds(z, k):
            return {
                kind: attribution.smooth(
                    attribution.gradient,
                    num_samples=num_samples,
                    noise_level=level,
                    kind=kind,
                    chunk_size=chunk_size,
                )(score_fn, z, key=k)
                for kind in attribution.SMOOTHINGS
            }

        got = all_kinds(x, key)
        span = np.ptp(np.asarray(x).reshape(B, -1), axis=1).reshape(B, 1, 1, 1)
        normal = jax.jit(lambda k: jax.random.normal(k, SHAPE, jnp.float64))
        grad = jax.jit(functools.partial(attribution.gradient, score_fn))
        keys = jax.random.split(key, num_samples)
        a = np.stack([grad(x + level * span * normal(k)) for k in keys])
        np.testing.assert_allclose(got["smoothgrad"], a.mean(0), rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(got["smoothgrad_sq"], (a**2).mean(0), rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(got["vargrad"], a.var(0), rtol=1e-8, atol=1e-14)
        assert np.all(got["vargrad"] >= 0) and np.max(got["vargrad"]) > 0
        assert np.all(got["smoothgrad_sq"] >= got["smoothgrad"] ** 2)


def test_smooth_wraps_integrated_gradients(mlp):
    apply_fn, params, x, y = mlp
    with jax.enable_x64(True):
        score_fn = attribution.class_score(apply_fn, params, y)
        ig = functools.partial(attribution.integrated_gradients, num_steps=4)
        sig = attribution.smooth(ig, num_samples=2, noise_level=0.0)
        out, plain = jax.jit(lambda z: (sig(score_fn, z, key=_rbg(10)), ig(score_fn, z)))(x)
        np.testing.assert_allclose(out, plain, rtol=1e-12)


# ----------------------------------------------------------------------------- autodiff


def _directional_check(f, args, key, h=1e-5):
    """``<∇f(args), v>`` against a central difference along a random direction ``v``."""
    leaves, treedef = jax.tree.flatten(args)
    keys = jax.random.split(key, len(leaves))
    v = treedef.unflatten(
        [jax.random.normal(k, leaf.shape, leaf.dtype) for k, leaf in zip(keys, leaves, strict=True)]
    )
    value_and_grad = jax.jit(jax.value_and_grad(f))  # one compilation for all three points
    grads = value_and_grad(args)[1]
    analytic = sum(
        jnp.vdot(g, d) for g, d in zip(jax.tree.leaves(grads), jax.tree.leaves(v), strict=True)
    )
    plus, minus = (
        value_and_grad(jax.tree.map(lambda a, d, s=s: a + s * h * d, args, v))[0] for s in (1, -1)
    )
    numeric = (plus - minus) / (2 * h)
    assert abs(float(analytic)) > 1e-6
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6)


@pytest.mark.parametrize("chunk_size", [None, 3])
def test_grad_through_ig_matches_finite_differences(mlp, chunk_size):
    """w.r.t. x and params together; chunked (scan + remat + remainder) and not."""
    apply_fn, params, x, y = mlp
    with jax.enable_x64(True):

        def f(args):
            p, z = args
            score_fn = attribution.class_score(apply_fn, p, y)
            phi = attribution.integrated_gradients(score_fn, z, num_steps=8, chunk_size=chunk_size)
            return jnp.sum(phi**2)

        _directional_check(f, (params, x), _rbg(11))


def test_grad_through_smoothgrad_matches_finite_differences(mlp):
    apply_fn, params, x, y = mlp
    sg = attribution.smooth(attribution.gradient, num_samples=3, chunk_size=2)
    with jax.enable_x64(True):
        score_fn = attribution.class_score(apply_fn, params, y)
        _directional_check(lambda z: jnp.sum(sg(score_fn, z, key=_rbg(12)) ** 2), x, _rbg(13))


# ----------------------------------------------------------------------------- jit


def test_jitted_methods_do_not_recompile_on_new_inputs(mlp):
    apply_fn, params, _, y = mlp
    sg = attribution.smooth(attribution.gradient, num_samples=3, kind="vargrad")

    @jax.jit
    def explain(p, z, key):
        score_fn = attribution.class_score(apply_fn, p, y)
        return attribution.integrated_gradients(score_fn, z, num_steps=5), sg(score_fn, z, key=key)

    p32 = jax.tree.map(lambda a: a.astype(jnp.float32), params)
    for seed in (20, 21):
        ig, var = explain(p32, jax.random.uniform(_rbg(seed), SHAPE), _rbg(seed))
        assert ig.shape == var.shape == SHAPE and ig.dtype == jnp.float32
    assert explain._cache_size() == 1


# ----------------------------------------------------------------------------- bad input


def test_bad_inputs_raise_clear_errors(mlp):
    apply_fn, params, x, y = mlp
    x = x.astype(jnp.float32)
    p32 = jax.tree.map(lambda a: a.astype(jnp.float32), params)
    score_fn = attribution.class_score(apply_fn, p32, y)
    ig = attribution.integrated_gradients
    with pytest.raises(ValueError, match="kind must be one of .*got 'prob'"):
        attribution.class_score(apply_fn, p32, y, kind="prob")
    with pytest.raises(ValueError, match="target must be a Python int or an integer array"):
        attribution.class_score(apply_fn, p32, jnp.zeros((B, 1), jnp.int32))
    with pytest.raises(ValueError, match="target must hold one class per example"):
        jax.eval_shape(attribution.class_score(apply_fn, p32, y[:2]), x)
    with pytest.raises(ValueError, match="target 10 out of range"):
        jax.eval_shape(attribution.class_score(apply_fn, p32, 10), x)
    with pytest.raises(ValueError, match="score_fn must return one score per example"):
        attribution.gradient(lambda z: jnp.sum(z), x)
    with pytest.raises(TypeError, match="x must be a float array"):
        attribution.gradient(score_fn, jnp.zeros(SHAPE, jnp.int32))
    with pytest.raises(ValueError, match="method must be one of .*got 'simpson'"):
        ig(score_fn, x, method="simpson")
    with pytest.raises(ValueError, match="num_steps must be an integer >= 1"):
        ig(score_fn, x, num_steps=0)
    with pytest.raises(ValueError, match="num_steps must be an integer >= 2"):
        ig(score_fn, x, num_steps=1, method="riemann_trapezoid")
    with pytest.raises(ValueError, match="chunk_size must be an integer >= 1"):
        ig(score_fn, x, chunk_size=0)
    with pytest.raises(ValueError, match=r"baseline must broadcast to .*got shape \(4, 4, 2\)"):
        ig(score_fn, x, baseline=jnp.zeros((4, 4, 2)))
    with pytest.raises(ValueError, match="use expected_integrated_gradients"):
        ig(score_fn, x, baseline=jnp.zeros((2, *SHAPE)))
    with pytest.raises(ValueError, match=r"baselines must be \[S, B, ...\]"):
        attribution.expected_integrated_gradients(score_fn, x, jnp.zeros(SHAPE))
    with pytest.raises(ValueError, match="kind must be one of .*got 'mean'"):
        attribution.smooth(attribution.gradient, kind="mean")
    with pytest.raises(ValueError, match="num_samples must be an integer >= 1"):
        attribution.smooth(attribution.gradient, num_samples=0)
    with pytest.raises(ValueError, match="noise_level must be a finite number >= 0"):
        attribution.smooth(attribution.gradient, noise_level=-0.1)
    with pytest.raises(ValueError, match="attribution_fn must return an array shaped like x"):
        bad = attribution.smooth(lambda s, z: z[:, 0], num_samples=2)
        jax.eval_shape(lambda z: bad(score_fn, z, key=_rbg(0)), x)
