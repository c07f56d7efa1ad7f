"""Adversarial-training baselines as penalties: PGD-AT and TRADES.

Neither involves a higher-order derivative: the attack runs with params held constant
(``stop_gradient``) and the penalty differentiates the model at the attack's output only,
so there is one implementation (no ``impl`` switch).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from jaxinterp import attacks
from jaxinterp.core import checks
from jaxinterp.core.ascent import gradient_steps
from jaxinterp.core.losses import ce_loss
from jaxinterp.core.ops import project_ball
from jaxinterp.core.protocols import ApplyFn, Penalty

from ._engine import check_batch, share_logits

__all__ = ["adversarial_training", "trades"]


def adversarial_training(
    *,
    epsilon: float = 0.3,
    num_steps: int = 10,
    step_size: float | None = None,
    norm: str = "linf",
    bounds: tuple[float, float] | None = (0.0, 1.0),
) -> Penalty:
    """PGD adversarial training: ``R = mean_b L(x_adv_b, y_b)``.

    ``x_adv`` from PGD-K with a random start (:func:`jaxinterp.attacks.pgd`). Madry et al.
    train on ``R`` alone: set the config's ``ce_weight = 0`` and this penalty's weight to 1.

    Returns:
      ``penalty(apply_fn, params, x, y, *, key) -> (R, {"adv_accuracy"})``.

    References:
      Madry, Makelov, Schmidt, Tsipras, Vladu, "Towards deep learning models resistant to
      adversarial attacks", ICLR 2018.
    """
    attack = attacks.pgd(
        epsilon=epsilon, num_steps=num_steps, step_size=step_size, norm=norm, bounds=bounds
    )

    def penalty(
        apply_fn: ApplyFn, params: Any, x: jax.Array, y: jax.Array, *, key: jax.Array
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        x_adv = attack(apply_fn, params, x, y, key=key)
        logits = apply_fn(params, x_adv)
        loss = jnp.mean(ce_loss(logits, y))
        return loss, {"adv_accuracy": jnp.mean(jnp.argmax(logits, -1) == y)}

    return penalty


def _kl(log_p: jax.Array, log_q: jax.Array) -> jax.Array:
    """Per-example ``KL(p ‖ q)`` from log-probabilities ``[B, K] -> [B]`` (optax's
    ``kl_divergence_with_log_targets``: ``Σ_k p_k (log p_k − log q_k)``)."""
    return optax.losses.kl_divergence_with_log_targets(log_q, log_p)


def trades(
    *,
    epsilon: float = 0.3,
    num_steps: int = 10,
    step_size: float | None = None,
    bounds: tuple[float, float] | None = (0.0, 1.0),
) -> Penalty:
    """TRADES: ``R = mean_b KL(p(x_b) ‖ p(x_adv_b))``; use it with weight β (reference 6).

    ``x_adv`` maximises the same KL in the L∞ ball by signed-gradient ascent from
    ``x + 0.001·N(0, I)``, with ``p(x)`` and params held constant; default step
    ``2.5 · ε / num_steps``. The clean cross-entropy is the train step's own term.

    Returns:
      ``penalty(apply_fn, params, x, y, *, key) -> (R, {})``, plus the logits at ``x`` for the
      train step's cross-entropy (:data:`~jaxinterp.regularizers.SHARED_LOGITS`).

    References:
      Zhang, Yu, Jiao, Xing, El Ghaoui, Jordan, "Theoretically principled trade-off between
      robustness and accuracy", ICML 2019.
    """
    attacks.pgd(epsilon=epsilon, num_steps=num_steps, step_size=step_size, bounds=bounds)
    alpha = checks.step_size(step_size, epsilon, num_steps)

    def penalty(
        apply_fn: ApplyFn, params: Any, x: jax.Array, y: jax.Array, *, key: jax.Array
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        x, _ = check_batch(apply_fn, params, x, y, labels=False)  # y is unused.
        frozen = jax.lax.stop_gradient(params)
        log_p = jax.lax.stop_gradient(jax.nn.log_softmax(apply_fn(frozen, x)))

        def objective(z: jax.Array) -> jax.Array:
            return jnp.sum(_kl(log_p, jax.nn.log_softmax(apply_fn(frozen, z))))

        def project(z: jax.Array) -> jax.Array:
            return project_ball(z, x, epsilon, "linf", bounds)

        z0 = x + 0.001 * jax.random.normal(key, x.shape, x.dtype)
        z0 = z0 if bounds is None else jnp.clip(z0, *bounds)
        x_adv = gradient_steps(objective, z0, num_steps=num_steps, step_size=alpha, project=project)
        x_adv = jax.lax.stop_gradient(x_adv)
        logits = apply_fn(params, x)
        kl = jnp.mean(_kl(jax.nn.log_softmax(logits), jax.nn.log_softmax(apply_fn(params, x_adv))))
        return share_logits((kl, {}), logits)

    return penalty
