"""Tests for boundary search (PGD ladder + CW-L2) and boundary attributions (BSM, BIG, BSG)."""

from __future__ import annotations

import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxinterp import data
from jaxinterp.attacks import margin_loss
from jaxinterp.attacks._boundary import DEFAULT_EPSILONS, boundary_search
from jaxinterp.attacks._carlini_wagner import carlini_wagner_l2
from jaxinterp.attacks._pgd import pgd
from jaxinterp.attribution import class_score
from jaxinterp.attribution._boundary import big, bsg, bsm
from jaxinterp.attribution._gradient import gradient
from jaxinterp.attribution._integrated_gradients import integrated_gradients
from jaxinterp.attribution._smooth import smooth
from tests._fitting import fit_digits_mlp

NUM_EXAMPLES = 32


def _key(seed: int) -> jax.Array:
    return jax.random.key(seed, impl="rbg")  # threefry compiles slowly on XLA:CPU.


def _jit(fun, **kwargs):
    # Compile-bound on CPU: XLA's backend optimisations are not worth it here.
    return jax.jit(fun, compiler_options={"xla_backend_optimization_level": 0}, **kwargs)


def _l2(v) -> np.ndarray:
    v = np.asarray(v, np.float64)
    return np.sqrt(np.sum(np.square(v.reshape(v.shape[0], -1)), axis=1))


@pytest.fixture(scope="module")
def setup(data_dir):
    """An MLP trained for 150 full-batch Adam steps on digits, and correctly classified tests."""
    test = data.load_split("digits", "test", data_dir=data_dir)
    _, model, params = fit_digits_mlp(data_dir, num_steps=150, key=_key(0))
    x, y = jnp.asarray(test.images), jnp.asarray(test.labels)
    ok = np.flatnonzero(np.asarray(jnp.argmax(model.apply_fn(params, x), -1) == y))
    assert ok.size > 0.9 * x.shape[0]
    x, y = x[ok[:NUM_EXAMPLES]], y[ok[:NUM_EXAMPLES]]
    margins = -margin_loss(model.apply_fn(params, x), y)  # f_y - max_{j≠y} f_j > 0
    return types.SimpleNamespace(
        apply_fn=model.apply_fn, params=params, x=x, y=y, clean_margin=float(jnp.median(margins))
    )


@pytest.fixture(scope="module")
def search(setup):
    """The default search, jitted once and run once; shared by the tests below."""
    fn = _jit(boundary_search(), static_argnums=0)
    return types.SimpleNamespace(
        fn=fn, res=fn(setup.apply_fn, setup.params, setup.x, setup.y, key=_key(1))
    )


def _margin(setup, points) -> np.ndarray:
    """``max_{j≠y} f_j - f_y``: > 0 exactly when misclassified (ties aside)."""
    return np.asarray(margin_loss(setup.apply_fn(setup.params, points), setup.y))


def test_boundary_points_misclassified_closest_and_on_boundary(setup, search):
    res, x = search.res, np.asarray(setup.x)
    point, dist = np.asarray(res.point), np.asarray(res.distance)
    assert res.found.all()  # A trained MLP on 8x8 digits is never robust at L2 radius 1.1.
    assert np.all(np.argmax(setup.apply_fn(setup.params, res.point), -1) != np.asarray(setup.y))
    # Near the boundary: after 10 bisection steps the margin is at most the margin change
    # along the last bracket (~2^-10 of the segment's); clean margins are ~7 (median).
    margin = _margin(setup, res.point)
    assert np.all(margin > 0) and np.all(margin < 0.02 * setup.clean_margin), margin.max()
    assert point.min() >= 0.0 and point.max() <= 1.0
    np.testing.assert_allclose(dist, _l2(point - x), rtol=1e-5, atol=1e-6)

    # The raw candidates' flags are their misclassification (float32 slack at the boundary).
    for cand, found in ((res.pgd_point, res.pgd_found), (res.cw_point, res.cw_found)):
        m = _margin(setup, cand)
        assert np.all(np.where(np.asarray(found), m > -1e-5, m < 1e-5))
    d_pgd = np.where(res.pgd_found, _l2(np.asarray(res.pgd_point) - x), np.inf)
    d_cw = np.where(res.cw_found, _l2(np.asarray(res.cw_point) - x), np.inf)
    # Closest: refinement of the nearer candidate, on its segment from x, never farther.
    assert np.all(dist <= np.minimum(d_pgd, d_cw) * (1 + 1e-6))
    nearer = np.where((d_cw < d_pgd)[:, None, None, None], res.cw_point, res.pgd_point)
    t = (dist / np.minimum(d_pgd, d_cw))[:, None, None, None]
    np.testing.assert_allclose(point - x, t * (nearer - x), atol=1e-5)
    assert np.any(d_cw < d_pgd) and np.any(d_pgd < d_cw)  # Both sources win somewhere.


def test_pgd_ladder_keeps_smallest_successful_radius(setup, search):
    """Recomputes the ladder rung by rung with the documented key split."""
    eps = DEFAULT_EPSILONS
    attacks = [pgd(epsilon=e, num_steps=40, norm="l2") for e in eps]

    @_jit
    def ladder(params, x, y, keys):
        return jnp.stack(
            [a(setup.apply_fn, params, x, y, key=keys[m]) for m, a in enumerate(attacks)]
        )

    keys = jax.random.split(_key(1), len(eps))
    rungs = np.asarray(ladder(setup.params, setup.x, setup.y, keys))  # [M, B, ...]
    margins = np.stack([_margin(setup, r) for r in rungs])  # [M, B]
    first = np.argmax(margins > 0, axis=0)
    clear = np.all(np.abs(margins) > 1e-3, axis=0) & (margins > 0).any(axis=0)
    assert clear.sum() > NUM_EXAMPLES // 2
    want = rungs[first, np.arange(NUM_EXAMPLES)]
    np.testing.assert_allclose(np.asarray(search.res.pgd_point)[clear], want[clear], atol=1e-4)
    assert _l2(want - np.asarray(setup.x))[clear].max() <= eps[-1] * (1 + 1e-5)


def test_search_without_refinement_returns_nearer_raw_candidate(setup):
    fn = _jit(
        boundary_search(
            epsilons=(0.3, 0.9), pgd_steps=10, cw_steps=30, cw_binary_search_steps=3, refine_steps=0
        ),
        static_argnums=0,
    )
    res = fn(setup.apply_fn, setup.params, setup.x, setup.y, key=_key(2))
    x = np.asarray(setup.x)
    d_pgd = np.where(res.pgd_found, _l2(np.asarray(res.pgd_point) - x), np.inf)
    d_cw = np.where(res.cw_found, _l2(np.asarray(res.cw_point) - x), np.inf)
    np.testing.assert_array_equal(res.found, np.asarray(res.pgd_found) | np.asarray(res.cw_found))
    np.testing.assert_allclose(res.distance, np.minimum(d_pgd, d_cw), rtol=1e-5)
    nearer = np.where((d_cw < d_pgd)[:, None, None, None], res.cw_point, res.pgd_point)
    found = np.asarray(res.found)
    np.testing.assert_array_equal(np.asarray(res.point)[found], nearer[found])
    assert np.all(_margin(setup, res.point)[found] > 0)


def test_search_reports_failure(setup):
    """Radius 1e-3 and a single CW step (which only scores x itself) cannot flip a label."""
    fn = _jit(
        boundary_search(epsilons=(1e-3,), pgd_steps=1, cw_steps=1, cw_binary_search_steps=1),
        static_argnums=0,
    )
    res = fn(setup.apply_fn, setup.params, setup.x, setup.y, key=_key(3))
    assert not np.asarray(res.found).any()
    assert np.all(np.isinf(res.distance)) and not np.asarray(res.cw_found).any()
    np.testing.assert_array_equal(res.point, setup.x)
    np.testing.assert_array_equal(res.cw_point, setup.x)
    np.testing.assert_array_equal(res.pgd_point, setup.x)


def test_cw_in_bounds_and_success_mask(setup, search):
    """A weak CW (one round, 20 steps) in a [-1, 1] box: some examples fail."""
    cw = _jit(
        carlini_wagner_l2(num_steps=20, learning_rate=0.05, initial_const=1.0,
                          binary_search_steps=1, bounds=(-1.0, 1.0)),
        static_argnums=0,
    )  # fmt: skip
    apply_fn = lambda p, z: setup.apply_fn(p, (z + 1.0) / 2.0)  # noqa: E731
    z = 2.0 * setup.x - 1.0
    z_adv, success = cw(apply_fn, setup.params, z, setup.y)
    z_adv, success = np.asarray(z_adv), np.asarray(success)
    assert z_adv.dtype == np.float32 and success.dtype == np.bool_
    assert z_adv.min() >= -1.0 and z_adv.max() <= 1.0
    assert success.any() and not success.all()  # Deterministic here: 28 of 32 succeed.
    m = np.asarray(margin_loss(apply_fn(setup.params, z_adv), setup.y))
    assert np.all(m[success] > 0)
    np.testing.assert_array_equal(z_adv[~success], np.asarray(z)[~success])
    # The default CW inside the search succeeds everywhere, with margins near 0.
    assert np.asarray(search.res.cw_found).all()
    assert np.all(_margin(setup, search.res.cw_point) < 0.05 * setup.clean_margin)


def test_big_bsm_bsg_match_core_attributions(setup, search):
    """Each boundary attribution and its core counterpart, jitted alike: identical programs."""
    apply_fn, y = setup.apply_fn, setup.y

    def run(boundary: bool):
        @_jit
        def f(params, x, point, key):
            score_fn = class_score(apply_fn, params, y, "logit")
            if boundary:
                return (
                    big(score_fn, x, point, num_steps=16, return_delta=True),
                    bsm(score_fn, point),
                    bsg(score_fn, point, key=key, num_samples=4, noise_level=0.1),
                    score_fn(x) - score_fn(point),
                )
            ig = integrated_gradients(
                score_fn, x, baseline=point, num_steps=16, method="trapezoid",
                return_delta=True,
            )  # fmt: skip
            sg = smooth(gradient, num_samples=4, noise_level=0.1)(score_fn, point, key=key)
            return ig, gradient(score_fn, point), sg, score_fn(x) - score_fn(point)

        return f(setup.params, setup.x, search.res.point, _key(4))

    got, want = run(True), run(False)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_array_equal(a, b)
    # Completeness: Σ BIG ≈ f_y(x) - f_y(x'), the drop of the true-class logit to the boundary.
    (_, delta), _, _, gap = got
    assert np.all(gap > 0) and np.all(np.abs(np.asarray(delta)) < 0.05 * gap)


def test_jit_no_recompilation(setup, search):
    res = search.fn(setup.apply_fn, setup.params, 1.0 - setup.x, (setup.y + 1) % 10, key=_key(5))
    assert search.fn._cache_size() == 1
    assert not np.allclose(res.point, search.res.point)

    apply_fn = setup.apply_fn

    @_jit
    def attributions(params, x, y, point, key):
        score_fn = class_score(apply_fn, params, y, "logit")
        return (
            big(score_fn, x, point, num_steps=8),
            bsm(score_fn, point),
            bsg(score_fn, point, key=key, num_samples=2, noise_level=0.1),
        )

    a = attributions(setup.params, setup.x, setup.y, search.res.point, _key(6))
    b = attributions(setup.params, 1.0 - setup.x, setup.y, res.point, _key(7))
    assert attributions._cache_size() == 1
    assert not np.allclose(a[0], b[0])


@pytest.mark.parametrize(
    ("factory", "kwargs", "match"),
    [
        (carlini_wagner_l2, {"num_steps": 0}, "num_steps must be an integer >= 1"),
        (carlini_wagner_l2, {"binary_search_steps": 1.5}, "binary_search_steps must be"),
        (carlini_wagner_l2, {"learning_rate": 0.0}, "learning_rate must be a finite number"),
        (carlini_wagner_l2, {"initial_const": -1.0}, "initial_const must be"),
        (carlini_wagner_l2, {"confidence": -0.5}, "confidence must be a finite number >= 0"),
        (carlini_wagner_l2, {"bounds": None}, "bounds must be a finite pair"),
        (carlini_wagner_l2, {"bounds": (1.0, 0.0)}, "lo < hi"),
        (boundary_search, {"epsilons": ()}, "strictly increasing"),
        (boundary_search, {"epsilons": (0.5, 0.3)}, "strictly increasing"),
        (boundary_search, {"epsilons": (0.1, -1.0)}, "epsilons"),
        (boundary_search, {"epsilons": 0.5}, "epsilons must be a sequence"),
        (boundary_search, {"pgd_steps": 0}, "pgd_steps must be an integer >= 1"),
        (boundary_search, {"pgd_step_size": 0.0}, "pgd_step_size"),
        (boundary_search, {"pgd_loss": "hinge"}, "pgd_loss must be one of"),
        (boundary_search, {"cw_steps": 0}, "cw_steps must be an integer >= 1"),
        (boundary_search, {"cw_lr": -1.0}, "cw_lr must be"),
        (boundary_search, {"cw_binary_search_steps": 0}, "cw_binary_search_steps must be"),
        (boundary_search, {"refine_steps": -1}, "refine_steps must be an integer >= 0"),
        (boundary_search, {"bounds": None}, "bounds must be a finite pair"),
    ],
)
def test_bad_hyperparameters_raise(factory, kwargs, match):
    with pytest.raises(ValueError, match=match):
        factory(**kwargs)


def test_bad_calls_raise(setup):
    x, y = setup.x[:2], setup.y[:2]
    # Without a key the ladder starts from x: deterministic, and a valid search result.
    search = boundary_search(epsilons=(0.1,), cw_steps=5, cw_binary_search_steps=2)
    first = search(setup.apply_fn, setup.params, x, y)
    again = search(setup.apply_fn, setup.params, x, y, key=None)
    np.testing.assert_array_equal(first.x_adv, again.x_adv)
    assert first.point is first.x_adv
    with pytest.raises(ValueError, match="x lies outside bounds"):
        carlini_wagner_l2()(setup.apply_fn, setup.params, x + 2.0, y)
    score_fn = class_score(setup.apply_fn, setup.params, y, "logit")
    with pytest.raises(ValueError, match="boundary_point must have the shape of x"):
        big(score_fn, x, x[:1])
    with pytest.raises(TypeError, match="not baseline="):
        big(score_fn, x, x, baseline=x)
    with pytest.raises(ValueError, match="num_samples must be an integer >= 1"):
        bsg(score_fn, x, key=_key(0), num_samples=0)


@pytest.mark.parametrize(
    ("random_start", "fractions"), [(False, (1, 2, 4, 8)), (True, (1, 2, 4, 8)), (True, (1,))]
)
def test_the_ladder_on_the_unbroken_examples_alone_equals_every_radius_on_all(
    setup, random_start, fractions
):
    """Each radius attacks only the examples no smaller one broke, all radii in one scan:
    the same PGD candidates as one ``attacks.pgd`` per radius on the whole batch (float64),
    in sub-batches or (``sub_batch_fractions=(1,)``) on the whole batch."""
    eps = (0.3, 0.6, 1.0, 1.5)
    with jax.enable_x64(True):
        params = jax.tree.map(lambda p: p.astype(jnp.float64), setup.params)
        x, y = setup.x.astype(jnp.float64), setup.y
        key = _key(4) if random_start else None
        # No CW (one step, never merged in), so pgd_point is the ladder's result alone.
        search = boundary_search(
            epsilons=eps, pgd_steps=8, cw_steps=1, refine_steps=0, sub_batch_fractions=fractions
        )
        res = _jit(search, static_argnums=0)(setup.apply_fn, params, x, y, key=key)
        keys = jax.random.split(key, len(eps)) if random_start else [None] * len(eps)
        point, found = x, np.zeros(x.shape[0], bool)
        first = []
        for e, k in zip(eps, keys, strict=True):
            attack = pgd(epsilon=e, num_steps=8, norm="l2", random_start=random_start)
            x_adv = _jit(attack, static_argnums=0)(setup.apply_fn, params, x, y, key=k)
            take = np.asarray(margin_loss(setup.apply_fn(params, x_adv), y) > 0) & ~found
            point = np.where(take.reshape((-1,) + (1,) * (x.ndim - 1)), x_adv, point)
            found |= take
            first.append(found.mean())
    # Broken at different radii, so the later radii run on part of the batch.
    assert 0 < first[0] and first[1] < 1, first
    np.testing.assert_array_equal(res.pgd_found, found)
    np.testing.assert_allclose(res.pgd_point, point, rtol=0, atol=1e-12)
