"""Attacks on explanations: small perturbations that keep the label but change the map.

Both differentiate an attribution in the input, so they need a non-zero input Hessian: attack
a smooth model, or pass the β-softplus twin of a ReLU model (``models.softplus_surrogate``)
as ``surrogate_apply_fn``. Maps are ``h = Σ_channels |attribution|``, normalised to sum 1.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxinterp.core import checks
from jaxinterp.core.ascent import gradient_steps
from jaxinterp.core.ops import (
    max_normalized_map,
    normalized_map,
    per_example,
    project_ball,
    topk_intersection,
    topk_mask,
)
from jaxinterp.core.protocols import ApplyFn

__all__ = [
    "AttributionAttackResult",
    "frame_target",
    "normalized_map",
    "targeted_manipulation",
    "topk_attack",
    "topk_intersection",
]

AttributionFn = Callable[[ApplyFn, Any, jax.Array, jax.Array], jax.Array]
"""``attribution_fn(apply_fn, params, x [B, ...], y [B]) -> [B, ...]``, differentiable (an
:class:`~jaxinterp.core.Explainer` without a key)."""


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


def frame_target(shape: tuple[int, int], width: int = 1) -> jax.Array:
    """A map ``[H, W]`` with uniform mass on a border ``width`` pixels wide, summing to 1;
    raises ``ValueError`` unless ``shape`` is ``(H, W)`` and ``1 <= width < min(H, W) / 2``."""
    h, w = checks.sequence("shape", shape, checks.integer, length=2)
    width = checks.integer("width", width, maximum=(min(h, w) - 1) // 2)  # 2·width < min(H, W)
    m = np.ones((h, w), np.float32)
    m[width:-width, width:-width] = 0.0
    return jnp.asarray(m / m.sum())


def _setup(
    attr_fn: AttributionFn, apply_fn: ApplyFn, params: Any, x: Any, y: Any, bounds: Any
) -> tuple[Any, jax.Array, jax.Array, jax.Array]:
    """Call-time checks; returns ``(params, x, y or the prediction, h(x))``."""
    x = checks.array(x, "x", min_ndim=2, image=True)
    checks.in_bounds(x, bounds)
    params, x = jax.lax.stop_gradient(params), jax.lax.stop_gradient(x)
    k = checks.num_classes(apply_fn, params, x)
    y = jnp.argmax(apply_fn(params, x), axis=-1) if y is None else y
    y = checks.labels(y, x.shape[0], "y", num_classes=k)
    return params, x, y, normalized_map(attr_fn(apply_fn, params, x, y))


Judged = tuple[jax.Array, jax.Array]
"""``(key, score)`` per example: the search keeps the iterate of lowest ``key``."""


def _search(
    apply_fn: ApplyFn,
    params: Any,
    x: jax.Array,
    judge: Callable[[jax.Array], Judged],
    objective: Callable[[jax.Array], tuple[jax.Array, Judged | None]],
    num_steps: int,
    epsilon: float,
    bounds: tuple[float, float] | None,
    **steps: Any,
) -> AttributionAttackResult:
    """Descends ``objective`` by :func:`~jaxinterp.core.gradient_steps` (``**steps``) from
    ``x`` under the L∞/bounds projection; returns per example the iterate of lowest ``judge``
    key among ``x_0 … x_T`` that keep the label.

    ``objective(z) -> (J(z), judged)``: the gradient's own forward pass judges each iterate
    (one pass through the map per step); ``judged=None`` has ``judge`` called instead."""
    pred = jnp.argmax(apply_fn(params, x), axis=-1)

    def keep(best: tuple, x_adv: jax.Array, judged: Judged | None) -> tuple:
        best_x, best_key, best_score = best
        key, score = judge(x_adv) if judged is None else judged
        label_ok = jnp.argmax(apply_fn(params, x_adv), axis=-1) == pred
        better = label_ok & (key < best_key)
        best_x = jnp.where(per_example(better, x.ndim), x_adv, best_x)
        return best_x, jnp.where(better, key, best_key), jnp.where(better, score, best_score)

    def project(z: jax.Array) -> jax.Array:
        return project_ball(z, x, epsilon, "linf", bounds)

    no_key = jnp.full(x.shape[:1], jnp.inf, jnp.promote_types(x.dtype, jnp.float32))
    x_last, best = gradient_steps(
        objective,
        x,
        num_steps=num_steps,
        maximize=False,
        project=project,
        has_aux=True,
        observe=keep,
        observed=(x, no_key, jnp.zeros_like(no_key)),
        **steps,
    )
    x_adv, _, score = keep(best, x_last, None)
    x_adv = jax.lax.stop_gradient(x_adv)
    label_kept = jnp.argmax(apply_fn(params, x_adv), axis=-1) == pred
    return AttributionAttackResult(x_adv, label_kept, score)


def _check_common(
    attribution_fn: Any, epsilon: Any, num_steps: Any, bounds: Any
) -> tuple[float, int, tuple[float, float] | None]:
    checks.function("attribution_fn", attribution_fn)
    epsilon, num_steps = checks.positive("epsilon", epsilon), checks.integer("num_steps", num_steps)
    bounds = checks.bounds(bounds)
    checks.epsilon_in_bounds(epsilon, bounds)
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
      attribution_fn: ``attribution_fn(apply_fn, params, x, y) -> [B, ...]``, twice
        differentiable in ``x`` (e.g. the input gradient of a softplus model's logit; an
        explainer of :mod:`jaxinterp.attribution` with its key bound).
      epsilon: L∞ radius ``ε > 0`` (at most ``hi − lo`` with bounds).
      num_steps: Number of steps ``>= 1``.
      step_size: ``α > 0``; defaults to ``2.5 · ε / num_steps``.
      k: Number of top features ``>= 1`` (at most the map size).
      bounds: Valid input range ``(lo, hi)``, or ``None``.

    Returns:
      ``attack(apply_fn, params, x, y=None, *, key=None, surrogate_apply_fn=None)`` ->
      :class:`AttributionAttackResult`. ``y`` (default: the prediction) is the class
      explained; ``key`` is accepted and ignored (deterministic); ``surrogate_apply_fn``
      (e.g. a ReLU model's softplus twin) is differentiated instead of ``apply_fn``, which
      still gives labels, maps and scores. Jittable
      (``static_argnums=0, static_argnames="surrogate_apply_fn"``).

    Raises:
      ValueError: On invalid hyperparameters, ``k`` larger than the map, a bad ``y``.

    References:
      Ghorbani, Abid, Zou, "Interpretation of Neural Networks Is Fragile", AAAI 2019.
    """
    epsilon, num_steps, bounds = _check_common(attribution_fn, epsilon, num_steps, bounds)
    step_size = checks.step_size(step_size, epsilon, num_steps)
    k = checks.integer("k", k)

    def attack(
        apply_fn: ApplyFn,
        params: Any,
        x: jax.Array,
        y: jax.Array | None = None,
        *,
        key: jax.Array | None = None,
        surrogate_apply_fn: ApplyFn | None = None,
    ) -> AttributionAttackResult:
        del key  # Deterministic; accepted for the common attack signature.
        params, x, y, h0 = _setup(attribution_fn, apply_fn, params, x, y, bounds)
        if k > h0[0].size:
            raise ValueError(f"k={k} exceeds the number of map entries {h0[0].size}")
        top = jax.lax.stop_gradient(topk_mask(h0, k))

        def mass(model: ApplyFn, x_adv: jax.Array) -> tuple[jax.Array, jax.Array]:
            h = normalized_map(attribution_fn(model, params, x_adv, y))
            return jnp.sum(h.reshape(top.shape) * top, axis=1), h

        def from_map(d: jax.Array, h: jax.Array) -> Judged:
            inter = jnp.sum(topk_mask(h, k) * top, axis=1) / k
            return inter + d / (2 * k), inter  # Lexicographic: steps of 1/k beat d <= 1.

        def judge(x_adv: jax.Array) -> Judged:
            return from_map(*mass(apply_fn, x_adv))

        def objective(z: jax.Array) -> tuple[jax.Array, Judged | None]:
            if surrogate_apply_fn is None:  # The gradient's own forward pass judges z.
                d, h = mass(apply_fn, z)
                return jnp.sum(d), from_map(d, h)
            return jnp.sum(mass(surrogate_apply_fn, z)[0]), None  # Judged on the model.

        return _search(
            apply_fn, params, x, judge, objective, num_steps, epsilon, bounds, step_size=step_size
        )

    return attack


def targeted_manipulation(
    attribution_fn: AttributionFn,
    *,
    epsilon: float,
    num_steps: int,
    learning_rate: float,
    gamma: float = 0.5,
    target_map: jax.Array | None = None,
    normalization: str = "sum",
    output: str = "softmax",
    bounds: tuple[float, float] | None = (0.0, 1.0),
) -> Callable[..., AttributionAttackResult]:
    """Builds the targeted explanation manipulation of Dombrowski et al.

    Adam steps, each projected to the L∞ ball and bounds, minimise per example

        L(x') = γ ‖h(x') − h_t‖² + (1 − γ) D(f(x'), f(x))

    with ``h = Σ_c |a_c|`` normalised to sum 1 (``normalization="sum"``; the target too) or
    divided by its maximum (``"max"``; the target to a maximum of 1, as the RobustAGA
    reference code does), and ``D = ‖softmax f(x') − softmax f(x)‖²`` (``output="softmax"``)
    or the mean squared logit difference ``(1/K) ‖f(x') − f(x)‖²`` (``"logits"``, the
    reference's). The result is the iterate with the lowest ``L`` among ``x`` and the iterates
    that keep the clean prediction (the reference keeps the last iterate). The reference's
    settings: ``normalization="max", output="logits"``, 100 steps, ``learning_rate = 4ε/100``.

    Args:
      attribution_fn: As :func:`topk_attack`.
      epsilon: L∞ radius ``ε > 0``.
      num_steps: Adam steps ``>= 1``.
      learning_rate: Adam step size ``> 0`` in input units (e.g. ``ε / 10``).
      gamma: Weight ``γ ∈ [0, 1]`` of the map term.
      target_map: The target ``h_t``: ``[H, W]`` (shared; see :func:`frame_target`) or
        ``[B, H, W]``; or ``None`` to pass it to each call as ``h_target``.
      normalization: ``"sum"`` or ``"max"``: how the maps and the target are normalised.
      output: ``"softmax"`` or ``"logits"``: the output term ``D``.
      bounds: Valid input range ``(lo, hi)``, or ``None``.

    Returns:
      ``attack(apply_fn, params, x, y=None, *, key=None, h_target=None,
      surrogate_apply_fn=None)`` -> :class:`AttributionAttackResult` (``score``:
      ``‖h(x_adv) − h_t‖²``); ``h_target`` overrides ``target_map``; the rest as
      :func:`topk_attack`.

    Raises:
      ValueError: On invalid hyperparameters, a mis-shaped or missing target map.

    References:
      Dombrowski et al., "Explanations can be manipulated and geometry is to blame",
      NeurIPS 2019.
      Joo et al., "Towards more robust interpretation via local gradient alignment", AAAI
      2023 (code: github.com/joshua840/RobustAGA, ``test_taps_saps.py``: the max-normalised
      maps and the logit term).
    """
    epsilon, num_steps, bounds = _check_common(attribution_fn, epsilon, num_steps, bounds)
    learning_rate = checks.positive("learning_rate", learning_rate)
    gamma = checks.real("gamma", gamma, low=0.0, high=1.0)
    normalization = checks.one_of("normalization", normalization, ("sum", "max"))
    output = checks.one_of("output", output, ("softmax", "logits"))
    norm_map = normalized_map if normalization == "sum" else max_normalized_map
    opt = optax.adam(learning_rate)
    default_target = None if target_map is None else jnp.asarray(target_map)

    def attack(
        apply_fn: ApplyFn,
        params: Any,
        x: jax.Array,
        y: jax.Array | None = None,
        *,
        key: jax.Array | None = None,
        h_target: jax.Array | None = None,
        surrogate_apply_fn: ApplyFn | None = None,
    ) -> AttributionAttackResult:
        del key  # Deterministic; accepted for the common attack signature.
        target = default_target if h_target is None else h_target
        if target is None:
            raise ValueError("targeted_manipulation needs a target map: target_map= or h_target=")
        params, x, y, h0 = _setup(attribution_fn, apply_fn, params, x, y, bounds)
        h_t = jnp.asarray(target, h0.dtype)
        if h_t.shape not in (h0.shape, h0.shape[1:]):
            raise ValueError(f"h_target must be {h0.shape[1:]} or {h0.shape}, got {h_t.shape}")
        h_t = norm_map(jnp.broadcast_to(h_t, h0.shape)[..., None])

        def losses(model: ApplyFn, z: jax.Array) -> tuple[jax.Array, jax.Array]:
            h = norm_map(attribution_fn(model, params, z, y))
            dist = jnp.sum(jnp.square(h - h_t), axis=tuple(range(1, h.ndim)))
            f, f0 = model(params, z), model(params, x)
            if output == "softmax":
                out = jnp.sum(jnp.square(jax.nn.softmax(f, -1) - jax.nn.softmax(f0, -1)), -1)
            else:
                out = jnp.mean(jnp.square(f - f0), axis=-1)
            return gamma * dist + (1.0 - gamma) * out, dist

        judge = functools.partial(losses, apply_fn)

        def objective(z: jax.Array) -> tuple[jax.Array, Judged | None]:
            judged = losses(surrogate_apply_fn or apply_fn, z)
            # With a twin, the iterate is judged on the model itself, not the twin.
            return jnp.sum(judged[0]), (judged if surrogate_apply_fn is None else None)

        return _search(
            apply_fn, params, x, judge, objective, num_steps, epsilon, bounds, optimizer=opt
        )

    return attack
