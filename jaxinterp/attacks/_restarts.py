"""Random restarts of any randomised label attack: per example, the first run that succeeds."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jaxinterp.core import checks
from jaxinterp.core.ops import per_example
from jaxinterp.core.protocols import ApplyFn, Attack

__all__ = ["with_restarts"]


def with_restarts(attack: Attack, num_restarts: int) -> Attack:
    """Runs ``attack`` ``num_restarts`` times from independent keys; keeps per example the
    first run whose ``x_adv`` is misclassified.

    With keys ``k_r = split(key, R)[r]`` and ``x_r = attack(apply_fn, params, x, y,
    key=k_r)``, per example ``x_adv = x_{r*}`` for the least ``r*`` with
    ``argmax f(x_{r*}) ≠ y``, else ``x_{R−1}`` (the last run). Runs are a ``lax.scan``, so
    the attack is traced once whatever ``R``. A search-type attack's NamedTuple contributes
    its first field, ``x_adv``; the wrapper returns ``x_adv`` alone. Meant for attacks with
    a random start (e.g. :func:`pgd`); the restarts of :func:`apgd` are its own
    ``num_restarts``.

    Args:
      attack: ``attack(apply_fn, params, x, y, *, key) -> x_adv`` (untargeted: ``y`` are the
        true labels).
      num_restarts: ``R >= 1``; ``1`` calls ``attack`` once with the key as given.

    Returns:
      ``restarted(apply_fn, params, x, y, *, key=None) -> x_adv [B, ...]``, jittable; ``key``
      is required when ``R > 1``.

    Raises:
      ArgumentTypeError: ``attack`` is not callable or ``num_restarts`` not an integer; the
        returned attack raises it for a missing ``key`` with ``R > 1``.
      ValueError: ``num_restarts < 1``.

    References:
      Madry et al., "Towards Deep Learning Models Resistant to Adversarial Attacks", ICLR 2018
      (PGD with random restarts).
    """
    checks.function("attack", attack)
    num_restarts = checks.integer("num_restarts", num_restarts)

    def first_field(out: Any) -> jax.Array:
        return out[0] if isinstance(out, tuple) else out

    def restarted(
        apply_fn: ApplyFn,
        params: Any,
        x: jax.Array,
        y: jax.Array,
        *,
        key: jax.Array | None = None,
    ) -> jax.Array:
        if num_restarts == 1:
            return first_field(attack(apply_fn, params, x, y, key=key))
        key = checks.key(key, required_by=f"with_restarts(num_restarts={num_restarts})")
        x = checks.array(x, "x", min_ndim=2, image=True)
        y = checks.labels(y, x.shape[0], "y")

        def run(
            carry: tuple[jax.Array, jax.Array], k: jax.Array
        ) -> tuple[tuple[jax.Array, jax.Array], None]:
            out, found = carry
            x_r = first_field(attack(apply_fn, params, x, y, key=k)).astype(x.dtype)
            wrong = jnp.argmax(apply_fn(params, x_r), axis=-1) != y
            out = jnp.where(per_example(found, x.ndim), out, x_r)
            return (out, found | wrong), None

        init = (x, jnp.zeros(x.shape[0], jnp.bool_))
        (out, _), _ = jax.lax.scan(run, init, jax.random.split(key, num_restarts))
        return jax.lax.stop_gradient(out)

    restarted.__doc__ = f"{num_restarts} random restart(s) of {attack!r}; see `with_restarts`."
    return restarted
