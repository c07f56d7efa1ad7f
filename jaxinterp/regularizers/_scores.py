"""The scalar a penalty differentiates w.r.t. the input, chosen by name."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

__all__ = [
    "IMPLS",
    "SCORES",
    "check_impl",
    "check_score",
    "input_gradient",
    "penalize_input_gradients",
    "per_example_score",
    "summed_score",
]

SCORES = ("loss", "logit", "log_softmax")


def check_score(score: str) -> str:
    """Validates a score name (at the Python boundary, before tracing)."""
    if score not in SCORES:
        raise ValueError(f"unknown score {score!r}; expected one of {', '.join(SCORES)}")
    return score


def per_example_score(
    apply_fn: Callable[[Any, jax.Array], jax.Array],
    params: Any,
    x: jax.Array,
    y: jax.Array,
    score: str,
) -> jax.Array:
    """``s_b(x_b)`` for each example, ``[B]``.

    ``loss``: cross-entropy ``L(x, y)``; ``logit``: the true-class logit ``f_y(x)``;
    ``log_softmax``: ``log p_y(x)``.
    """
    logits = apply_fn(params, x)
    if score == "loss":
        return optax.softmax_cross_entropy_with_integer_labels(logits, y)
    if score == "logit":
        return jnp.take_along_axis(logits, y[:, None], axis=-1)[:, 0]
    if score == "log_softmax":
        return jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=-1)[:, 0]
    raise ValueError(f"unknown score {score!r}; expected one of {', '.join(SCORES)}")


def summed_score(apply_fn, params, y, score: str) -> Callable[[jax.Array], jax.Array]:
    """``S(x) = Σ_b s_b(x_b)``: its input gradient is the per-example gradients.

    Exact because examples do not interact (no batch statistics in ``apply_fn``).
    """
    return lambda x: jnp.sum(per_example_score(apply_fn, params, x, y, score))


def input_gradient(apply_fn, params, x, y, score: str) -> jax.Array:
    """Per-example input gradients ``g_b = ∇ₓ s_b(x_b)``, shaped like ``x``."""
    return jax.grad(summed_score(apply_fn, params, y, score))(x)


IMPLS = ("fast", "autodiff")


def check_impl(impl: str) -> str:
    """Validates ``impl`` (``fast``: the identities of METHODS §1.7; ``autodiff``: the oracle)."""
    if impl not in IMPLS:
        raise ValueError(f"unknown impl {impl!r}; expected one of {', '.join(IMPLS)}")
    return impl


def penalize_input_gradients(
    functional: Callable[..., tuple[jax.Array, dict[str, jax.Array]]],
    apply_fn,
    params,
    xs: list[jax.Array],
    y: jax.Array,
    score: str,
    impl: str,
    known: dict[int, jax.Array] | None = None,
    detached: tuple[int, ...] = (),
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """``F(g_0, ..., g_n)`` of the input gradients ``g_i = ∇ₓ s(x_i)``, differentiable in params.

    ``autodiff`` computes the ``g_i`` with params attached and lets ``jax.grad`` go
    reverse-over-reverse. ``fast`` uses, for constants ``c_i = sg(∂F/∂g_i)``,

        ∇_θ F(g(θ)) = Σ_i ∇_θ ⟨g_i(θ), c_i⟩ = ∇_θ Σ_i jvp(S_θ, x_i, c_i),

    a reverse pass over one forward-mode directional derivative of the summed score ``S``
    (all points batched together), exactly — no reverse-over-reverse. The returned value
    is ``F`` itself; only its params-gradient goes through the jvp surrogate.

    Args:
      functional: ``F(*gs) -> (scalar, diagnostics)``, on gradients shaped like ``x``.
      xs: the points, each ``[B, ...]`` (e.g. ``[x, x + δ]``).
      known: gradients already computed with params stop-gradiented, by index (fast only).
      detached: indices of points whose gradient ``F`` stop-gradients (``∂F/∂g_i = 0``): the
        fast path leaves them out of the jvp instead of pushing a zero tangent through.
    """
    n = len(xs)
    if impl == "autodiff":
        gs = [input_gradient(apply_fn, params, xi, y, score) for xi in xs]
        return functional(*gs)
    known = known or {}
    frozen = jax.lax.stop_gradient(params)
    todo = [i for i in range(n) if i not in known]
    gs = dict(known)
    if todo:
        batch = jnp.concatenate([xs[i] for i in todo])
        grads = input_gradient(apply_fn, frozen, batch, jnp.concatenate([y] * len(todo)), score)
        gs.update(zip(todo, jnp.split(grads, len(todo)), strict=True))
    gs = [jax.lax.stop_gradient(gs[i]) for i in range(n)]
    (value, diags), dirs = jax.value_and_grad(functional, argnums=tuple(range(n)), has_aux=True)(
        *gs
    )
    live = [i for i in range(n) if i not in detached]
    surrogate = jax.jvp(
        summed_score(apply_fn, params, jnp.concatenate([y] * len(live)), score),
        (jnp.concatenate([xs[i] for i in live]),),
        (jax.lax.stop_gradient(jnp.concatenate([dirs[i] for i in live])),),
    )[1]
    return value + surrogate - jax.lax.stop_gradient(surrogate), diags
