"""Attacks on explanations: small perturbations that keep the label but change the map.

Both differentiate an attribution in the input, so they need a non-zero input Hessian: attack
a smooth model, or pass the β-softplus twin of a ReLU model (``models.softplus_surrogate``)
as ``surrogate_apply_fn``. Maps are ``h = Σ_channels |attribution|``, normalised to sum 1.
"""

from __future__ import annotations

import functools
import numbers
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


def normalized_map(attribution: jax.Array) -> jax.Array:
    """``h = Σ_c |a_c| / Σ |a|`` per example: ``[B, H, W, C] -> [B, H, W]`` (channels last;
    ``[B, F]`` is not channel-summed); an all-zero map stays zero."""
    h = jnp.abs(attribution)
    h = jnp.sum(h, axis=-1) if h.ndim > 2 else h
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
    """A map ``[H, W]`` with uniform mass on a border ``width`` pixels wide, summing to 1;
    raises ``ValueError`` unless ``shape`` is ``(H, W)`` and ``1 <= width < min(H, W) / 2``."""
    h, w = tuple(shape) if len(tuple(shape)) == 2 else (0, 0)
    if not (isinstance(width, numbers.Integral) and 1 <= width and 2 * width < min(h, w)):
        msg = f"shape=(H, W) and 1 <= width < min(H, W) / 2; got {shape!r}, width={width!r}"
        raise ValueError(f"frame_target needs {msg}")
    m = np.ones((h, w), np.float32)
    m[width:-width, width:-width] = 0.0
    return jnp.asarray(m / m.sum())


def _setup(
    attr_fn: AttributionFn, apply_fn: ApplyFn, params: Any, x: Any, label: Any, bounds: Any
) -> tuple[Any, jax.Array, jax.Array, jax.Array]:
    """Call-time checks; returns ``(params, x, label or the prediction, h(x))``."""
    x = jnp.asarray(x)
    if x.ndim < 2 or not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"x must be a float array [B, ...], got {x.dtype}{list(x.shape)}")
    if bounds is not None and not isinstance(x, jax.core.Tracer) and x.size:
        if float(jnp.min(x)) < bounds[0] or float(jnp.max(x)) > bounds[1]:
            raise ValueError(f"x lies outside bounds={bounds}; pass the input range as bounds")
    params, x = jax.lax.stop_gradient(params), jax.lax.stop_gradient(x)
    label = jnp.argmax(apply_fn(params, x), axis=-1) if label is None else jnp.asarray(label)
    if label.shape != x.shape[:1] or not jnp.issubdtype(label.dtype, jnp.integer):
        got = f"{label.dtype}{list(label.shape)}"
        raise ValueError(f"label must be None or integer labels [B] = ({x.shape[0]},), got {got}")
    return params, x, label, normalized_map(attr_fn(apply_fn, params, x, label))


Judged = tuple[jax.Array, jax.Array]
"""``(key, score)`` per example: the search keeps the iterate of lowest ``key``."""


def _search(
    apply_fn: ApplyFn,
    params: Any,
    x: jax.Array,
    judge: Callable[[jax.Array], Judged],
    move: Callable[[jax.Array, Any], tuple[jax.Array, Any, Judged]],
    state: Any,
    num_steps: int,
    epsilon: float,
    bounds: tuple[float, float] | None,
) -> AttributionAttackResult:
    """Runs ``x_{t+1}, s_{t+1} = Π(move(x_t, s_t))`` from ``x_0 = x``; returns per example the
    iterate of lowest ``judge`` key among ``x_0 … x_T`` that keep the label.

    ``move(x_t, s_t) -> (x_{t+1} before Π, s_{t+1}, judge(x_t))``: the step also judges its
    own input, so one forward/backward pass through the map serves both (``judge`` is
    called for the last iterate only)."""
    pred = jnp.argmax(apply_fn(params, x), axis=-1)

    def keep(x_adv: jax.Array, judged: Judged, best: tuple) -> tuple:
        best_x, best_key, best_score = best
        key, score = judged
        label_ok = jnp.argmax(apply_fn(params, x_adv), axis=-1) == pred
        better = label_ok & (key < best_key)
        best_x = jnp.where(better.reshape(better.shape + (1,) * (x.ndim - 1)), x_adv, best_x)
        return best_x, jnp.where(better, key, best_key), jnp.where(better, score, best_score)

    def step(_: jax.Array, carry: tuple[Any, ...]) -> tuple[Any, ...]:
        x_adv, state, best = carry
        moved, state, judged = move(x_adv, state)
        best = keep(x_adv, judged, best)
        moved = jnp.clip(moved, x - epsilon, x + epsilon)
        moved = moved if bounds is None else jnp.clip(moved, bounds[0], bounds[1])
        return moved, state, best

    no_key = jnp.full(x.shape[:1], jnp.inf, jnp.promote_types(x.dtype, jnp.float32))
    best = (x, no_key, jnp.zeros_like(no_key))
    x_last, _, best = jax.lax.fori_loop(0, num_steps, step, (x, state, best))
    x_adv, _, score = keep(x_last, judge(x_last), best)
    x_adv = jax.lax.stop_gradient(x_adv)
    label_kept = jnp.argmax(apply_fn(params, x_adv), axis=-1) == pred
    return AttributionAttackResult(x_adv, label_kept, score)


def _check_common(
    attribution_fn: Any, epsilon: Any, num_steps: Any, bounds: Any
) -> tuple[float, int, tuple[float, float] | None]:
    if not callable(attribution_fn):
        raise ValueError(f"attribution_fn must be callable, got {attribution_fn!r}")
    epsilon, num_steps = _check_positive("epsilon", epsilon), _check_num_steps(num_steps)
    bounds = _check_bounds(bounds)
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
) -> Callable[..., AttributionAttackResult]:
    """Builds the label-preserving top-k attack on an attribution (Ghorbani et al.).

    With ``T`` the ``k`` largest entries of the clean normalised map ``h(x)``, signed steps
    in the L∞ ball descend the attribution mass left on them, ``D(x') = Σ_{i∈T} h_i(x')``::

        x^{t+1} = Π(x^t − α · sign(∇ₓ D(x^t))),   Π: clip to [x − ε, x + ε] and bounds

    Per example, the result is the iterate with the lowest top-k intersection with the clean
    map (then lowest ``D``) among ``x`` and the iterates that keep the clean prediction.

    Args:
      attribution_fn: ``attribution_fn(apply_fn, params, x, label) -> [B, ...]``, twice
        differentiable in ``x`` (e.g. the input gradient of a softplus model's logit).
      epsilon: L∞ radius ``ε > 0`` (at most ``hi − lo`` with bounds).
      num_steps: Number of steps ``>= 1``.
      step_size: ``α > 0``; defaults to ``2.5 · ε / num_steps``.
      k: Number of top features ``>= 1`` (at most the map size).
      bounds: Valid input range ``(lo, hi)``, or ``None``.

    Returns:
      ``attack(apply_fn, params, x, label=None, *, surrogate_apply_fn=None)`` ->
      :class:`AttributionAttackResult`. ``label`` (default: the prediction) is the class
      explained; ``surrogate_apply_fn`` (e.g. a ReLU model's softplus twin) is differentiated
      instead of ``apply_fn``, which still gives labels, maps and scores. Jittable
      (``static_argnums=0, static_argnames="surrogate_apply_fn"``).

    Raises:
      ValueError: On invalid hyperparameters, ``k`` larger than the map, a bad ``label``.

    References:
      Ghorbani, Abid, Zou, "Interpretation of Neural Networks Is Fragile", AAAI 2019.
    """
    epsilon, num_steps, bounds = _check_common(attribution_fn, epsilon, num_steps, bounds)
    step_size = (
        2.5 * epsilon / num_steps if step_size is None else _check_positive("step_size", step_size)
    )
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    k = int(k)

    def attack(
        apply_fn: ApplyFn,
        params: Any,
        x: jax.Array,
        label: jax.Array | None = None,
        *,
        surrogate_apply_fn: ApplyFn | None = None,
    ) -> AttributionAttackResult:
        params, x, label, h0 = _setup(attribution_fn, apply_fn, params, x, label, bounds)
        if k > h0[0].size:
            raise ValueError(f"k={k} exceeds the number of map entries {h0[0].size}")
        top = jax.lax.stop_gradient(_topk_mask(h0, k))

        def mass(model: ApplyFn, x_adv: jax.Array) -> tuple[jax.Array, jax.Array]:
            h = normalized_map(attribution_fn(model, params, x_adv, label))
            return jnp.sum(h.reshape(top.shape) * top, axis=1), h

        def from_map(d: jax.Array, h: jax.Array) -> Judged:
            inter = jnp.sum(_topk_mask(h, k) * top, axis=1) / k
            return inter + d / (2 * k), inter  # Lexicographic: steps of 1/k beat d <= 1.

        def judge(x_adv: jax.Array) -> Judged:
            return from_map(*mass(apply_fn, x_adv))

        def total(model: ApplyFn, z: jax.Array) -> tuple[jax.Array, tuple]:
            d, h = mass(model, z)
            return jnp.sum(d), (d, h)

        def move(x_adv: jax.Array, state: None) -> tuple[jax.Array, None, Judged]:
            if surrogate_apply_fn is None:  # The gradient's own forward pass judges x_adv.
                g, aux = jax.grad(total, argnums=1, has_aux=True)(apply_fn, x_adv)
                judged = from_map(*aux)
            else:
                g = jax.grad(total, argnums=1, has_aux=True)(surrogate_apply_fn, x_adv)[0]
                judged = judge(x_adv)
            return x_adv - step_size * jnp.sign(g), state, judged

        return _search(apply_fn, params, x, judge, move, None, num_steps, epsilon, bounds)

    return attack


def targeted_manipulation(
    attribution_fn: AttributionFn,
    *,
    epsilon: float,
    num_steps: int,
    learning_rate: float,
    gamma: float = 0.5,
    bounds: tuple[float, float] | None = (0.0, 1.0),
) -> Callable[..., AttributionAttackResult]:
    """Builds the targeted explanation manipulation of Dombrowski et al.

    Adam steps, each projected to the L∞ ball and bounds, minimise per example

        L(x') = γ ‖h(x') − h_t‖² + (1 − γ) ‖softmax f(x') − softmax f(x)‖²

    (``h`` the normalised map, ``h_t`` the target renormalised to sum 1). The result is the
    iterate with the lowest ``L`` among ``x`` and the iterates that keep the clean prediction.

    Args:
      attribution_fn: As :func:`topk_attack`.
      epsilon: L∞ radius ``ε > 0``.
      num_steps: Adam steps ``>= 1``.
      learning_rate: Adam step size ``> 0`` in input units (e.g. ``ε / 10``).
      gamma: Weight ``γ ∈ [0, 1]`` of the map term.
      bounds: Valid input range ``(lo, hi)``, or ``None``.

    Returns:
      ``attack(apply_fn, params, x, h_target, label=None, *, surrogate_apply_fn=None)`` ->
      :class:`AttributionAttackResult` (``score``: ``‖h(x_adv) − h_t‖²``); ``h_target`` is
      ``[H, W]`` (shared; see :func:`frame_target`) or ``[B, H, W]``; the rest as
      :func:`topk_attack`.

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

    def attack(
        apply_fn: ApplyFn,
        params: Any,
        x: jax.Array,
        h_target: jax.Array,
        label: jax.Array | None = None,
        *,
        surrogate_apply_fn: ApplyFn | None = None,
    ) -> AttributionAttackResult:
        params, x, label, h0 = _setup(attribution_fn, apply_fn, params, x, label, bounds)
        h_t = jnp.asarray(h_target, h0.dtype)
        if h_t.shape not in (h0.shape, h0.shape[1:]):
            raise ValueError(f"h_target must be {h0.shape[1:]} or {h0.shape}, got {h_t.shape}")
        h_t = normalized_map(jnp.broadcast_to(h_t, h0.shape)[..., None])

        def losses(model: ApplyFn, z: jax.Array) -> tuple[jax.Array, jax.Array]:
            h = normalized_map(attribution_fn(model, params, z, label))
            dist = jnp.sum(jnp.square(h - h_t), axis=tuple(range(1, h.ndim)))
            p, p0 = (jax.nn.softmax(model(params, v), axis=-1) for v in (z, x))
            out = jnp.sum(jnp.square(p - p0), axis=-1)
            return gamma * dist + (1.0 - gamma) * out, dist

        def total(model: ApplyFn, z: jax.Array) -> tuple[jax.Array, Judged]:
            judged = losses(model, z)
            return jnp.sum(judged[0]), judged

        judge = functools.partial(losses, apply_fn)

        def move(x_adv: jax.Array, state: Any) -> tuple[jax.Array, Any, Judged]:
            g, judged = jax.grad(total, argnums=1, has_aux=True)(
                surrogate_apply_fn or apply_fn, x_adv
            )
            if surrogate_apply_fn is not None:  # Judged on the model itself, not the twin.
                judged = judge(x_adv)
            updates, state = opt.update(g, state, x_adv)
            return optax.apply_updates(x_adv, updates), state, judged

        return _search(apply_fn, params, x, judge, move, opt.init(x), num_steps, epsilon, bounds)

    return attack
