"""Attacks on explanations: small perturbations that keep the label but change the map.

Both attacks differentiate an attribution (e.g. the input gradient) with respect to the input,
so they need the model's input Hessian: attack a smooth model, or the β-softplus twin of a
ReLU model (:func:`jaxinterp.models._surrogate.softplus_surrogate`) passed as
``surrogate_apply_fn``, which then supplies the gradients while ``apply_fn`` judges the label.
Maps are ``h = Σ_channels |attribution|`` normalised to sum to 1 per example.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxinterp.attacks._pgd import _check_bounds, _check_num_steps, _check_positive

__all__ = [
    "AttributionAttackResult",
    "frame_target",
    "normalized_map",
    "saliency_map",
    "targeted_manipulation",
    "topk_attack",
    "topk_intersection",
]

ApplyFn = Callable[[Any, jax.Array], jax.Array]
AttributionFn = Callable[[ApplyFn, Any, jax.Array, jax.Array], jax.Array]
"""``attribution_fn(apply_fn, params, x [B, ...], label [B]) -> [B, ...]``, differentiable."""


class AttributionAttackResult(NamedTuple):
    """What an attribution attack returns (all arrays batched along axis 0).

    Attributes:
      x_adv: The perturbed inputs, shaped like ``x``.
      label_kept: ``[B]`` bool, ``argmax apply_fn(x_adv) == argmax apply_fn(x)``.
      score: ``[B]``: the top-k intersection of the clean and attacked maps
        (:func:`topk_attack`) or ``‖h(x_adv) − h_target‖²`` (:func:`targeted_manipulation`).
    """

    x_adv: jax.Array
    label_kept: jax.Array
    score: jax.Array


def saliency_map(attribution: jax.Array) -> jax.Array:
    """``|a|`` summed over the channel (last) axis: ``[B, H, W, C] -> [B, H, W]``; ``[B, F]``
    inputs give ``|a|`` as it is."""
    a = jnp.abs(attribution)
    return jnp.sum(a, axis=-1) if a.ndim > 2 else a


def normalized_map(attribution: jax.Array) -> jax.Array:
    """:func:`saliency_map` divided by its per-example sum (an all-zero map stays zero)."""
    h = saliency_map(attribution)
    total = jnp.sum(h, axis=tuple(range(1, h.ndim)), keepdims=True)
    return h / jnp.where(total > 0, total, 1.0)


def _topk_mask(h: jax.Array, k: int) -> jax.Array:
    """``[B, D]`` 0/1 indicator of each row's ``k`` largest entries of the flattened ``h``."""
    flat = h.reshape(h.shape[0], -1)
    _, idx = jax.lax.top_k(flat, k)
    return jnp.sum(jax.nn.one_hot(idx, flat.shape[1], dtype=flat.dtype), axis=1)


def topk_intersection(map_a: jax.Array, map_b: jax.Array, k: int) -> jax.Array:
    """``|top_k(a) ∩ top_k(b)| / k`` per example, in ``[0, 1]``; maps ``[B, ...]`` -> ``[B]``."""
    return jnp.sum(_topk_mask(map_a, k) * _topk_mask(map_b, k), axis=1) / k


def frame_target(shape: tuple[int, int], width: int = 1) -> jax.Array:
    """A target map ``[H, W]`` with uniform mass on a border of ``width`` pixels, summing to 1.

    Raises:
      ValueError: For a shape that is not two positive ints, or a frame that is empty or
        covers the whole map.
    """
    try:
        h, w = (operator.index(s) for s in shape)
        width = operator.index(width)
    except (TypeError, ValueError):
        raise ValueError(
            f"shape must be (H, W) ints and width an int, got {shape!r}, {width!r}"
        ) from None
    if min(h, w) < 1 or width < 1 or 2 * width >= min(h, w):
        raise ValueError(
            f"width must be >= 1 and leave an interior: 2 * width < min(H, W); got "
            f"shape={shape!r}, width={width!r}"
        )
    m = np.ones((h, w), np.float32)
    m[width:-width, width:-width] = 0.0
    return jnp.asarray(m / m.sum())


def _setup(apply_fn, params, x, label, bounds, surrogate_apply_fn):
    """Shared call-time checks; returns (params, x, clean prediction, label, gradient model)."""
    x = jnp.asarray(x)
    if x.ndim < 2 or not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"x must be a float array [B, ...], got {x.dtype}{list(x.shape)}")
    if bounds is not None and not isinstance(x, jax.core.Tracer) and x.size:
        if float(jnp.min(x)) < bounds[0] or float(jnp.max(x)) > bounds[1]:
            raise ValueError(f"x lies outside bounds={bounds}; pass the input range as bounds")
    params, x = jax.lax.stop_gradient(params), jax.lax.stop_gradient(x)
    pred = jnp.argmax(apply_fn(params, x), axis=-1)
    if label is None:
        label = pred
    label = jnp.asarray(label)
    if label.shape != x.shape[:1] or not jnp.issubdtype(label.dtype, jnp.integer):
        raise ValueError(
            f"label must be None or integer labels [B] = ({x.shape[0]},), got "
            f"{label.dtype}{list(label.shape)}"
        )
    return params, x, pred, label, surrogate_apply_fn or apply_fn


def _project(x_adv, x, epsilon, bounds):
    x_adv = jnp.clip(x_adv, x - epsilon, x + epsilon)
    return x_adv if bounds is None else jnp.clip(x_adv, bounds[0], bounds[1])


def _where(cond: jax.Array, a: jax.Array, b: jax.Array) -> jax.Array:
    return jnp.where(cond.reshape(cond.shape + (1,) * (a.ndim - 1)), a, b)


def _check_common(attribution_fn, epsilon, num_steps, bounds):
    if not callable(attribution_fn):
        raise ValueError(f"attribution_fn must be callable, got {attribution_fn!r}")
    epsilon, num_steps, bounds = (
        _check_positive("epsilon", epsilon),
        _check_num_steps(num_steps),
        _check_bounds(bounds),
    )
    if bounds is not None and epsilon > bounds[1] - bounds[0]:
        raise ValueError(f"epsilon={epsilon} is outside the input range {bounds}")
    return epsilon, num_steps, bounds


def topk_attack(
    attribution_fn: AttributionFn,
    *,
    epsilon: float,
    num_steps: int,
    step_size: float | None = None,
    k: int,
    bounds: tuple[float, float] | None = (0.0, 1.0),
) -> Callable[..., Any]:
    """Builds the label-preserving top-k attack on an attribution (Ghorbani et al.).

    With ``T`` the indices of the ``k`` largest entries of the clean map ``h(x)`` (channel-
    summed ``|attribution|``, normalised to sum 1), the attack descends the attribution mass
    left on them, ``D(x') = Σ_{i∈T} h_i(x')``, with signed steps in the L∞ ball::

        x^{t+1} = Π(x^t − α · sign(∇ₓ D(x^t))),   Π: clip to [x − ε, x + ε] and bounds

    and returns, per example, the best iterate (lowest top-k intersection with the clean
    map, then lowest ``D``) among those whose predicted label equals the clean prediction;
    the clean input itself is a candidate, so the label is always kept.

    Args:
      attribution_fn: ``attribution_fn(apply_fn, params, x, label) -> [B, ...]``, twice
        differentiable in ``x`` (e.g. the input gradient of a softplus model's logit).
      epsilon: L∞ radius ``ε > 0`` (at most ``hi − lo`` with bounds).
      num_steps: Number of steps ``>= 1``.
      step_size: ``α > 0``; defaults to ``2.5 · ε / num_steps``.
      k: Number of top features ``>= 1`` (checked against the map size when called).
      bounds: Valid input range ``(lo, hi)``, or ``None``.

    Returns:
      ``attack(apply_fn, params, x, label=None, *, surrogate_apply_fn=None)`` ->
      :class:`AttributionAttackResult` with ``score`` the top-k intersection. ``label``
      (default: the clean prediction) is the class explained; ``surrogate_apply_fn`` (e.g.
      a softplus twin) replaces ``apply_fn`` inside the attribution. Pure and jittable
      (``jax.jit(attack, static_argnums=0)``); ``x_adv`` carries no gradient.

    Raises:
      ValueError: On invalid hyperparameters, ``k`` larger than the map, bad ``label``.

    References:
      Ghorbani, Abid, Zou, "Interpretation of Neural Networks Is Fragile", AAAI 2019.
    """
    epsilon, num_steps, bounds = _check_common(attribution_fn, epsilon, num_steps, bounds)
    step_size = (
        2.5 * epsilon / num_steps if step_size is None else _check_positive("step_size", step_size)
    )
    try:
        k_int = None if isinstance(k, bool) else operator.index(k)
    except TypeError:
        k_int = None
    if k_int is None or k_int < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    k = k_int

    def attack(apply_fn, params, x, label=None, *, surrogate_apply_fn=None):
        params, x, pred, label, grad_fn = _setup(
            apply_fn, params, x, label, bounds, surrogate_apply_fn
        )
        h0 = normalized_map(attribution_fn(grad_fn, params, x, label))
        if k > h0[0].size:
            raise ValueError(f"k={k} exceeds the number of map entries {h0[0].size}")
        top = jax.lax.stop_gradient(_topk_mask(h0, k))

        def mass(x_adv):
            h = normalized_map(attribution_fn(grad_fn, params, x_adv, label))
            d = jnp.sum(h.reshape(h.shape[0], -1) * top, axis=1)
            return jnp.sum(d), (d, jnp.sum(_topk_mask(h, k) * top, axis=1) / k)

        def keep_best(x_adv, d, inter, best):
            best_x, best_inter, best_d = best
            kept = jnp.argmax(apply_fn(params, x_adv), axis=-1) == pred
            better = kept & ((inter < best_inter) | ((inter == best_inter) & (d < best_d)))
            return (
                _where(better, x_adv, best_x),
                jnp.where(better, inter, best_inter),
                jnp.where(better, d, best_d),
            )

        def step(_, carry):
            x_adv, best = carry
            (_, (d, inter)), g = jax.value_and_grad(mass, has_aux=True)(x_adv)
            best = keep_best(x_adv, d, inter, best)
            return _project(x_adv - step_size * jnp.sign(g), x, epsilon, bounds), best

        inf = jnp.full(x.shape[:1], jnp.inf, h0.dtype)
        x_last, best = jax.lax.fori_loop(0, num_steps, step, (x, (x, inf, inf)))
        _, (d, inter) = mass(x_last)
        best_x, best_inter, _ = keep_best(x_last, d, inter, best)
        best_x = jax.lax.stop_gradient(best_x)
        kept = jnp.argmax(apply_fn(params, best_x), axis=-1) == pred
        return AttributionAttackResult(best_x, kept, best_inter)

    return attack


def targeted_manipulation(
    attribution_fn: AttributionFn,
    *,
    epsilon: float,
    num_steps: int,
    learning_rate: float,
    gamma: float = 0.5,
    bounds: tuple[float, float] | None = (0.0, 1.0),
) -> Callable[..., Any]:
    """Builds the targeted explanation manipulation of Dombrowski et al.

    Adam steps (projected to the L∞ ball and bounds after each) minimise, per example,

        L(x') = γ ‖h(x') − h_t‖² + (1 − γ) ‖softmax f(x') − softmax f(x)‖²

    with ``h`` the normalised map and ``h_t`` the target map (normalised to sum 1). The
    output term keeps the prediction; in addition the best iterate (lowest ``L``) whose
    predicted label equals the clean one is returned per example (the clean input is a
    candidate), so ``L`` never exceeds its clean value and the label is always kept.

    Args:
      attribution_fn: As :func:`topk_attack`.
      epsilon: L∞ radius ``ε > 0``.
      num_steps: Adam steps ``>= 1``.
      learning_rate: Adam step size ``> 0`` (input units, e.g. ``ε / 10``).
      gamma: Weight ``γ ∈ [0, 1]`` of the map term.
      bounds: Valid input range ``(lo, hi)``, or ``None``.

    Returns:
      ``attack(apply_fn, params, x, h_target, label=None, *, surrogate_apply_fn=None)`` ->
      :class:`AttributionAttackResult` with ``score = ‖h(x_adv) − h_t‖²``. ``h_target`` is
      map-shaped (``[H, W]``, shared, or ``[B, H, W]``; see :func:`frame_target`). Other
      arguments as :func:`topk_attack`. Pure and jittable.

    Raises:
      ValueError: On invalid hyperparameters or a mis-shaped ``h_target``.

    References:
      Dombrowski et al., "Explanations can be manipulated and geometry is to blame",
      NeurIPS 2019.
    """
    epsilon, num_steps, bounds = _check_common(attribution_fn, epsilon, num_steps, bounds)
    learning_rate = _check_positive("learning_rate", learning_rate)
    if not (isinstance(gamma, (int, float)) and not isinstance(gamma, bool) and 0 <= gamma <= 1):
        raise ValueError(f"gamma must be a number in [0, 1], got {gamma!r}")
    gamma, opt = float(gamma), optax.adam(learning_rate)

    def attack(apply_fn, params, x, h_target, label=None, *, surrogate_apply_fn=None):
        params, x, pred, label, grad_fn = _setup(
            apply_fn, params, x, label, bounds, surrogate_apply_fn
        )
        h0 = normalized_map(attribution_fn(grad_fn, params, x, label))
        h_t = jnp.asarray(h_target, h0.dtype)
        if h_t.shape not in (h0.shape, h0.shape[1:]):
            raise ValueError(
                f"h_target must have shape {h0.shape[1:]} or {h0.shape}, got {h_t.shape}"
            )
        h_t = normalized_map(jnp.broadcast_to(h_t, h0.shape)[..., None])
        axes = tuple(range(1, h0.ndim))
        p0 = jax.nn.softmax(grad_fn(params, x), axis=-1)

        def losses(x_adv):
            h = normalized_map(attribution_fn(grad_fn, params, x_adv, label))
            dist = jnp.sum(jnp.square(h - h_t), axis=axes)
            out = jnp.sum(jnp.square(jax.nn.softmax(grad_fn(params, x_adv), -1) - p0), -1)
            total = gamma * dist + (1.0 - gamma) * out
            return jnp.sum(total), (total, dist)

        def keep_best(x_adv, total, dist, best):
            kept = jnp.argmax(apply_fn(params, x_adv), axis=-1) == pred
            better = kept & (total < best[1])
            return tuple(
                _where(better, new, old)
                for new, old in zip((x_adv, total, dist), best, strict=True)
            )

        def step(_, carry):
            x_adv, state, best = carry
            (_, (total, dist)), g = jax.value_and_grad(losses, has_aux=True)(x_adv)
            best = keep_best(x_adv, total, dist, best)
            updates, state = opt.update(g, state, x_adv)
            return _project(optax.apply_updates(x_adv, updates), x, epsilon, bounds), state, best

        inf = jnp.full(x.shape[:1], jnp.inf, h0.dtype)
        carry = (x, opt.init(x), (x, inf, inf))
        x_last, _, best = jax.lax.fori_loop(0, num_steps, step, carry)
        _, (total, dist) = losses(x_last)
        best_x, _, best_dist = keep_best(x_last, total, dist, best)
        best_x = jax.lax.stop_gradient(best_x)
        kept = jnp.argmax(apply_fn(params, best_x), axis=-1) == pred
        return AttributionAttackResult(best_x, kept, best_dist)

    return attack
