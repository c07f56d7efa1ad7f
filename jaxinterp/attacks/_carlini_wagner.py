"""The Carlini–Wagner L2 attack: the smallest L2 perturbation that flips the label.

A factory in the optax style: it validates and closes over the hyperparameters and returns a
pure, batched, jittable ``attack(apply_fn, params, x, y, *, key=None) -> CWResult``, a
NamedTuple ``(x_adv, success)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxinterp.core import checks
from jaxinterp.core.ascent import gradient_steps
from jaxinterp.core.losses import margin_loss
from jaxinterp.core.ops import per_example, sq_l2

from ._pgd import check_call

__all__ = ["CWAttack", "CWResult", "carlini_wagner_l2"]


class CWResult(NamedTuple):
    """What :func:`carlini_wagner_l2`'s attack returns.

    Attributes:
      x_adv: ``[B, ...]``: the closest successful iterate, or ``x`` where none succeeded.
      success: ``[B]`` bool.
    """

    x_adv: jax.Array
    success: jax.Array


CWAttack = Callable[..., CWResult]
"""``attack(apply_fn, params, x [B, ...], y [B] int, *, key=None) -> CWResult``."""

_ATANH_SCALE = 0.999999  # Keeps arctanh finite for x on the bounds (as the reference code).
_MAX_CONST = 1e10  # Upper cap on c in the last of >= 10 binary-search rounds (C&W's code).


def carlini_wagner_l2(
    *,
    num_steps: int = 100,
    learning_rate: float = 1e-2,
    initial_const: float = 1e-3,
    binary_search_steps: int = 9,
    confidence: float = 0.0,
    bounds: tuple[float, float] = (0.0, 1.0),
) -> CWAttack:
    """Builds the untargeted Carlini–Wagner L2 attack.

    The box constraint is removed by a change of variables, ``x'(w) = lo + (hi - lo) ·
    (tanh(w) + 1) / 2``, and, per example, Adam minimises over ``w`` (from ``x'(w₀) ≈ x``)::

        ‖x'(w) - x‖₂² + c · max(f_y(x') - max_{j≠y} f_j(x') + κ, 0)

    i.e. ``‖δ‖² + c · (max(f_y - max_{j≠y} f_j, -κ) + κ)``. A binary search over the
    per-example constant ``c`` (from ``initial_const``; ×10 until a first success, then
    bisection between the largest failing and smallest succeeding ``c``) runs
    ``binary_search_steps`` rounds of ``num_steps`` Adam steps, each round restarting from
    ``w₀`` with a fresh Adam state. Every iterate ``x'`` with ``max_{j≠y} f_j - f_y > κ`` is a
    success; the smallest-L2 success over all rounds and steps is returned. As in the
    reference (Foolbox) implementation, there is no early abort, and with
    ``binary_search_steps >= 10`` the last round uses ``c = min(upper bound, 1e10)``.

    Args:
      num_steps: Adam steps per binary-search round, ``>= 1``.
      learning_rate: Adam step size ``> 0`` (in ``w`` space).
      initial_const: First trade-off constant ``c > 0``.
      binary_search_steps: Rounds of the search over ``c``, ``>= 1``.
      confidence: Margin ``κ >= 0`` a success must beat the true class by.
      bounds: Finite input box ``(lo, hi)``; required by the change of variables.

    Returns:
      ``attack(apply_fn, params, x, y, *, key=None) -> CWResult(x_adv, success)``: ``x`` is
      ``[B, ...]`` float inside ``bounds``, ``y`` ``[B]`` integer labels; ``x_adv`` has ``x``'s
      shape and dtype and lies in ``bounds``; ``success`` is ``[B]`` bool. Where ``success``,
      ``x_adv`` is the closest (L2) iterate found with ``max_{j≠y} f_j(x_adv) - f_y(x_adv) >
      κ``; elsewhere ``x_adv = x``. ``key`` is accepted and ignored (the attack is
      deterministic). ``params`` and the outputs pass through ``stop_gradient``. Pure and
      jittable, e.g. ``jax.jit(attack, static_argnums=0)``. A misclassified ``x`` succeeds at
      the first iterate, ``x'(w₀)``, at distance ``~1e-6``.

    Raises:
      ValueError: On invalid hyperparameters (naming the argument). The attack raises
        ``ValueError`` as :func:`pgd` does on bad shapes, labels, or ``x`` outside ``bounds``.

    Example:
      >>> attack = carlini_wagner_l2(num_steps=100, learning_rate=1e-2)
      >>> x_adv, success = jax.jit(attack, static_argnums=0)(apply_fn, params, x, y)

    References:
      Carlini & Wagner, "Towards Evaluating the Robustness of Neural Networks", IEEE S&P 2017.
    """
    num_steps = checks.integer("num_steps", num_steps)
    binary_search_steps = checks.integer("binary_search_steps", binary_search_steps)
    learning_rate = checks.positive("learning_rate", learning_rate)
    initial_const = checks.positive("initial_const", initial_const)
    confidence = checks.nonnegative("confidence", confidence)
    lo, hi = checks.box(bounds, "the tanh box")
    opt = optax.adam(learning_rate)

    def attack(
        apply_fn: Callable[[Any, jax.Array], jax.Array],
        params: Any,
        x: jax.Array,
        y: jax.Array,
        *,
        key: jax.Array | None = None,
    ) -> CWResult:
        del key  # Deterministic; accepted for the common attack signature.
        x, y = jnp.asarray(x), jnp.asarray(y)
        check_call(apply_fn, params, x, y, bounds=(lo, hi))
        params, x = jax.lax.stop_gradient(params), jax.lax.stop_gradient(x)

        def to_box(w: jax.Array) -> jax.Array:  # The clip only absorbs rounding.
            return jnp.clip(lo + (hi - lo) * (jnp.tanh(w) + 1.0) / 2.0, lo, hi)

        w0 = jnp.arctanh((2.0 * (x - lo) / (hi - lo) - 1.0) * _ATANH_SCALE)

        def objective(w: jax.Array, const: jax.Array) -> tuple[jax.Array, tuple]:
            x_adv = to_box(w)
            logits = apply_fn(params, x_adv)
            margin = margin_loss(logits, y)  # max_{j≠y} f_j - f_y, [B]
            hinge = jnp.maximum(confidence - margin, 0.0)
            dist = sq_l2(x_adv - x)
            return jnp.sum(dist + const * hinge), (x_adv, margin > confidence, dist)

        def keep(seen: tuple, w: jax.Array, aux: tuple) -> tuple:
            best, best_d, found = seen  # Scores the iterate before its step.
            x_adv, adv, dist = aux
            better = adv & (dist < best_d)
            best = jnp.where(per_example(better, x.ndim), x_adv, best)
            return best, jnp.where(better, dist, best_d), found | adv

        def round_(r: jax.Array, carry: tuple) -> tuple:
            const, lower, upper, best, best_d = carry
            if binary_search_steps >= 10:
                last = r == binary_search_steps - 1
                const = jnp.where(last, jnp.minimum(upper, _MAX_CONST), const)
            _, (best, best_d, found) = gradient_steps(
                lambda w: objective(w, const),
                w0,
                num_steps=num_steps,
                maximize=False,
                optimizer=opt,
                has_aux=True,
                observe=keep,
                observed=(best, best_d, jnp.zeros(y.shape, bool)),
            )
            upper = jnp.where(found, jnp.minimum(upper, const), upper)
            lower = jnp.where(found, lower, jnp.maximum(lower, const))
            const = jnp.where(jnp.isinf(upper), const * 10.0, (lower + upper) / 2.0)
            return const, lower, upper, best, best_d

        batch = y.shape
        c_dtype = jnp.promote_types(x.dtype, jnp.float32)
        init = (
            jnp.full(batch, initial_const, c_dtype),
            jnp.zeros(batch, c_dtype),
            jnp.full(batch, jnp.inf, c_dtype),
            x,
            jnp.full(batch, jnp.inf, c_dtype),
        )
        *_, best, best_d = jax.lax.fori_loop(0, binary_search_steps, round_, init)
        success = jnp.isfinite(best_d)
        return CWResult(jax.lax.stop_gradient(best.astype(x.dtype)), jax.lax.stop_gradient(success))

    attack.__doc__ = (
        f"CW-L2 attack ({binary_search_steps} rounds × {num_steps} Adam steps, lr="
        f"{learning_rate}, c₀={initial_const}, κ={confidence}, bounds={(lo, hi)}); see "
        "`carlini_wagner_l2`."
    )
    return attack
