"""The input-gradient engine of the penalties: scores by name, ``fast`` and ``autodiff``.

:func:`penalize_input_gradients` differentiates a functional of input gradients in the
params, either by reverse-over-reverse (``autodiff``, the oracle) or by one forward-mode
directional derivative (``fast``, METHODS §1.7).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import jax
import jax.numpy as jnp

from jaxinterp.core import checks
from jaxinterp.core.protocols import SHARED_LOGITS, ApplyFn
from jaxinterp.core.scores import SCORES, per_example_score, score_of_logits

__all__ = [
    "IMPLS",
    "SCORES",
    "SHARED_LOGITS",
    "check_batch",
    "check_impl",
    "check_score",
    "input_gradient",
    "penalize_input_gradients",
    "per_example_score",
    "share_logits",
    "summed_score",
    "summed_score_with_logits",
]


def check_batch(
    apply_fn: ApplyFn | None, params: Any, x: Any, y: Any, *, labels: bool = True
) -> tuple[jax.Array, Any]:
    """Call-time checks of a penalty's batch; returns ``(x, y)`` as arrays.

    ``x`` must be float inputs ``[B, ...]`` with ``B >= 1`` (images channels last; raw
    ``uint8`` images are refused with the ``x.astype(jnp.float32) / 255`` hint); with
    ``labels``, ``y`` integer labels ``[B]``, each in ``[0, K)`` when concrete (``K`` from
    the shape of ``apply_fn``'s logits). Shapes and dtypes are checked under ``jit`` too.
    """
    x = checks.array(x, "x", min_ndim=2, image=True)
    if labels:
        k = checks.num_classes(checks.function("apply_fn", apply_fn), params, x)
        y = checks.labels(y, x.shape[0], "y", num_classes=k)
    return x, y


def check_score(score: str) -> str:
    """Validates a score name (one of :data:`~jaxinterp.core.SCORES`)."""
    return checks.one_of("score", score, SCORES)


def summed_score(
    apply_fn: ApplyFn, params: Any, y: jax.Array, score: str
) -> Callable[[jax.Array], jax.Array]:
    """``S(x) = Σ_b s_b(x_b)``: its input gradient is the per-example gradients.

    Exact because examples do not interact (no batch statistics in ``apply_fn``).
    """
    return lambda x: jnp.sum(per_example_score(apply_fn, params, x, y, score))


def _scores_and_logits(
    apply_fn: ApplyFn, params: Any, x: jax.Array, y: jax.Array, score: str
) -> tuple[jax.Array, jax.Array]:
    logits = apply_fn(params, x)
    return score_of_logits(logits, y, score), logits


def summed_score_with_logits(
    apply_fn: ApplyFn, params: Any, y: jax.Array, score: str
) -> Callable[[jax.Array], tuple[jax.Array, jax.Array]]:
    """``x -> (S(x), logits [B, K])``: :func:`summed_score` with the logits it computed, for
    ``has_aux`` derivatives that hand them to the train step (:func:`share_logits`)."""

    def fn(x: jax.Array) -> tuple[jax.Array, jax.Array]:
        scores, logits = _scores_and_logits(apply_fn, params, x, y, score)
        return jnp.sum(scores), logits

    return fn


def share_logits(
    out: tuple[jax.Array, dict[str, jax.Array]], logits: jax.Array | None
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """``out`` with the logits at ``x`` (params attached) under :data:`SHARED_LOGITS`;
    ``out`` itself when there are none."""
    if logits is None:
        return out
    value, diags = out
    return value, {**diags, SHARED_LOGITS: logits}


def input_gradient(
    apply_fn: ApplyFn, params: Any, x: jax.Array, y: jax.Array, score: str
) -> jax.Array:
    """Per-example input gradients ``g_b = ∇ₓ s_b(x_b)``, shaped like ``x``."""
    return jax.grad(summed_score(apply_fn, params, y, score))(x)


IMPLS = ("fast", "autodiff")


def check_impl(impl: str) -> str:
    """Validates ``impl`` (``fast``: the identities of METHODS §1.7; ``autodiff``: the oracle)."""
    return checks.one_of("impl", impl, IMPLS)


def penalize_input_gradients(
    functional: Callable[..., tuple[jax.Array, dict[str, jax.Array]]],
    apply_fn: ApplyFn,
    params: Any,
    xs: list[jax.Array | Callable[[jax.Array], jax.Array]],
    y: jax.Array,
    score: str,
    impl: str,
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
      xs: the points, each ``[B, ...]`` (e.g. ``[x, x + δ]``); a later point may instead be
        a function of the first point's gradient ``sg(g_0)`` (e.g. CURE's
        ``g -> x + h · sign(g)/‖sign(g)‖``), so that ``g_0`` is computed once and serves
        both the point and ``F``.
      detached: indices of points whose gradient ``F`` stop-gradients (``∂F/∂g_i = 0``): the
        fast path leaves them out of the jvp instead of pushing a zero tangent through.
    """
    n = len(xs)
    first = xs[0]
    if callable(first):
        raise TypeError("the first point must be an array; later ones may be functions of g_0")
    if impl == "autodiff":
        fn = summed_score_with_logits(apply_fn, params, y, score)
        g0, logits = jax.grad(fn, has_aux=True)(first)
        points = _resolve(xs, g0)
        gs = [g0] + [input_gradient(apply_fn, params, xi, y, score) for xi in points[1:]]
        return share_logits(functional(*gs), logits)
    frozen = jax.lax.stop_gradient(params)
    found: dict[int, jax.Array] = {}
    if any(callable(xi) for xi in xs):
        found[0] = input_gradient(apply_fn, frozen, first, y, score)
    points = _resolve(xs, found.get(0))
    todo = [i for i in range(n) if i not in found]
    if todo:
        batch = jnp.concatenate([points[i] for i in todo])
        grads = input_gradient(apply_fn, frozen, batch, jnp.concatenate([y] * len(todo)), score)
        found.update(zip(todo, jnp.split(grads, len(todo)), strict=True))
    gs = [jax.lax.stop_gradient(found[i]) for i in range(n)]
    (value, diags), dirs = jax.value_and_grad(functional, argnums=tuple(range(n)), has_aux=True)(
        *gs
    )
    live = [i for i in range(n) if i not in detached]
    ys = jnp.concatenate([y] * len(live))
    (_, logits), (surrogate, _) = jax.jvp(
        lambda z: _scores_and_logits(apply_fn, params, z, ys, score),
        (jnp.concatenate([points[i] for i in live]),),
        (jax.lax.stop_gradient(jnp.concatenate([dirs[i] for i in live])),),
    )
    surrogate = jnp.sum(surrogate)
    out = (value + surrogate - jax.lax.stop_gradient(surrogate), diags)
    if live and live[0] == 0:  # the first rows are the forward pass at xs[0]
        out = share_logits(out, logits[: first.shape[0]])
    return out


def _resolve(
    xs: list[jax.Array | Callable[[jax.Array], jax.Array]], g0: jax.Array | None
) -> list[jax.Array]:
    """The points, each function of ``g_0`` called on ``sg(g_0)`` (none when ``g0`` is None)."""
    if g0 is None:
        return cast(list[jax.Array], xs)
    sg = jax.lax.stop_gradient(g0)
    return [xi(sg) if callable(xi) else xi for xi in xs]
