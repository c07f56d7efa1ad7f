"""Projected gradient descent (PGD) and the fast gradient sign method (FGSM).

Both are factories in the optax style: they validate and close over the hyperparameters and
return a pure, batched, jittable ``attack(apply_fn, params, x, y, *, key=None) -> x_adv``.
"""

from __future__ import annotations

import math
import numbers
import operator
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxinterp.attacks._losses import get_loss

__all__ = ["NORMS", "Attack", "fgsm", "pgd"]

Attack = Callable[..., jax.Array]
"""``attack(apply_fn, params, x [B, ...], y [B] int, *, key=None) -> x_adv [B, ...]``."""

NORMS: tuple[str, ...] = ("linf", "l2")
"""Threat models accepted by :func:`pgd` and :func:`fgsm`."""

_TINY = 1e-30  # Below any float32 norm worth dividing by; guards divisions by zero.


def _check_positive(name: str, value: Any) -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not (ok and math.isfinite(float(value)) and float(value) > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def _check_num_steps(value: Any) -> int:
    try:
        steps = operator.index(value) if not isinstance(value, bool) else None
    except TypeError:
        steps = None
    if steps is None or steps < 1:
        raise ValueError(f"num_steps must be an integer >= 1, got {value!r}")
    return steps


def _check_bounds(bounds: Any) -> tuple[float, float] | None:
    if bounds is None:
        return None
    try:
        lo, hi = (float(b) for b in bounds)
    except (TypeError, ValueError):
        raise ValueError(f"bounds must be None or a pair (lo, hi), got {bounds!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"bounds must be finite with lo < hi, got {bounds!r}")
    return lo, hi


def _per_example(v: jax.Array, ndim: int) -> jax.Array:
    """Reshapes ``[B]`` to ``[B, 1, ..., 1]`` (``ndim`` dims) for explicit broadcasting."""
    return v.reshape(v.shape + (1,) * (ndim - 1))


def _l2_norm(v: jax.Array) -> jax.Array:
    """Per-example L2 norm ``[B, ...] -> [B, 1, ..., 1]``."""
    return jnp.sqrt(jnp.sum(jnp.square(v), axis=tuple(range(1, v.ndim)), keepdims=True))


def _unit_l2(v: jax.Array) -> jax.Array:
    """``v / ‖v‖₂`` per example; zero where ``v`` is zero. Rescales by ``max|v|`` first, so
    tiny gradients do not underflow when squared."""
    peak = jnp.max(jnp.abs(v), axis=tuple(range(1, v.ndim)), keepdims=True)
    v = v / jnp.where(peak > 0, peak, 1.0)
    norm = _l2_norm(v)
    return v / jnp.where(norm > 0, norm, 1.0)


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
    epsilon = _check_positive("epsilon", epsilon)
    num_steps = _check_num_steps(num_steps)
    step_size = (
        2.5 * epsilon / num_steps if step_size is None else _check_positive("step_size", step_size)
    )
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {', '.join(map(repr, NORMS))}; got {norm!r}")
    loss_fn = get_loss(loss)
    bounds = _check_bounds(bounds)
    if bounds is not None and norm == "linf" and epsilon > bounds[1] - bounds[0]:
        raise ValueError(
            f"epsilon={epsilon} is outside the input range: it exceeds bounds[1] - bounds[0] = "
            f"{bounds[1] - bounds[0]} (epsilon is in input units, e.g. 8/255 not 8)"
        )
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
        _check_call(apply_fn, params, x, y, key, epsilon, norm, bounds, random_start)
        params, x = jax.lax.stop_gradient(params), jax.lax.stop_gradient(x)

        def objective(x_adv: jax.Array) -> jax.Array:
            total = jnp.sum(loss_fn(apply_fn(params, x_adv), y))
            return -total if targeted else total

        def project(x_adv: jax.Array) -> jax.Array:
            if norm == "linf":
                x_adv = jnp.clip(x_adv, x - epsilon, x + epsilon)
            else:
                delta = x_adv - x
                x_adv = x + delta * jnp.minimum(1.0, epsilon / (_l2_norm(delta) + _TINY))
            return x_adv if bounds is None else jnp.clip(x_adv, bounds[0], bounds[1])

        def step(_: int, x_adv: jax.Array) -> jax.Array:
            g = jax.grad(objective)(x_adv)
            direction = jnp.sign(g) if norm == "linf" else _unit_l2(g)
            return project(x_adv + step_size * direction)

        x0 = project(x + _random_delta(key, x, epsilon, norm)) if random_start else x
        x_adv = jax.lax.fori_loop(0, num_steps, step, x0)
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


def _random_delta(key: jax.Array, x: jax.Array, epsilon: float, norm: str) -> jax.Array:
    """A uniform sample from the ε-ball, one per example, shaped and typed like ``x``."""
    if norm == "linf":
        return jax.random.uniform(key, x.shape, x.dtype, -epsilon, epsilon)
    k_dir, k_rad = jax.random.split(key)
    direction = _unit_l2(jax.random.normal(k_dir, x.shape, x.dtype))
    d = math.prod(x.shape[1:])
    radius = epsilon * jax.random.uniform(k_rad, x.shape[:1], x.dtype) ** (1.0 / d)
    return direction * _per_example(radius, x.ndim)


def _is_concrete(v: Any) -> bool:
    return not isinstance(v, jax.core.Tracer)


def _check_call(
    apply_fn: Callable[[Any, jax.Array], jax.Array],
    params: Any,
    x: jax.Array,
    y: jax.Array,
    key: jax.Array | None,
    epsilon: float,
    norm: str,
    bounds: tuple[float, float] | None,
    random_start: bool,
) -> None:
    """Call-time checks: shapes and dtypes always; values only for concrete inputs."""
    if x.ndim < 2 or not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"x must be a float array [B, ...], got {x.dtype}{list(x.shape)}")
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(
            f"y must be [B] with the batch size of x ({x.shape[0]}), got shape {tuple(y.shape)}"
        )
    if not jnp.issubdtype(y.dtype, jnp.integer):
        raise ValueError(f"y must hold integer labels, got dtype {y.dtype}")
    if random_start and key is None:
        raise ValueError(
            "key is required with random_start=True: attack(..., key=jax.random.key(0))"
        )
    if bounds is not None and norm == "l2":
        diameter = (bounds[1] - bounds[0]) * math.sqrt(math.prod(x.shape[1:]))
        if epsilon > diameter:
            raise ValueError(
                f"epsilon={epsilon} is outside the input range: it exceeds the L2 diameter "
                f"{diameter:.4g} of the bounds box for inputs of shape {tuple(x.shape[1:])}"
            )
    logits = jax.eval_shape(apply_fn, params, x)
    if logits.shape[:1] != x.shape[:1] or len(logits.shape) != 2 or logits.shape[1] < 2:
        raise ValueError(
            f"apply_fn must return logits [B={x.shape[0]}, K>=2], got {tuple(logits.shape)}"
        )
    if _is_concrete(y):
        y_np = np.asarray(y)
        if y_np.size and (y_np.min() < 0 or y_np.max() >= logits.shape[1]):
            k, lo, hi = logits.shape[1], y_np.min(), y_np.max()
            raise ValueError(f"y must lie in [0, {k}), got labels in {lo}..{hi}")
    if bounds is not None and _is_concrete(x) and x.size:
        x_np = np.asarray(x)
        if x_np.min() < bounds[0] or x_np.max() > bounds[1]:
            raise ValueError(
                f"x lies outside bounds={bounds} (range {x_np.min():.4g}..{x_np.max():.4g}); "
                "pass the input range as bounds, or bounds=None"
            )
