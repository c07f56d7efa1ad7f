"""APGD, restarts and robust accuracy, on linear models whose minimal perturbation is known.

For logits ``z = Wᵀx + b`` and no clipping, class ``o`` beats the label ``y`` inside the
L∞ ball of radius ε iff ``ε · ‖w_y − w_o‖₁ > m_o`` with ``m_o = z_y − z_o`` (``‖·‖₂`` for the
L2 ball), so an example can be broken iff ``r = min_o m_o / ‖w_y − w_o‖ < ε``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxinterp import attacks, metrics
from jaxinterp.experiments import metric_suite

B, D, K = 48, 6, 5
MARGIN = 0.03  # Examples with |r/ε − 1| below this are not judged.


def _key(seed: int = 0) -> jax.Array:
    return jax.random.key(seed, impl="rbg")


def _jit(fun, **kwargs):
    return jax.jit(fun, compiler_options={"xla_backend_optimization_level": 0}, **kwargs)


def linear_apply(params, x):
    return x.reshape(x.shape[0], -1) @ params["w"] + params["b"][None]


def _linear(seed: int = 0, two_classes: bool = False):
    """A K-class linear model and ``B`` correctly classified examples: the first ``B − 16``
    inside ``[0.3, 0.7]`` (never clipped by the bounds), the last 16 on the box's faces.
    ``two_classes``: classes 2… get a bias of −100, so only classes 0 and 1 ever compete."""
    kw, kb, kx = jax.random.split(_key(seed), 3)
    b = 0.3 * jax.random.normal(kb, (K,))
    params = {"w": jax.random.normal(kw, (D, K)), "b": b.at[2:].add(-100.0 * two_classes)}
    x = jax.random.uniform(kx, (B, D), minval=0.3, maxval=0.7)
    x = x.at[-16:].set(jnp.round(x[-16:]))  # rounding 0.3..0.7 puts each value at 0 or 1
    y = jnp.argmax(linear_apply(params, x), -1)
    return params, x, y


def _check_attack(x_adv, x, epsilon: float, ord_: float = np.inf) -> None:
    """``x_adv`` is in the ε-ball around ``x`` (L∞ or L2) and inside ``[0, 1]``."""
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype
    assert float(jnp.max(jnp.linalg.norm(x_adv - x, ord=ord_, axis=1))) <= epsilon * (1 + 1e-5)
    assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0


def _min_radius(params, x, y, ord_: float) -> np.ndarray:
    """``r_b = min_{o≠y} m_o / ‖w_y − w_o‖``: the least ε that breaks example ``b``."""
    z, w, y = np.asarray(linear_apply(params, x)), np.asarray(params["w"]), np.asarray(y)
    r = np.full(len(y), np.inf)
    for b, yb in enumerate(y):
        for o in range(w.shape[1]):
            if o != yb:
                gap = z[b, yb] - z[b, o]
                r[b] = min(r[b], gap / np.linalg.norm(w[:, yb] - w[:, o], ord_))
    return r


def _broken(params, x_adv, y) -> np.ndarray:
    return np.asarray(jnp.argmax(linear_apply(params, x_adv), -1) != y)


def _check_exact(r: np.ndarray, broken: np.ndarray, epsilon: float) -> None:
    """Broken exactly where ``r < ε``, on the interior examples, margins aside."""
    ratio, broken = r[: B - 16] / epsilon, broken[: B - 16]
    judged = np.abs(ratio - 1) > MARGIN
    assert (ratio < 1 - MARGIN).sum() >= 8 and (ratio > 1 + MARGIN).sum() >= 4, "a weak test"
    np.testing.assert_array_equal(broken[judged], ratio[judged] < 1, err_msg=str(ratio))


def test_checkpoint_schedule_follows_the_reference_recurrence():
    # N = 100: the paper's p_j = 0, .22, .41, .57, .70, .80, .87, .93, .99 times N.
    assert attacks.apgd_checkpoints(100) == (22, 41, 57, 70, 80, 87, 93, 99)
    p = [0.0, 0.22]
    while p[-1] + max(p[-1] - p[-2] - 0.03, 0.06) <= 1:
        p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
    assert tuple(math.ceil(round(v * 100, 6)) for v in p[1:]) == attacks.apgd_checkpoints(100)
    # Small N: the integer windows max(⌊.22N⌋, 1), shrinking by max(⌊.03N⌋, 1) down to
    # max(⌊.06N⌋, 1), as the reference code counts them.
    assert attacks.apgd_checkpoints(10) == tuple(range(2, 11))
    assert attacks.apgd_checkpoints(50) == (11, 21, 30, 38, 45)  # then 51 > 50
    assert attacks.apgd_checkpoints(1) == (1,)


def test_dlr_losses_on_a_hand_example():
    z = jnp.array([[3.0, 1.0, 2.0, 0.0], [3.0, 1.0, 2.0, 0.0]])
    y = jnp.array([0, 2])
    # Sorted 3 > 2 > 1 > 0: z_π1 − z_π3 = 2; the best other class is 2 (for y=0) or 3 (y=2).
    np.testing.assert_allclose(attacks.dlr_loss(z, y), [-0.5, 0.5], rtol=1e-6)
    # Targeted toward t: −(z_y − z_t) / (z_π1 − (z_π3 + z_π4)/2) = −(z_y − z_t) / 2.5.
    t = jnp.array([3, 1])
    np.testing.assert_allclose(attacks.dlr_targeted_loss(z, y, t), [-1.2, -0.4], rtol=1e-6)
    # Shift and scale invariant.
    np.testing.assert_allclose(attacks.dlr_loss(4.0 * z - 7.0, y), [-0.5, 0.5], rtol=1e-5)
    with pytest.raises(ValueError, match="K >= 3"):
        attacks.dlr_loss(z[:, :2], jnp.array([0, 1]))
    with pytest.raises(ValueError, match="K >= 4"):
        attacks.dlr_targeted_loss(z[:, :3], y, jnp.array([1, 0]))


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"epsilon": 0.0}, ValueError, "epsilon must be a finite number > 0"),
        ({"epsilon": "0.1"}, TypeError, "epsilon must be a finite number"),
        ({"num_steps": 0}, ValueError, "num_steps must be an integer >= 1"),
        ({"num_steps": 10.0}, TypeError, "num_steps must be an integer"),
        ({"loss": "margin"}, ValueError, "loss must be one of 'ce', 'dlr', 'dlr_targeted'"),
        ({"norm": "l1"}, ValueError, "norm must be one of"),
        ({"num_restarts": 0}, ValueError, "num_restarts must be an integer >= 1"),
        ({"num_target_classes": True}, TypeError, "num_target_classes must be an integer"),
        ({"rho": 0.0}, ValueError, "rho must be a finite number > 0 and <= 1"),
        ({"rho": 1.5}, ValueError, "rho must be a finite number > 0 and <= 1"),
        ({"epsilon": 2.0}, ValueError, "outside the input range"),
        ({"bounds": (1.0, 0.0)}, ValueError, "lo < hi"),
    ],
)
def test_bad_hyperparameters_raise(kwargs, error, match):
    with pytest.raises(error, match=match):
        attacks.apgd(**{"epsilon": 0.1, **kwargs})


def test_bad_calls_raise():
    params, x, y = _linear()
    three = {"w": params["w"][:, :3], "b": params["b"][:3]}
    with pytest.raises(ValueError, match="needs K >= 4 classes"):
        attacks.apgd(epsilon=0.1, loss="dlr_targeted")(linear_apply, three, x, y % 3)
    with pytest.raises(TypeError, match="key is required with num_restarts=2"):
        attacks.apgd(epsilon=0.1, num_restarts=2)(linear_apply, params, x, y)
    pgd = attacks.pgd(epsilon=0.1, num_steps=2)
    with pytest.raises(TypeError, match="key is required"):
        attacks.with_restarts(pgd, 3)(linear_apply, params, x, y)
    with pytest.raises(TypeError, match="attack must be callable"):
        attacks.with_restarts("pgd", 2)
    with pytest.raises(ValueError, match="num_restarts must be an integer >= 1"):
        attacks.with_restarts(pgd, 0)
    for bad, error, match in [
        ([], ValueError, "non-empty sequence"),
        ("pgd", TypeError, "must be a non-empty sequence"),
        ([pgd, 3], TypeError, r"attacks\[1\] must be callable"),
        ({"clean": pgd}, ValueError, "reserved"),
        ({1: pgd}, TypeError, "names must be strings"),
    ]:
        with pytest.raises(error, match=match):
            metrics.robust_accuracy(linear_apply, params, x, y, bad)


def test_apgd_linf_breaks_exactly_the_breakable_examples():
    eps = 0.07
    ce = _jit(attacks.apgd(epsilon=eps, num_steps=30), static_argnums=0)
    # Two competing classes: the CE gradient's sign is the optimal L∞ direction.
    params, x, y = _linear(seed=0, two_classes=True)
    x_adv = ce(linear_apply, params, x, y, key=_key(1))
    _check_attack(x_adv, x, eps)
    _check_exact(_min_radius(params, x, y, 1), _broken(params, x_adv, y), eps)
    # APGD-T tries each other class, so it finds the nearest one.
    params, x, y = _linear(seed=1)
    apgd_t = attacks.apgd(epsilon=eps, num_steps=30, loss="dlr_targeted", num_restarts=2)
    x_adv = _jit(apgd_t, static_argnums=0)(linear_apply, params, x, y, key=_key(2))
    _check_attack(x_adv, x, eps)
    r = _min_radius(params, x, y, 1)
    _check_exact(r, _broken(params, x_adv, y), eps)
    # With several classes APGD-CE may miss examples near the threshold, never a far one.
    broken = _broken(params, ce(linear_apply, params, x, y, key=_key(1)), y)[: B - 16]
    ratio = r[: B - 16] / eps
    assert not broken[ratio > 1 + MARGIN].any() and broken[ratio < 0.7].all()


def test_apgd_l2_targeted_breaks_exactly_the_breakable_examples():
    eps = 0.1
    params, x, y = _linear(seed=2)
    attack = attacks.apgd(epsilon=eps, num_steps=30, norm="l2", loss="dlr_targeted")
    x_adv = _jit(attack, static_argnums=0)(linear_apply, params, x, y)  # from x: no key
    _check_attack(x_adv, x, eps, ord_=2)
    _check_exact(_min_radius(params, x, y, 2), _broken(params, x_adv, y), eps)


def test_robust_accuracy_is_the_per_example_worst_case():
    params, x, y = _linear(seed=4)
    y = y.at[:3].set((y[:3] + 1) % K)  # three examples misclassified on x
    settings = metric_suite.Settings(epsilon=0.05, attack_steps=6)

    @_jit
    def evaluate_metric(params, x, y, key):
        images = x.reshape(B, 2, 3, 1)
        case = metric_suite.Case(
            linear_apply, params, images, y, jnp.zeros_like(images), None, key, settings,
            extras={"labels": y},
        )  # fmt: skip
        return metric_suite.METRICS["robust_accuracy"](case)

    values = evaluate_metric(params, x, y, _key(5))
    names = ["apgd_ce", "apgd_t", "pgd"]
    assert set(values) == {"robust", "clean", *names}  # jit returns a dict's keys sorted
    for v in values.values():
        assert v.shape == (B,) and v.dtype == jnp.float32
        assert set(np.unique(np.asarray(v))) <= {0.0, 1.0}
    np.testing.assert_array_equal(values["clean"], (np.arange(B) >= 3).astype(np.float32))
    worst = np.asarray(values["clean"]).astype(bool)
    for name in names:
        assert values["robust"].mean() <= values[name].mean() <= values["clean"].mean()
        worst &= np.asarray(values[name]).astype(bool)
    np.testing.assert_array_equal(values["robust"], worst.astype(np.float32))
    assert 0 < values["robust"].sum() < values["clean"].sum()
    assert values["robust"].sum() < values["pgd"].sum()  # the AND is not one attack's value


def test_robust_accuracy_of_a_sequence_names_the_attacks_by_position():
    params, x, y = _linear(seed=4)
    suite = [attacks.fgsm(epsilon=0.05), attacks.fgsm(epsilon=0.02)]
    values = metrics.robust_accuracy(linear_apply, params, x, y, suite)
    assert list(values) == ["robust", "clean", "attack_0", "attack_1"]
    np.testing.assert_array_equal(values["robust"], values["attack_0"] * values["attack_1"])
    assert values["attack_0"].sum() < values["attack_1"].sum() < B


def test_with_restarts_keeps_the_first_successful_restart():
    params, x, y = _linear(seed=6)
    # One tiny step: the random start decides which examples break.
    pgd = attacks.pgd(epsilon=0.2, num_steps=1, step_size=1e-4)
    keys = jax.random.split(_key(7), 3)
    pgd_jit = _jit(pgd, static_argnums=0)
    runs = [pgd_jit(linear_apply, params, x, y, key=k) for k in keys]
    broken = np.stack([_broken(params, r, y) for r in runs])
    assert (broken.any(0) & ~broken[0]).any(), "no example needs a restart"
    first = np.where(broken.any(0), broken.argmax(0), 2)
    expected = np.stack([np.asarray(runs[r][b]) for b, r in enumerate(first)])
    got = _jit(attacks.with_restarts(pgd, 3), static_argnums=0)(
        linear_apply, params, x, y, key=_key(7)
    )
    np.testing.assert_allclose(got, expected, atol=1e-6)
    np.testing.assert_array_equal(_broken(params, got, y), broken.any(0))
    # One restart is the attack itself.
    once = attacks.with_restarts(pgd_jit, 1)(linear_apply, params, x, y, key=keys[0])
    np.testing.assert_array_equal(once, runs[0])


@pytest.mark.parametrize(
    ("n", "fractions", "sizes"),
    [(n, (1, 2, 4, 8), (48, 24, 12, 6)) for n in (0, 1, 5, 6, 7, 12, 13, 24, 48)]
    + [(n, (1,), (48,)) for n in (0, 1, 48)]
    + [(n, (5, 1), (48, 10)) for n in (3, 10, 11)],
)
def test_on_remaining_runs_the_smallest_sub_batch_that_holds_the_examples_to_do(
    n, fractions, sizes
):
    from jaxinterp.attacks._remaining import on_remaining, sub_batch_sizes

    assert sub_batch_sizes(B, fractions) == sizes
    todo = np.zeros(B, bool)
    todo[np.random.default_rng(n).choice(B, n, replace=False)] = True
    a = jnp.arange(B, dtype=jnp.float32)

    def fn(v):  # row b: 2 v_b, and the size of the sub-batch it ran in
        return 2.0 * v, jnp.full(v.shape, v.shape[0], jnp.int32)

    done = (-a, jnp.full(B, -1, jnp.int32))
    run = jax.jit(lambda t: on_remaining(fn, t, (a,), done, fractions))
    doubled, size = run(jnp.asarray(todo))
    np.testing.assert_array_equal(doubled, np.where(todo, 2 * np.arange(B), -np.arange(B)))
    want = min((m for m in sizes if m >= n), default=-1) if n else -1
    np.testing.assert_array_equal(size, np.where(todo, want, -1))


@pytest.mark.parametrize("bad", [(), (2, 4), (1, 1), (1, 0), (1, 2.0), "1"])
def test_sub_batch_fractions_are_checked(bad):
    with pytest.raises((ValueError, TypeError), match="sub_batch_fractions"):
        attacks.apgd(epsilon=0.1, sub_batch_fractions=bad)
    with pytest.raises((ValueError, TypeError), match="sub_batch_fractions"):
        attacks.boundary_search(sub_batch_fractions=bad)


def test_one_sub_batch_fraction_compiles_one_copy_of_the_later_runs():
    """``(1,)`` leaves one copy of an APGD-T run in the program (plus the skip), the default
    one per sub-batch size: the program's dot products (the linear model's forward and
    backward passes) shrink accordingly."""
    params, x, y = _linear(seed=1)

    def dots(fractions):
        attack = attacks.apgd(
            epsilon=0.1,
            num_steps=5,
            loss="dlr_targeted",
            num_target_classes=3,
            sub_batch_fractions=fractions,
        )
        lowered = jax.jit(attack, static_argnums=0).lower(linear_apply, params, x, y)
        return lowered.as_text().count("stablehlo.dot_general")

    one, default = dots((1,)), dots(attacks.SUB_BATCH_FRACTIONS)
    assert one > 0
    # B = 48: sizes 48, 24, 12, 6 -> four copies of the run instead of one.
    assert default - one == 3 * (dots((1, 2)) - one), (one, default)


def test_apgd_t_on_the_robust_examples_alone_finds_what_the_whole_batch_finds():
    """Runs after the first skip the examples already fooled (and those misclassified at
    ``x``): the same ``x_adv`` as running every run on the whole batch
    (``sub_batch_fractions=(1,)``), in float64."""
    params, x, y = _linear(seed=1)
    with jax.enable_x64(True):
        params = jax.tree.map(lambda p: p.astype(jnp.float64), params)
        x = x.astype(jnp.float64)
        y = y.at[:3].set((y[:3] + 1) % K)  # misclassified at x: returned as x
        eps = 0.07  # about half the examples fall to the first target (checked below)

        def run(num_targets, fractions=attacks.SUB_BATCH_FRACTIONS):
            attack = attacks.apgd(
                epsilon=eps,
                num_steps=20,
                loss="dlr_targeted",
                num_target_classes=num_targets,
                sub_batch_fractions=fractions,
            )
            return jax.jit(attack, static_argnums=0)(linear_apply, params, x, y, key=_key(2))

        first = _broken(params, run(1), y)[3:]
        assert 0.25 < first.mean() < 0.75, first.mean()  # the sub-batches are exercised
        compact = run(K - 1)
        whole = run(K - 1, (1,))
    np.testing.assert_allclose(compact, whole, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(compact[:3], x[:3])
