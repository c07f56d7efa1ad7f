"""Robustness of explanations to attribution attacks: how much an attacked map still agrees.

:func:`attack_robustness` runs an attack of :mod:`jaxinterp.attacks` (top-k, targeted
manipulation) and compares the clean and attacked normalised maps ``h = Σ_c|a| / Σ|a|`` with
the top-k intersection, Spearman's ρ, Kendall's τ_b and the shift of the centre of mass.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from jaxinterp.attacks import AttributionAttackResult
from jaxinterp.core import checks
from jaxinterp.core.ops import normalized_map, row_sum, safe_div
from jaxinterp.core.protocols import ApplyFn

from ._common import nan_where_invalid, pixel_shape
from ._rank import kendall_tau, spearman, topk_intersection
from ._similarity import pearson

__all__ = ["attack_robustness", "center_of_mass", "center_of_mass_shift"]


def center_of_mass(maps: jax.Array) -> jax.Array:
    """Centre of mass of ``|map|`` in pixel coordinates, ``[B, H, W] -> [B, 2]`` (row, col).

    ``c = Σ_p |m_p| · p / Σ_p |m_p|`` with ``p`` the integer coordinates of each pixel; any
    ``[B, ...]`` map gives ``[B, ndim − 1]``. An all-zero map has its centre at the middle of
    the grid, ``((H − 1)/2, (W − 1)/2)``; a map holding a NaN or an infinity has none (NaN).
    """
    m = checks.array(maps, "maps", min_ndim=2, cast=True)
    return nan_where_invalid(m, _center_of_mass(m))


@jax.jit
def _center_of_mass(m: jax.Array) -> jax.Array:
    m = jnp.abs(m).astype(jnp.float32)
    total = row_sum(m)
    coords = []
    for axis, n in enumerate(m.shape[1:]):
        shape = [1] * m.ndim
        shape[axis + 1] = n
        grid = jnp.arange(n, dtype=jnp.float32).reshape(shape)
        mid = jnp.full(total.shape, (n - 1) / 2, jnp.float32)
        coords.append(jnp.where(total > 0, safe_div(row_sum(m * grid), total), mid))
    return jnp.stack(coords, axis=1)


def center_of_mass_shift(map_a: jax.Array, map_b: jax.Array) -> jax.Array:
    """Euclidean distance in pixels between the centres of mass of ``|map_a|`` and
    ``|map_b|`` (:func:`center_of_mass`), ``[B, H, W] × [B, H, W] -> [B]``; NaN where a map
    holds a NaN or an infinity.

    References:
      Ghorbani, Abid, Zou, "Interpretation of Neural Networks Is Fragile", AAAI 2019.
    """
    a = checks.array(map_a, "map_a", min_ndim=2, cast=True)
    b = checks.like(map_b, a, "map_b", like="map_a")
    return nan_where_invalid((a, b), _shift(a, b))


@jax.jit
def _shift(a: jax.Array, b: jax.Array) -> jax.Array:
    diff = _center_of_mass(a) - _center_of_mass(b)
    return jnp.sqrt(jnp.sum(jnp.square(diff), axis=1))


def attack_robustness(
    attack: Callable[..., AttributionAttackResult],
    attribution_fn: Callable[..., jax.Array],
    apply_fn: ApplyFn,
    params: Any,
    x: jax.Array,
    y: jax.Array | None = None,
    *,
    k: int,
    surrogate_apply_fn: ApplyFn | None = None,
    clean_attribution: jax.Array | None = None,
    target_map: jax.Array | None = None,
) -> dict[str, jax.Array]:
    """Agreement of the clean and attacked maps under an attribution attack, per example.

    Runs ``r = attack(apply_fn, params, x, y, surrogate_apply_fn=surrogate_apply_fn)``,
    then with ``h = normalized_map(attribution_fn(apply_fn, params, ·, y))`` compares
    ``h(x)`` and ``h(r.x_adv)`` (the same ``y`` for both; default: the prediction on ``x``).

    Args:
      attack: An attack built by :func:`~jaxinterp.attacks.topk_attack` or
        :func:`~jaxinterp.attacks.targeted_manipulation` (with its ``target_map``), or any
        with that signature.
      attribution_fn: ``attribution_fn(apply_fn, params, x, y) -> [B, ...]``, the one the
        attack was built with.
      apply_fn: ``apply_fn(params, x) -> logits [B, K]``.
      params: Model parameters.
      x: Float inputs ``[B, ...]`` (images channels last, ``[B, H, W, C]``).
      y: Explained classes ``[B]`` (int), or ``None`` for the prediction on ``x``.
      k: Top-k size for the intersection, ``1 <= k <=`` map size, a Python int.
      surrogate_apply_fn: Passed to the attack (e.g. a ReLU model's softplus twin).
      clean_attribution: ``attribution_fn(apply_fn, params, x, y)`` if already computed.
      target_map: A targeted attack's map ``[H, W]`` or ``[B, H, W]``: adds
        ``"target_pearson"``, the Pearson correlation of ``h(x_adv)`` and the target.

    Returns:
      ``{"topk_intersection", "spearman", "kendall_tau", "center_of_mass_shift",
      "label_kept", "attack_score"}``, each ``[B]`` float32 (``label_kept`` is 0/1;
      ``attack_score`` is the attack's own ``score``), and ``"target_pearson"`` with
      ``target_map``. The map comparisons are NaN for an example whose clean or attacked
      attribution holds a NaN or an infinity.

    Raises:
      ArgumentTypeError: A non-float ``x`` (raw ``uint8`` images: ``x.astype(jnp.float32) /
        255``), a non-callable function, non-integer ``k`` or ``y``.
      ValueError: A bad ``k`` or ``y``, an empty or channels-first ``x``, or the attack's own
        errors.

    References:
      Ghorbani, Abid, Zou, "Interpretation of Neural Networks Is Fragile", AAAI 2019;
      Dombrowski et al., "Explanations can be manipulated and geometry is to blame",
      NeurIPS 2019.
    """
    for name, fn in (
        ("attack", attack),
        ("attribution_fn", attribution_fn),
        ("apply_fn", apply_fn),
    ):
        checks.function(name, fn)
    x = checks.array(x, "x", min_ndim=2, image=True)
    k = checks.integer("k", k, maximum=math.prod(pixel_shape(x)))  # at most the map's size
    num_classes = checks.num_classes(apply_fn, params, x)
    y = jnp.argmax(apply_fn(params, x), axis=-1) if y is None else y
    y = checks.labels(y, x.shape[0], "y", num_classes=num_classes)
    result = attack(apply_fn, params, x, y, surrogate_apply_fn=surrogate_apply_fn)
    x_adv = jax.lax.stop_gradient(result.x_adv)
    a0 = attribution_fn(apply_fn, params, x, y) if clean_attribution is None else clean_attribution
    a0 = checks.like(a0, x, "clean_attribution")
    a1 = checks.like(attribution_fn(apply_fn, params, x_adv, y), x, "attribution_fn(x_adv)")
    h0 = nan_where_invalid(a0, normalized_map(a0))
    h1 = nan_where_invalid(a1, normalized_map(a1))
    out = {
        "topk_intersection": topk_intersection(h0, h1, k),
        "spearman": spearman(h0, h1),
        "kendall_tau": kendall_tau(h0, h1),
        "center_of_mass_shift": center_of_mass_shift(h0, h1),
        "label_kept": jnp.asarray(result.label_kept).astype(jnp.float32),
        "attack_score": jnp.asarray(result.score).astype(jnp.float32),
    }
    if target_map is not None:
        out["target_pearson"] = pearson(h1, jnp.broadcast_to(jnp.asarray(target_map), h1.shape))
    return out
