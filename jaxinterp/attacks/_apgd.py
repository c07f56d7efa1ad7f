"""Auto-PGD (APGD): PGD with momentum and a step size that halves at checkpoints.

A factory in the optax style: it validates and closes over the hyperparameters and returns a
pure, batched, jittable ``attack(apply_fn, params, x, y, *, key=None) -> x_adv``. Also the
DLR losses it ascends and the checkpoint schedule it follows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from jaxinterp.core import checks
from jaxinterp.core.losses import ce_loss, label_logit
from jaxinterp.core.ops import per_example, project_ball, unit_l2
from jaxinterp.core.protocols import ApplyFn, Attack

from ._pgd import NORMS, check_call, random_start_point
from ._remaining import SUB_BATCH_FRACTIONS, check_fractions, on_remaining

__all__ = [
    "APGD_LOSSES",
    "apgd",
    "apgd_checkpoints",
    "autoattack_like",
    "dlr_loss",
    "dlr_targeted_loss",
]

APGD_LOSSES: tuple[str, ...] = ("ce", "dlr", "dlr_targeted")
"""Losses accepted by :func:`apgd`."""

_DLR_TINY = 1e-12  # The reference code's guard of the DLR denominator.
_MOMENTUM = 0.75  # α of the paper.


def _float_logits(logits: jax.Array, labels: jax.Array, name: str, min_classes: int) -> jax.Array:
    """Shape checks of ``logits [B, K >= min_classes]`` and ``labels [B]``; float32 logits."""
    if logits.ndim != 2 or logits.shape[1] < min_classes:
        raise ValueError(
            f"{name}: logits must be [B, K] with K >= {min_classes} classes, got shape "
            f"{tuple(logits.shape)}"
        )
    checks.labels(labels, logits.shape[0], f"{name}: labels", num_classes=logits.shape[1])
    return logits.astype(jnp.promote_types(logits.dtype, jnp.float32))


def dlr_loss(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Difference of logits ratio (DLR) per example, the untargeted loss of APGD-DLR.

    ``DLR(z, y) = −(z_y − max_{i≠y} z_i) / (z_π1 − z_π3 + 1e-12)`` with ``π`` the classes
    sorted by decreasing logit. Invariant to shifting and (positively) rescaling the logits;
    positive exactly when the example is misclassified (ties aside).

    Args:
      logits: Logits ``z`` of shape ``[B, K]``, ``K >= 3``.
      labels: Integer labels ``y`` of shape ``[B]``, each in ``[0, K)``.

    Returns:
      Losses of shape ``[B]`` (float32 or wider).

    Raises:
      ArgumentTypeError: If the labels are not integers.
      ValueError: If the shapes are not ``[B, K >= 3]`` and ``[B]``, or (concrete labels) a
        label lies outside ``[0, K)``.

    References:
      Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble of
      diverse parameter-free attacks", ICML 2020 (Eq. 6).
    """
    z = _float_logits(logits, labels, "dlr_loss", 3)
    top = jax.lax.top_k(z, 3)[0]
    is_label = jax.nn.one_hot(labels, z.shape[1], dtype=jnp.bool_)
    best_other = jnp.max(jnp.where(is_label, -jnp.inf, z), axis=-1)
    return -(label_logit(z, labels) - best_other) / (top[:, 0] - top[:, 2] + _DLR_TINY)


def dlr_targeted_loss(logits: jax.Array, labels: jax.Array, targets: jax.Array) -> jax.Array:
    """Targeted DLR per example, the loss of APGD-T.

    ``DLR_t(z, y) = −(z_y − z_t) / (z_π1 − (z_π3 + z_π4) / 2 + 1e-12)`` with ``π`` the
    classes sorted by decreasing logit and ``t`` the target class.

    Args:
      logits: Logits ``z`` of shape ``[B, K]``, ``K >= 4``.
      labels: Integer true labels ``y`` of shape ``[B]``.
      targets: Integer target labels ``t`` of shape ``[B]``.

    Returns:
      Losses of shape ``[B]`` (float32 or wider); positive exactly when ``z_t > z_y``.

    Raises:
      ArgumentTypeError: If the labels or targets are not integers.
      ValueError: If the shapes are not ``[B, K >= 4]``, ``[B]`` and ``[B]``, or (concrete)
        a label or target lies outside ``[0, K)``.

    References:
      Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble of
      diverse parameter-free attacks", ICML 2020 (Sec. 4, the targeted DLR loss).
    """
    z = _float_logits(logits, labels, "dlr_targeted_loss", 4)
    checks.labels(targets, z.shape[0], "dlr_targeted_loss: targets", num_classes=z.shape[1])
    top = jax.lax.top_k(z, 4)[0]
    den = top[:, 0] - 0.5 * (top[:, 2] + top[:, 3]) + _DLR_TINY
    return -(label_logit(z, labels) - label_logit(z, targets)) / den


def apgd_checkpoints(num_steps: int) -> tuple[int, ...]:
    """The iterations ``w_1 < w_2 < … <= num_steps`` after which APGD may halve its step.

    The paper's ``p_0 = 0``, ``p_1 = 0.22``, ``p_{j+1} = p_j + max(p_j − p_{j−1} − 0.03,
    0.06)``, ``w_j = p_j · N``, in the reference code's integer form (followed here): the
    first window is ``max(⌊0.22 N⌋, 1)`` steps and each next one
    ``max(previous − max(⌊0.03 N⌋, 1), max(⌊0.06 N⌋, 1))``. For ``N = 100`` both give
    ``22, 41, 57, 70, 80, 87, 93, 99``; for small ``N`` the integer form has more checkpoints
    than ``⌈p_j N⌉`` (e.g. every step from 2 on for ``N = 10``).

    Args:
      num_steps: ``N >= 1``.

    Returns:
      The checkpoints, increasing (``w_0 = 0`` not included).

    Raises:
      ValueError: ``num_steps`` is not an integer ``>= 1``.

    References:
      Croce & Hein, ICML 2020 (Sec. 3.2); reference code fra31/auto-attack
      (``autopgd_base.py``).
    """
    n = checks.integer("num_steps", num_steps)
    window = max(int(0.22 * n), 1)
    shortest, shrink = max(int(0.06 * n), 1), max(int(0.03 * n), 1)
    out, w = [], window
    while w <= n:
        out.append(w)
        window = max(window - shrink, shortest)
        w += window
    return tuple(out)


def apgd(
    *,
    epsilon: float,
    num_steps: int = 100,
    loss: str = "ce",
    norm: str = "linf",
    num_restarts: int = 1,
    num_target_classes: int = 9,
    bounds: tuple[float, float] | None = (0.0, 1.0),
    rho: float = 0.75,
    sub_batch_fractions: Sequence[int] = SUB_BATCH_FRACTIONS,
) -> Attack:
    """Builds Auto-PGD (APGD-CE, APGD-DLR or the targeted APGD-T) in an L∞ or L2 ball.

    Per example, with ``f`` the per-example loss (to be maximised), ``P`` the projection onto
    the ε-ball around ``x`` followed by a clip to ``bounds``, ``d`` the step direction
    (``sign(g)`` for L∞, ``g / ‖g‖₂`` for L2), ``η⁰ = 2ε`` and ``α = 0.75``::

        z^{k+1} = P( x^k + η^k · d(∇f(x^k)) )
        x^{k+1} = P( x^k + α (z^{k+1} − x^k) + (1 − α)(x^k − x^{k−1}) )    (α = 1 for k = 0)

    At each checkpoint ``w_j`` of :func:`apgd_checkpoints` the step halves,
    ``η ← η / 2``, and the iterate restarts from the best point so far,
    ``x^{w_j} ← x_max`` (its gradient and loss with it), if

    1. ``Σ_{i=w_{j−1}}^{w_j−1} 1[f(x^{i+1}) > f(x^i)] < ρ · (w_j − w_{j−1})``, or
    2. ``η`` was not halved at ``w_{j−1}`` and ``f_max`` did not grow since ``w_{j−1}``
       (as in the reference code, condition 2 is not tested at ``w_1``).

    The reference code tests condition 1 with ``≤`` (and a stale loss for the first
    comparison); this follows the paper's ``<`` and compares with ``f(x^0)``. Each example
    has its own step size and schedule decisions, so the batch never interacts.

    Losses: ``"ce"`` (cross-entropy), ``"dlr"`` (:func:`dlr_loss`, ``K >= 3``) and
    ``"dlr_targeted"`` (APGD-T: :func:`dlr_targeted_loss` toward each of the
    ``min(num_target_classes, K − 1)`` classes with the highest clean logits other than
    ``y``, one run per target class and restart, ``K >= 4``).

    Over all iterates ``x^0 … x^N`` of all runs, per example, ``x_adv`` is the first
    misclassified iterate (``argmax f(x') ≠ y``; the reference code keeps the last) if there
    is one, else the iterate of highest loss; an example already misclassified at ``x`` is
    returned as ``x``.

    A run after the first attacks only the examples no earlier run has fooled (and none
    misclassified at ``x``), as AutoAttack does: in the smallest of the sub-batches ``⌈B/d⌉``,
    ``d`` in ``sub_batch_fractions`` (default ``1, 2, 4, 8``), that holds them, or not at all
    when none is left. Examples never interact, so the result is the same as running every run
    on the whole batch; the time follows the examples still robust (APGD-T on the CNN: 6.3-6.6
    s instead of 11.1 s when 39% remain after the first target), and compiling takes about
    2.5× longer. For a program run on a few batches, ``sub_batch_fractions=(1,)`` compiles the
    whole batch alone (on the study's CNN, 60 examples, the robust-accuracy program of
    APGD-CE and APGD-T compiled in 5.0 against 10.3-12.1 s and ran in 0.76-0.78 against
    0.47-0.93 s).

    This is its own ``lax`` loop (a ``fori_loop`` inside a ``scan`` over the runs), not
    :func:`jaxinterp.core.gradient_steps`: the momentum term, the per-example step sizes and
    the restarts from ``x_max`` do not fit that loop. The checkpoint schedule is computed in
    Python from ``num_steps``.

    Args:
      epsilon: Radius ``ε > 0`` of the threat ball. With ``bounds``, at most ``hi − lo``
        (L∞) or the box's L2 diameter (L2, checked at call time).
      num_steps: Iterations ``N >= 1`` per run (the paper: 100).
      loss: One of :data:`APGD_LOSSES`.
      norm: ``"linf"`` or ``"l2"``.
      num_restarts: Runs ``>= 1`` per target (``> 1`` needs ``key``: each run starts from its
        own uniform sample of the ball).
      num_target_classes: Targets of ``"dlr_targeted"`` (the paper: 9); unused otherwise.
      bounds: Valid input range ``(lo, hi)`` every iterate is clipped to, or ``None``.
      rho: ``ρ ∈ (0, 1]`` of condition 1 (the paper: 0.75).
      sub_batch_fractions: The sub-batch sizes ``⌈B/d⌉`` of the later runs, distinct
        integers ``d >= 1`` including 1 (:data:`~jaxinterp.attacks.SUB_BATCH_FRACTIONS`).

    Returns:
      ``attack(apply_fn, params, x, y, *, key=None) -> x_adv``: ``x`` is ``[B, ...]`` float,
      ``y`` ``[B]`` integer true labels, ``x_adv`` has ``x``'s shape and dtype and carries no
      gradient. With ``key`` every run starts from a uniform sample of the ε-ball (run ``r``
      from ``fold_in(key, r)``); with ``key=None`` from ``x`` (deterministic). Pure and
      jittable, e.g. ``jax.jit(attack, static_argnums=0)``.

    Raises:
      ArgumentTypeError: A hyperparameter of the wrong type.
      ValueError: A hyperparameter out of range, or ``epsilon > hi − lo`` for L∞. The attack
        raises on bad ``x``/``y`` (as :func:`pgd`), a missing ``key`` with
        ``num_restarts > 1``, and too few classes for the DLR losses.

    References:
      Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble of
      diverse parameter-free attacks", ICML 2020; reference code fra31/auto-attack.
    """
    epsilon = checks.positive("epsilon", epsilon)
    num_steps = checks.integer("num_steps", num_steps)
    checks.one_of("loss", loss, APGD_LOSSES)
    checks.one_of("norm", norm, NORMS)
    num_restarts = checks.integer("num_restarts", num_restarts)
    num_target_classes = checks.integer("num_target_classes", num_target_classes)
    bounds = checks.bounds(bounds)
    rho = checks.real("rho", rho, low=0.0, high=1.0, low_open=True)
    fractions = check_fractions(sub_batch_fractions)
    if norm == "linf":
        checks.epsilon_in_bounds(epsilon, bounds)
    marks = apgd_checkpoints(num_steps)
    is_mark = [False] * num_steps
    window = [0] * num_steps
    for prev, w in zip((0, *marks), marks, strict=False):
        is_mark[w - 1], window[w - 1] = True, w - prev
    targeted = loss == "dlr_targeted"

    def attack(
        apply_fn: ApplyFn,
        params: Any,
        x: jax.Array,
        y: jax.Array,
        *,
        key: jax.Array | None = None,
    ) -> jax.Array:
        x, y = jnp.asarray(x), jnp.asarray(y)
        k = check_call(apply_fn, params, x, y, bounds=bounds, epsilon=epsilon, norm=norm)
        if num_restarts > 1 or key is not None:
            checks.key(key, required_by=f"num_restarts={num_restarts}")
        need = {"dlr": 3, "dlr_targeted": 4}.get(loss, 2)
        if k < need:
            raise ValueError(f"apgd(loss={loss!r}) needs K >= {need} classes, got K={k}")
        params, x = jax.lax.stop_gradient(params), jax.lax.stop_gradient(x)
        clean = apply_fn(params, x)
        num_targets = min(num_target_classes, k - 1) if targeted else 1
        if targeted:
            is_label = jax.nn.one_hot(y, k, dtype=jnp.bool_)
            targets = jax.lax.top_k(jnp.where(is_label, -jnp.inf, clean), num_targets)[1]
        else:
            targets = jnp.zeros((x.shape[0], 1), y.dtype)

        def project(v: jax.Array, center: jax.Array) -> jax.Array:
            return project_ball(v, center, epsilon, norm, bounds)

        def single_run(
            center: jax.Array, x0: jax.Array, labels: jax.Array, t: jax.Array
        ) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
            def proj(v: jax.Array) -> jax.Array:
                return project(v, center)

            return _single_run(
                apply_fn, params, x0, labels, t, proj, loss, norm, epsilon, rho, is_mark, window
            )

        b = x.shape[0]
        wrong_clean = jnp.argmax(clean, axis=-1) != y
        nothing = (x, jnp.full(b, -jnp.inf, jnp.float32), x, jnp.zeros(b, jnp.bool_))
        Carry = tuple[jax.Array, jax.Array, jax.Array, jax.Array]

        def run(carry: Carry, r: jax.Array) -> tuple[Carry, None]:
            out_adv, found, out_best, best_loss = carry
            x0 = x
            if key is not None:
                x0 = random_start_point(jax.random.fold_in(key, r), x, epsilon, norm, bounds)
            t = jnp.take(targets, r // num_restarts, axis=1)
            # After the first run, only the examples still robust: a fooled one keeps its first
            # misclassified iterate and a misclassified one is returned as x, whatever later
            # runs find (one run alone is not worth the sub-batch programs' compile time).
            args = (x, x0, y, t)
            if num_targets * num_restarts == 1:
                x_best, loss_best, x_first, found_r = single_run(*args)
            else:
                x_best, loss_best, x_first, found_r = on_remaining(
                    single_run, ~(found | wrong_clean), args, nothing, fractions
                )
            take = per_example(~found & found_r, x.ndim)
            out_adv = jnp.where(take, x_first, out_adv)
            better = loss_best > best_loss
            out_best = jnp.where(per_example(better, x.ndim), x_best, out_best)
            best_loss = jnp.where(better, loss_best, best_loss)
            return (out_adv, found | found_r, out_best, best_loss), None

        init: Carry = (x, jnp.zeros(b, jnp.bool_), x, jnp.full(b, -jnp.inf, jnp.float32))
        runs = jnp.arange(num_targets * num_restarts)
        (out_adv, found, out_best, _), _ = jax.lax.scan(run, init, runs)
        x_adv = jnp.where(per_example(found, x.ndim), out_adv, out_best)
        x_adv = jnp.where(per_example(wrong_clean, x.ndim), x, x_adv)
        return jax.lax.stop_gradient(x_adv.astype(x.dtype))

    attack.__doc__ = (
        f"APGD-{loss}-{norm} attack (ε={epsilon}, {num_steps} steps, {num_restarts} restart(s)"
        f"{f', {num_target_classes} target classes' if targeted else ''}, ρ={rho}, "
        f"bounds={bounds}); see `apgd`."
    )
    return attack


def _single_run(
    apply_fn: ApplyFn,
    params: Any,
    x0: jax.Array,
    y: jax.Array,
    t: jax.Array,
    project: Callable[[jax.Array], jax.Array],
    loss: str,
    norm: str,
    epsilon: float,
    rho: float,
    is_mark: list[bool],
    window: list[int],
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """One APGD run from ``x0``: ``(x_max, f_max, first misclassified iterate, found)``."""
    ndim = x0.ndim

    def objective(v: jax.Array) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
        logits = apply_fn(params, v)
        if loss == "ce":
            per = ce_loss(logits, y)
        elif loss == "dlr":
            per = dlr_loss(logits, y)
        else:
            per = dlr_targeted_loss(logits, y, t)
        return jnp.sum(per), (per, jnp.argmax(logits, axis=-1) != y)

    grad_fn = jax.grad(objective, has_aux=True)

    def direction(g: jax.Array) -> jax.Array:
        return jnp.sign(g) if norm == "linf" else unit_l2(g)

    def expand(v: jax.Array) -> jax.Array:
        return per_example(v, ndim)

    marks = jnp.asarray(is_mark)
    windows = jnp.asarray(window, jnp.float32)
    g0, (f0, wrong0) = grad_fn(x0)
    state = {
        "x": x0,
        "x_prev": x0,
        "g": g0,
        "f": f0,
        "eta": jnp.full(f0.shape, 2.0 * epsilon, x0.dtype),
        "x_max": x0,
        "g_max": g0,
        "f_max": f0,
        "x_first": x0,
        "found": wrong0,
        "ups": jnp.zeros(f0.shape, jnp.float32),
        "f_max_mark": f0,
        "halved_mark": jnp.ones(f0.shape, jnp.bool_),
    }

    def step(i: jax.Array, s: dict[str, jax.Array]) -> dict[str, jax.Array]:
        x, eta = s["x"], expand(s["eta"])
        a = jnp.where(i == 0, 1.0, _MOMENTUM).astype(x.dtype)
        z = project(x + eta * direction(s["g"]))
        x_new = project(x + a * (z - x) + (1 - a) * (x - s["x_prev"]))
        g, (f, wrong) = grad_fn(x_new)
        first = ~s["found"] & wrong
        up = f > s["f"]
        better = f > s["f_max"]
        x_max = jnp.where(expand(better), x_new, s["x_max"])
        g_max = jnp.where(expand(better), g, s["g_max"])
        f_max = jnp.where(better, f, s["f_max"])
        ups = s["ups"] + up.astype(jnp.float32)
        # The checkpoint (a no-op between checkpoints).
        mark = marks[i]
        cond1 = ups < rho * windows[i]
        cond2 = ~s["halved_mark"] & (f_max <= s["f_max_mark"])
        halve = mark & (cond1 | cond2)
        h = expand(halve)
        return {
            "x": jnp.where(h, x_max, x_new),
            "x_prev": x,
            "g": jnp.where(h, g_max, g),
            "f": jnp.where(halve, f_max, f),
            "eta": jnp.where(halve, 0.5 * s["eta"], s["eta"]),
            "x_max": x_max,
            "g_max": g_max,
            "f_max": f_max,
            "x_first": jnp.where(expand(first), x_new, s["x_first"]),
            "found": s["found"] | wrong,
            "ups": jnp.where(mark, 0.0, ups),
            "f_max_mark": jnp.where(mark, f_max, s["f_max_mark"]),
            "halved_mark": jnp.where(mark, halve, s["halved_mark"]),
        }

    s = jax.lax.fori_loop(0, len(is_mark), step, state)
    return s["x_max"], s["f_max"].astype(jnp.float32), s["x_first"], s["found"]


def autoattack_like(
    epsilon: float,
    *,
    num_steps: int = 100,
    norm: str = "linf",
    num_target_classes: int = 9,
    num_restarts: int = 1,
    bounds: tuple[float, float] | None = (0.0, 1.0),
    sub_batch_fractions: Sequence[int] = SUB_BATCH_FRACTIONS,
) -> dict[str, Attack]:
    """The two APGD attacks of AutoAttack's standard suite: ``{"apgd_ce", "apgd_t"}``.

    ``apgd_ce`` is :func:`apgd` with ``loss="ce"``; ``apgd_t`` is APGD-T, :func:`apgd` with
    ``loss="dlr_targeted"`` over ``num_target_classes`` targets. Pass the dict to
    :func:`jaxinterp.metrics.robust_accuracy` for the per-example worst case over both.

    This is not the full AutoAttack: its other two members, FAB-T (the targeted minimal
    perturbation attack) and Square (a black-box random search), are not implemented, so the
    robust accuracy it gives is an upper bound on AutoAttack's (usually close on models
    without gradient masking).

    Args:
      epsilon: Radius ``ε > 0``.
      num_steps: Iterations per run (AutoAttack: 100).
      norm: ``"linf"`` or ``"l2"``.
      num_target_classes: APGD-T's targets (AutoAttack: 9).
      num_restarts: Runs per attack and target (AutoAttack's standard version: 1).
      bounds: Valid input range ``(lo, hi)``, or ``None``.
      sub_batch_fractions: As :func:`apgd` (``(1,)`` for a program run a few times).

    Returns:
      ``{"apgd_ce": attack, "apgd_t": attack}``, in that order.

    Raises:
      ValueError: As :func:`apgd`.

    References:
      Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble of
      diverse parameter-free attacks", ICML 2020.
    """

    def build(loss: str) -> Attack:
        return apgd(
            epsilon=epsilon,
            num_steps=num_steps,
            loss=loss,
            norm=norm,
            num_restarts=num_restarts,
            num_target_classes=num_target_classes,
            bounds=bounds,
            sub_batch_fractions=sub_batch_fractions,
        )

    return {"apgd_ce": build("ce"), "apgd_t": build("dlr_targeted")}
