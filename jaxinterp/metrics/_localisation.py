"""Localisation: does the attribution fall on the object? Energy game and pointing game.

The ground truth is a region per example: a boolean mask ``[B, H, W]`` or a bounding box
``[B, 4] = (ymin, xmin, ymax, xmax)`` in pixels, max exclusive (as ``digits_canvas``
provides). Attributions are ``[B, H, W, C]`` (channels last, summed over ``C``) or maps
``[B, H, W]``; an example whose attribution holds a NaN or an infinity scores NaN.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from jaxinterp.core import checks
from jaxinterp.core.ops import row_sum, safe_div

from ._common import nan_where_invalid

__all__ = ["box_mask", "distractor_game", "energy_game", "pointing_game"]


def box_mask(bbox: jax.Array, shape: Sequence[int]) -> jax.Array:
    """Boolean masks ``[B, H, W]`` of bounding boxes ``[B, 4] = (ymin, xmin, ymax, xmax)``.

    Pixel ``(i, j)`` is inside when its centre is: ``ymin <= i + ½ < ymax`` and
    ``xmin <= j + ½ < xmax``; for integer boxes, rows ``ymin..ymax−1`` and columns
    ``xmin..xmax−1`` (max exclusive).

    Args:
      bbox: ``[B, 4]`` boxes in pixels.
      shape: ``(H, W)``, Python ints.
    """
    bbox = checks.array(bbox, "bbox", ndims=(2,), cast=True)
    if bbox.shape[1] != 4:
        raise ValueError(f"bbox must be [B, 4] = (ymin, xmin, ymax, xmax), got {bbox.shape}")
    return _box_mask(bbox, checks.sequence("shape", shape, checks.integer, length=2))


@functools.partial(jax.jit, static_argnums=1)
def _box_mask(bbox: jax.Array, shape: tuple[int, int]) -> jax.Array:
    h, w = shape
    rows = jnp.arange(h, dtype=bbox.dtype).reshape(1, h, 1) + 0.5
    cols = jnp.arange(w, dtype=bbox.dtype).reshape(1, 1, w) + 0.5
    b = bbox[:, :, None, None]  # [B, 4, 1, 1]
    inside_rows = (b[:, 0] <= rows) & (rows < b[:, 2])  # [B, H, 1]
    inside_cols = (b[:, 1] <= cols) & (cols < b[:, 3])  # [B, 1, W]
    return inside_rows & inside_cols


def _map(attribution: Any, *, absolute: bool) -> tuple[jax.Array, jax.Array]:
    """``(a, h)``: the checked attribution and ``h = Σ_c a`` (or ``Σ_c |a|``) of
    ``[B, H, W, C]``; a map ``[B, H, W]`` is kept (or ``|m|``)."""
    a = checks.array(attribution, "attribution", ndims=(3, 4), cast=True)
    h = jnp.abs(a) if absolute else a
    return a, (jnp.sum(h, axis=-1) if h.ndim == 4 else h)


def _region(region: Any, map_shape: tuple[int, ...], name: str = "region") -> jax.Array:
    """A boolean mask ``[B, H, W]`` from a mask or a bbox ``[B, 4]``."""
    try:
        r = jnp.asarray(region)
    except (TypeError, ValueError):
        raise checks.ArgumentTypeError(
            f"{name} must be a mask [B, H, W] or boxes [B, 4], got {type(region).__name__}"
        ) from None
    if r.ndim == 2 and r.shape == (map_shape[0], 4):
        return box_mask(r, map_shape[1:])
    if r.shape != map_shape:
        raise ValueError(
            f"{name} must be a mask [B, H, W] = {map_shape} or boxes "
            f"[B, 4] = ({map_shape[0]}, 4), got shape {r.shape}"
        )
    if jnp.issubdtype(r.dtype, jnp.complexfloating):
        raise checks.ArgumentTypeError(f"{name} must be real, got dtype {r.dtype}")
    return r.astype(bool)


def energy_game(attribution: jax.Array, region: jax.Array) -> jax.Array:
    """Fraction of the positive attribution inside the region, ``[B]`` in ``[0, 1]``.

    ``E = Σ_{i ∈ region} h⁺_i / Σ_i h⁺_i`` with ``h = Σ_c a`` per pixel and
    ``h⁺ = max(h, 0)``; 0 where ``Σ h⁺ = 0``. A uniform positive map scores the region's
    area fraction. NaN where the attribution holds a NaN or an infinity.

    Args:
      attribution: ``[B, H, W, C]`` or a map ``[B, H, W]``.
      region: A boolean mask ``[B, H, W]`` or boxes ``[B, 4]`` (see :func:`box_mask`).

    References:
      Wang, Wang, Du, Yang, Zhang, Ding, Mardziel, Hu, "Score-CAM: Score-weighted visual
      explanations for convolutional neural networks", CVPR Workshops 2020; Wang,
      Fredrikson, Datta, "Robust models are more interpretable because attributions look
      normal", ICML 2022.
    """
    a, h = _map(attribution, absolute=False)
    return nan_where_invalid(a, _energy(h, _region(region, h.shape)))


@jax.jit
def _energy(h: jax.Array, mask: jax.Array) -> jax.Array:
    h = jnp.maximum(h, 0.0).astype(jnp.float32)
    return safe_div(row_sum(jnp.where(mask, h, 0.0)), row_sum(h))


def distractor_game(
    attribution: jax.Array, region: jax.Array, distractor: jax.Array, *, absolute: bool = True
) -> jax.Array:
    """Share of the attribution on the object rather than on a look-alike distractor, ``[B]``.

    ``D = Σ_{i ∈ R} h_i / (Σ_{i ∈ R} h_i + Σ_{i ∈ R'} h_i)`` with ``h = Σ_c |a|`` per pixel
    (``absolute``; else ``h = max(Σ_c a, 0)``), ``R`` the object's region and ``R'`` the
    distractor's (disjoint, of equal area); 0.5 where both sums are 0. It is the energy game
    restricted to the two regions. On a canvas whose distractor has the object's intensity
    histogram (``mnist_canvas``), any map computed from the input alone, such as ``|x|``,
    scores 0.5 (chance): a score above 0.5 needs what the model uses. NaN where the
    attribution holds a NaN or an infinity.

    Args:
      attribution: ``[B, H, W, C]`` or a map ``[B, H, W]``.
      region: The object: a boolean mask ``[B, H, W]`` or boxes ``[B, 4]``.
      distractor: The distractor, likewise.
      absolute: Score ``|a|`` (default) or the positive part of ``a``.

    References:
      The energy game of Wang et al., "Score-CAM", CVPR Workshops 2020, and Wang, Fredrikson,
      Datta, ICML 2022; the two-region form is the library's (METHODS §4).
    """
    a, h = _map(attribution, absolute=absolute)
    value = _two_regions(h, _region(region, h.shape), _region(distractor, h.shape, "distractor"))
    return nan_where_invalid(a, value)


@jax.jit
def _two_regions(h: jax.Array, mask: jax.Array, other: jax.Array) -> jax.Array:
    h = jnp.maximum(h, 0.0).astype(jnp.float32)
    inside, outside = row_sum(jnp.where(mask, h, 0.0)), row_sum(jnp.where(other, h, 0.0))
    total = inside + outside
    return jnp.where(total > 0, safe_div(inside, total), 0.5)


def pointing_game(attribution: jax.Array, region: jax.Array, *, tolerance: float = 0) -> jax.Array:
    """Whether the attribution's peak falls on the region, ``[B]`` float 0/1.

    The peak is the pixel ``p*`` of largest ``Σ_c |a|`` (the first in row-major order on
    ties). A hit is a region pixel ``q`` within Euclidean distance ``‖p* − q‖₂ <= tolerance``
    (the region dilated by a disc of radius ``tolerance`` pixels; 0: the peak itself is in
    the region). An all-zero attribution points nowhere (a miss), as does an empty region; an
    attribution holding a NaN or an infinity scores NaN (neither hit nor miss).

    Args:
      attribution: ``[B, H, W, C]`` or a map ``[B, H, W]``.
      region: A boolean mask ``[B, H, W]`` or boxes ``[B, 4]``.
      tolerance: Radius ``>= 0`` in pixels (Zhang et al. use 15 at 224×224).

    References:
      Zhang, Bargal, Lin, Brandt, Shen, Sclaroff, "Top-down neural attention by excitation
      backprop", IJCV 2018.
    """
    tolerance = checks.nonnegative("tolerance", tolerance)
    a, s = _map(attribution, absolute=True)
    return nan_where_invalid(a, _pointing(s, _region(region, s.shape), tolerance))


@jax.jit
def _pointing(s: jax.Array, mask: jax.Array, tolerance: float) -> jax.Array:
    b, h, w = s.shape
    flat = s.reshape(b, h * w)
    peak = jnp.argmax(flat, axis=1)
    py = (peak // w).astype(jnp.float32).reshape(b, 1, 1)
    px = (peak % w).astype(jnp.float32).reshape(b, 1, 1)
    rows = jnp.arange(h, dtype=jnp.float32).reshape(1, h, 1)
    cols = jnp.arange(w, dtype=jnp.float32).reshape(1, 1, w)
    near = jnp.square(rows - py) + jnp.square(cols - px) <= tolerance**2  # [B, H, W]
    hit = jnp.any(mask & near, axis=(1, 2)) & (jnp.max(flat, axis=1) > 0)
    return hit.astype(jnp.float32)
