"""The one projected gradient-step loop behind every iterative method of the library.

PGD and FGSM, the TRADES inner maximisation, regularized adversarial explanations, the
masked attack of APE and the attribution attacks all take steps

    x^{t+1} = Π( x^t ± α · d(T(∇J(x^t))) ⊙ m )

with ``d`` the sign (L∞ steepest ascent) or the per-example unit L2 vector, ``T`` an optional
gradient transform (e.g. a blur), ``m`` an optional mask and ``Π`` a projection; or, with an
optax optimizer, ``x^{t+1} = Π(x^t + u^t)`` with ``u^t`` the optimizer's update. One
``lax.fori_loop``, jittable, with no Python-side state.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from jaxinterp.core import checks
from jaxinterp.core.ops import unit_l2

__all__ = ["DIRECTIONS", "gradient_steps"]

DIRECTIONS: tuple[str, ...] = ("sign", "l2")
"""Step directions of :func:`gradient_steps`: ``sign(g)`` or ``g / ‖g‖₂`` per example."""

Observe = Callable[[Any, jax.Array, Any], Any]
"""``observe(observed, x_t, aux_t) -> observed``: folds what each iterate is worth."""


def gradient_steps(
    objective: Callable[[jax.Array], Any],
    x0: jax.Array,
    *,
    num_steps: int,
    step_size: float | jax.Array | None = None,
    direction: str = "sign",
    maximize: bool = True,
    project: Callable[[jax.Array], jax.Array] | None = None,
    mask: jax.Array | None = None,
    transform: Callable[[jax.Array], jax.Array] | None = None,
    optimizer: optax.GradientTransformation | None = None,
    has_aux: bool = False,
    observe: Observe | None = None,
    observed: Any = None,
) -> Any:
    """``num_steps`` projected gradient steps on ``objective`` from ``x0``.

    Each step, from ``x_t``: ``g, aux = ∇J(x_t)`` (``aux`` only with ``has_aux``),
    ``g ← T(g)`` if ``transform``, ``observed ← observe(observed, x_t, aux)`` if ``observe``,
    then

    * signed / L2 steps: ``x_{t+1} = Π(x_t ± α · d(g) ⊙ m)``, ``+`` if ``maximize``;
    * ``optimizer``: ``u, s = optimizer.update(∓g, s, x_t)``, ``x_{t+1} = Π(x_t + u)``
      (optax minimises, so ``maximize`` passes ``−g``); ``step_size`` is then unused.

    ``J`` must sum per-example terms (examples never interact), so ``∇J`` is the stack of
    per-example gradients and ``d`` is taken per example.

    Args:
      objective: ``J(x) -> scalar`` (or ``(scalar, aux)`` with ``has_aux``).
      x0: The first iterate ``[B, ...]``.
      num_steps: Steps ``>= 1``.
      step_size: ``α > 0`` (required without ``optimizer``); a scalar ``jax.Array`` (e.g.
        traced, one loop for several step sizes) is used as it is, unchecked.
      direction: One of :data:`DIRECTIONS`.
      maximize: Ascend ``J`` (default) or descend it.
      project: ``Π``, applied after every step; ``None`` for none.
      mask: Multiplies the step, broadcast against ``x0`` (e.g. the pixels an attack may move).
      transform: ``T``, applied to the gradient before ``d`` and ``observe``.
      optimizer: An optax transformation to take the steps instead of ``α · d``.
      has_aux: ``objective`` returns ``(J, aux)``.
      observe: Called with every iterate ``x_0 … x_{T−1}`` and its ``aux`` (from the same
        forward pass as its gradient); the caller judges ``x_T`` itself.
      observed: The initial value folded by ``observe``.

    Returns:
      ``x_T`` (dtype of ``x0``), or ``(x_T, observed)`` when ``observe`` is given.

    Raises:
      ValueError: Bad ``num_steps``, ``step_size`` or ``direction``.

    References:
      Madry et al., "Towards Deep Learning Models Resistant to Adversarial Attacks", ICLR 2018.
    """
    num_steps = checks.integer("num_steps", num_steps)
    checks.one_of("direction", direction, DIRECTIONS)
    if optimizer is None:
        alpha: Any = step_size
        if not isinstance(step_size, jax.Array):
            alpha = checks.positive("step_size", step_size)
        alpha = alpha if maximize else -alpha
    grad_fn = jax.grad(objective, has_aux=has_aux)

    def step(_: jax.Array, carry: tuple[jax.Array, Any, Any]) -> tuple[jax.Array, Any, Any]:
        x, opt_state, seen = carry
        g, aux = grad_fn(x) if has_aux else (grad_fn(x), None)
        if transform is not None:
            g = transform(g)
        if observe is not None:
            seen = observe(seen, x, aux)
        if optimizer is not None:
            updates, opt_state = optimizer.update(-g if maximize else g, opt_state, x)
            x = optax.apply_updates(x, updates)
        else:
            d = jnp.sign(g) if direction == "sign" else unit_l2(g)
            d = alpha * d
            x = x + (d if mask is None else d * mask)
        return (x if project is None else project(x)), opt_state, seen

    opt_state = optimizer.init(x0) if optimizer is not None else None
    x, _, seen = jax.lax.fori_loop(0, num_steps, step, (x0, opt_state, observed))
    return (x, seen) if observe is not None else x
