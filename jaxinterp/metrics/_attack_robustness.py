"""Robustness of explanations to attribution attacks: how much an attacked map still agrees.

:func:`attack_robustness` runs an attack of :mod:`jaxinterp.attacks` (top-k, targeted
manipulation) and compares the clean and attacked normalised maps ``h = Σ_c|a| / Σ|a|`` with
the top-k intersection, Spearman's ρ, Kendall's τ_b and the shift of the centre of mass.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from jaxinterp.attacks._attribution_attacks import (
    ApplyFn,
    AttributionAttackResult,
    AttributionFn,
    normalized_map,
    topk_intersection,
)
from jaxinterp.metrics._common import check_batch, pixel_shape, row_sum, safe_div
from jaxinterp.metrics._rank import kendall_tau, spearman

__all__ = ["attack_robustness", "center_of_mass", "center_of_mass_shift"]


def center_of_mass(maps: jax.Array) -> jax.Array:
    """Centre of mass of ``|map|`` in pixel coordinates, ``[B, H, W] -> [B, 2]`` (row, col).

    ``c = Σ_p |m_p| · p / Σ_p |m_p|`` with ``p`` the integer coordinates of each pixel; any
    ``[B, ...]`` map gives ``[B, ndim − 1]``. An all-zero map has its centre at the middle of
    the grid, ``((H − 1)/2, (W − 1)/2)``.
    """
    m = check_batch(maps, "maps")
    if m.ndim < 2:
        raise ValueError(f"maps must be [B, H, W] (or [B, ...]), got shape {m.shape}")
    return _center_of_mass(m)


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
    ``|map_b|`` (:func:`center_of_mass`), ``[B, H, W] × [B, H, W] -> [B]``.

    References:
      Ghorbani, Abid, Zou, "Interpretation of Neural Networks Is Fragile", AAAI 2019.
    """
    a, b = check_batch(map_a, "map_a"), check_batch(map_b, "map_b")
    if a.shape != b.shape:
        raise ValueError(f"map_a and map_b must have the same shape, got {a.shape}, {b.shape}")
    if a.ndim < 2:
        raise ValueError(f"maps must be [B, H, W] (or [B, ...]), got shape {a.shape}")
    return _shift(a, b)


@jax.jit
def _shift(a: jax.Array, b: jax.Array) -> jax.Array:
    diff = _center_of_mass(a) - _center_of_mass(b)
    return jnp.sqrt(jnp.sum(jnp.square(diff), axis=1))


def attack_robustness(
    attack: Callable[..., AttributionAttackResult],
    attribution_fn: AttributionFn,
    apply_fn: ApplyFn,
    params: Any,
    x: jax.Array,
    label: jax.Array | None = None,
    *,
    k: int,
    surrogate_apply_fn: ApplyFn | None = None,
) -> dict[str, jax.Array]:
    """Agreement of the clean and attacked maps under an attribution attack, per example.

    Runs ``r = attack(apply_fn, params, x, label, surrogate_apply_fn=surrogate_apply_fn)``,
    then with ``h = normalized_map(attribution_fn(apply_fn, params, ·, label))`` compares
    ``h(x)`` and ``h(r.x_adv)`` (the same ``label`` for both; default: the prediction on
    ``x``). For :func:`~jaxinterp.attacks.targeted_manipulation`, bind the target map
    first: ``lambda f, p, x, label=None, **kw: attack(f, p, x, h_target, label, **kw)``.

    Args:
      attack: An attack built by :func:`~jaxinterp.attacks.topk_attack` (or with that
        signature).
      attribution_fn: ``attribution_fn(apply_fn, params, x, label) -> [B, ...]``, the one
        the attack was built with.
      apply_fn: ``apply_fn(params, x) -> logits [B, K]``.
      params: Model parameters.
      x: Inputs ``[B, ...]``.
      label: Explained classes ``[B]`` (int), or ``None`` for the prediction on ``x``.
      k: Top-k size for the intersection, ``1 <= k <=`` map size, a Python int.
      surrogate_apply_fn: Passed to the attack (e.g. a ReLU model's softplus twin).

    Returns:
      ``{"topk_intersection", "spearman", "kendall_tau", "center_of_mass_shift",
      "label_kept"}``, each ``[B]`` float32 (``label_kept`` is 0/1).

    Raises:
      ValueError: A bad ``k`` or ``label``, or the attack's own errors.

    References:
      Ghorbani, Abid, Zou, "Interpretation of Neural Networks Is Fragile", AAAI 2019;
      Dombrowski et al., "Explanations can be manipulated and geometry is to blame",
      NeurIPS 2019.
    """
    if not (callable(attack) and callable(attribution_fn) and callable(apply_fn)):
        raise TypeError("attack, attribution_fn and apply_fn must be callable")
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    x = check_batch(x, "x")
    if label is None:
        label = jnp.argmax(apply_fn(params, x), axis=-1)
    label = jnp.asarray(label)
    if label.shape != x.shape[:1] or not jnp.issubdtype(label.dtype, jnp.integer):
        raise ValueError(
            f"label must be None or integer labels [B] = ({x.shape[0]},), "
            f"got {label.dtype}{list(label.shape)}"
        )
    size = math.prod(pixel_shape(x))
    if k > size:
        raise ValueError(f"k={k} exceeds the number of map entries {size}")
    result = attack(apply_fn, params, x, label, surrogate_apply_fn=surrogate_apply_fn)
    x_adv = jax.lax.stop_gradient(result.x_adv)
    h0 = normalized_map(attribution_fn(apply_fn, params, x, label))
    h1 = normalized_map(attribution_fn(apply_fn, params, x_adv, label))
    return {
        "topk_intersection": topk_intersection(h0, h1, int(k)).astype(jnp.float32),
        "spearman": spearman(h0, h1),
        "kendall_tau": kendall_tau(h0, h1),
        "center_of_mass_shift": center_of_mass_shift(h0, h1),
        "label_kept": jnp.asarray(result.label_kept).astype(jnp.float32),
    }
