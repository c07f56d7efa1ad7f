"""Projected gradient descent (PGD) and the fast gradient sign method (FGSM).

Both are factories in the optax style: they validate and close over the hyperparameters and
return a pure, batched, jittable ``attack(apply_fn, params, x, y, *, key=None) -> x_adv``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from jaxinterp.core import checks
from jaxinterp.core.ascent import gradient_steps
from jaxinterp.core.losses import get_loss
from jaxinterp.core.ops import per_example, project_ball, unit_l2
from jaxinterp.core.protocols import Attack

__all__ = ["NORMS", "Attack", "fgsm", "pgd"]

NORMS: tuple[str, ...] = ("linf", "l2")
"""Threat models accepted by :func:`pgd` and :func:`fgsm`."""


def pgd(
    *,
    epsilon: float,
    num_steps: int,
    step_size: float | None = None,
    norm: str = "linf",
    random_start: bool = True,
    bounds: tuple[float, float] | None = (0.0, 1.0),
    loss: str = "ce",
    targeted: bool = False,
) -> Attack:
    """Builds a projected gradient ascent attack in an L∞ or L2 ball.

    With ``L`` the per-example loss (``ce_loss`` or ``margin_loss``), the attack ascends
    ``J(x') = Σ_b L(f(x'_b), y_b)`` (untargeted; ``y`` true labels) or
    ``J(x') = -Σ_b L(f(x'_b), t_b)`` (targeted; ``t = y`` target labels). Summing, not
    averaging, keeps each example's gradient independent of the batch size. From
    ``x⁰ = Π(x + δ₀)`` (``δ₀`` uniform in the ball if ``random_start``, else ``0``)::

        L∞:  x^{k+1} = Π( x^k + α · sign(∇J(x^k)) ),    Π: clip to [x - ε, x + ε]
        L2:  x^{k+1} = Π( x^k + α · ∇J / ‖∇J‖₂ ),        Π: δ ← δ · min(1, ε / ‖δ‖₂)

    per example, each followed by a clip to ``bounds``. A zero gradient gives a zero L2 step.
    The L2 random start is uniform in the ball: ``δ₀ = ε · U^{1/d} · z / ‖z‖₂`` with
    ``z ~ N(0, I_d)``, ``U ~ U(0, 1)`` and ``d`` the number of features per example.

    Args:
      epsilon: Radius ``ε > 0`` of the threat ball. With ``bounds``, at most ``hi - lo``
        (L∞) or the box diameter ``(hi - lo) · sqrt(d)`` (L2, checked at call time).
      num_steps: Number of ascent steps ``>= 1``.
      step_size: Step ``α > 0``; defaults to ``2.5 · ε / num_steps`` (Madry et al.).
      norm: ``"linf"`` or ``"l2"``.
      random_start: Start from a uniform sample in the ball; the attack then needs ``key``.
      bounds: Valid input range ``(lo, hi)`` that every iterate is clipped to, or ``None``.
        The clean ``x`` must lie inside it for ``x_adv`` to stay in the ε-ball.
      loss: ``"ce"`` (cross-entropy) or ``"margin"`` (``max_{j≠y} f_j - f_y``).
      targeted: Move toward the labels passed as ``y`` instead of away from them.

    Returns:
      ``attack(apply_fn, params, x, y, *, key=None) -> x_adv``: ``x`` is ``[B, ...]`` float,
      ``y`` ``[B]`` integer, ``x_adv`` has ``x``'s shape and dtype. ``params`` and ``x_adv``
      pass through ``jax.lax.stop_gradient``, so no gradient flows through the attack. Pure
      and jittable, e.g. ``jax.jit(attack, static_argnums=0)``.

    Raises:
      ValueError: On invalid hyperparameters (naming the argument), or ``epsilon > hi - lo``
        for L∞ ("epsilon outside the input range"). The attack raises ``ValueError`` on
        mismatched ``x``/``y`` batch sizes, non-integer ``y``, a missing ``key`` with
        ``random_start``, and, for concrete (non-traced) inputs, labels outside ``[0, K)``
        or ``x`` outside ``bounds``.

    Example:
      >>> attack = pgd(epsilon=8 / 255, num_steps=10)
      >>> x_adv = jax.jit(attack, static_argnums=0)(apply_fn, params, x, y, key=key)

    References:
      Madry et al., "Towards Deep Learning Models Resistant to Adversarial Attacks", ICLR 2018.
    """
    epsilon = checks.positive("epsilon", epsilon)
    num_steps = checks.integer("num_steps", num_steps)
    step_size = checks.step_size(step_size, epsilon, num_steps)
    checks.one_of("norm", norm, NORMS)
    loss_fn = get_loss(loss)
    bounds = checks.bounds(bounds)
    if norm == "linf":
        checks.epsilon_in_bounds(epsilon, bounds)
    random_start, targeted = bool(random_start), bool(targeted)

    def attack(
        apply_fn: Callable[[Any, jax.Array], jax.Array],
        params: Any,
        x: jax.Array,
        y: jax.Array,
        *,
        key: jax.Array | None = None,
    ) -> jax.Array:
        x, y = jnp.asarray(x), jnp.asarray(y)
        check_call(
            apply_fn,
            params,
            x,
            y,
            bounds=bounds,
            key=key,
            needs_key=random_start,
            epsilon=epsilon,
            norm=norm,
        )
        params, x = jax.lax.stop_gradient(params), jax.lax.stop_gradient(x)
        x0 = random_start_point(key, x, epsilon, norm, bounds) if random_start else x
        x_adv = ascend(
            apply_fn, params, x, y, x0, epsilon=epsilon, step_size=step_size,
            num_steps=num_steps, norm=norm, bounds=bounds, loss_fn=loss_fn, targeted=targeted,
        )  # fmt: skip
        return jax.lax.stop_gradient(x_adv.astype(x.dtype))

    attack.__doc__ = (
        f"PGD-{norm} attack (ε={epsilon}, {num_steps} steps of α={step_size}, loss={loss!r}, "
        f"targeted={targeted}, random_start={random_start}, bounds={bounds}); see `pgd`."
    )
    return attack


def fgsm(
    *,
    epsilon: float,
    norm: str = "linf",
    bounds: tuple[float, float] | None = (0.0, 1.0),
    loss: str = "ce",
    targeted: bool = False,
) -> Attack:
    """Builds the fast gradient (sign) method: one full-size step, no random start.

    ``x_adv = clip(x + ε · sign(∇ₓJ(x)))`` for L∞ (FGSM) and
    ``x_adv = clip(x + ε · ∇ₓJ / ‖∇ₓJ‖₂)`` per example for L2 (the fast gradient method),
    with ``J`` and the clip as in :func:`pgd`; i.e. ``pgd(num_steps=1, step_size=epsilon,
    random_start=False)``.

    Args:
      epsilon: Radius ``ε > 0`` and step size.
      norm: ``"linf"`` or ``"l2"``.
      bounds: Valid input range ``(lo, hi)``, or ``None``.
      loss: ``"ce"`` or ``"margin"``.
      targeted: Move toward the labels passed as ``y`` instead of away from them.

    Returns:
      ``attack(apply_fn, params, x, y, *, key=None) -> x_adv``; ``key`` is accepted and
      ignored.

    Raises:
      ValueError: As :func:`pgd`.

    References:
      Goodfellow et al., "Explaining and Harnessing Adversarial Examples", ICLR 2015.
    """
    return pgd(
        epsilon=epsilon,
        num_steps=1,
        step_size=epsilon,
        norm=norm,
        random_start=False,
        bounds=bounds,
        loss=loss,
        targeted=targeted,
    )


def ascend(
    apply_fn: Callable[[Any, jax.Array], jax.Array],
    params: Any,
    center: jax.Array,
    labels: jax.Array,
    x0: jax.Array,
    *,
    epsilon: float | jax.Array,
    step_size: float | jax.Array,
    num_steps: int,
    norm: str,
    bounds: tuple[float, float] | None,
    loss_fn: Callable[[jax.Array, jax.Array], jax.Array],
    targeted: bool = False,
) -> jax.Array:
    """PGD's ascent (see :func:`pgd`): ``num_steps`` steps of ``α`` from ``x0`` on
    ``±Σ_b L(f(x'_b), labels_b)``, each projected onto the ``norm``-ball of radius ``ε``
    around ``center`` and clipped to ``bounds``. ``epsilon`` and ``step_size`` may be traced
    scalars (the boundary search's ladder runs one loop for all its radii)."""

    def objective(x_adv: jax.Array) -> jax.Array:
        total = jnp.sum(loss_fn(apply_fn(params, x_adv), labels))
        return -total if targeted else total

    return gradient_steps(
        objective,
        x0,
        num_steps=num_steps,
        step_size=step_size,
        direction="sign" if norm == "linf" else "l2",
        project=lambda x_adv: project_ball(x_adv, center, epsilon, norm, bounds),
    )


def random_start_point(
    key: jax.Array | None,
    x: jax.Array,
    epsilon: float | jax.Array,
    norm: str,
    bounds: tuple[float, float] | None,
) -> jax.Array:
    """PGD's random start ``Π(x + δ₀)``, ``δ₀`` uniform in the ε-ball (see :func:`pgd`)."""
    delta = _random_delta(checks.key(key), x, epsilon, norm)
    return project_ball(x + delta, x, epsilon, norm, bounds)


def _random_delta(key: jax.Array, x: jax.Array, epsilon: float | jax.Array, norm: str) -> jax.Array:
    """A uniform sample from the ε-ball, one per example, shaped and typed like ``x``."""
    if norm == "linf":
        return jax.random.uniform(key, x.shape, x.dtype, -epsilon, epsilon)
    k_dir, k_rad = jax.random.split(key)
    direction = unit_l2(jax.random.normal(k_dir, x.shape, x.dtype))
    d = math.prod(x.shape[1:])
    radius = epsilon * jax.random.uniform(k_rad, x.shape[:1], x.dtype) ** (1.0 / d)
    return direction * per_example(radius, x.ndim)


def check_call(
    apply_fn: Callable[[Any, jax.Array], jax.Array],
    params: Any,
    x: jax.Array,
    y: jax.Array,
    *,
    bounds: tuple[float, float] | None,
    key: jax.Array | None = None,
    needs_key: bool = False,
    epsilon: float | None = None,
    norm: str = "linf",
) -> int:
    """Call-time checks of a label attack; returns ``K``.

    Shapes and dtypes always; label range and input bounds only for concrete inputs. With
    ``norm="l2"`` and ``bounds``, ``epsilon`` must not exceed the box's L2 diameter.
    """
    checks.array(x, "x", min_ndim=2, image=True)
    if needs_key:
        checks.key(key, required_by="random_start=True")
    if bounds is not None and norm == "l2" and epsilon is not None:
        diameter = (bounds[1] - bounds[0]) * math.sqrt(math.prod(x.shape[1:]))
        if epsilon > diameter:
            raise ValueError(
                f"epsilon={epsilon} is outside the input range: it exceeds the L2 diameter "
                f"{diameter:.4g} of the bounds box for inputs of shape {tuple(x.shape[1:])}"
            )
    k = checks.num_classes(apply_fn, params, x)
    checks.labels(y, x.shape[0], "y", num_classes=k)
    checks.in_bounds(x, bounds)
    return k
