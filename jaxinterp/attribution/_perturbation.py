"""Perturbation attributions: occlusion (sliding windows) and RISE (random masks).

Both need only forward passes of the score, so they explain any model, differentiable or
not. Both are building blocks ``method(score_fn, x, ...)`` on images ``[B, H, W, C]``: a
window or mask covers every channel of a pixel, and the attribution of a pixel is repeated
over its channels (the result is shaped like ``x``). The windows and masks are evaluated a
chunk at a time (:func:`jaxinterp.core.ops.chunked_reduce`): ``chunk_size`` bounds how many
perturbed copies of the batch are alive at once, like integrated gradients' ``chunk_size``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxinterp.core import checks
from jaxinterp.core.ops import chunked_reduce
from jaxinterp.core.protocols import ScoreFn
from jaxinterp.core.scores import checked_score, scores_of_copies

__all__ = ["occlusion", "rise"]


def _pair(name: str, value: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(value, int | np.integer) and not isinstance(value, bool):
        value = (int(value), int(value))
    h, w = checks.sequence(name, value, checks.integer, length=2)
    return int(h), int(w)


def _window_masks(
    shape: tuple[int, int], window: tuple[int, int], stride: tuple[int, int]
) -> np.ndarray:
    """``[P, H, W]`` 0/1 masks of every window position (the last row/column of windows is
    moved to end at the border, so every pixel is covered)."""
    (h, w), (wh, ww), (sh, sw) = shape, window, stride
    rows = sorted({*range(0, h - wh + 1, sh), h - wh})
    cols = sorted({*range(0, w - ww + 1, sw), w - ww})
    masks = np.zeros((len(rows) * len(cols), h, w), np.float32)
    for i, (r, c) in enumerate((r, c) for r in rows for c in cols):
        masks[i, r : r + wh, c : c + ww] = 1.0
    return masks


def occlusion(
    score_fn: ScoreFn,
    x: jax.Array,
    *,
    window: int | tuple[int, int] = 4,
    stride: int | tuple[int, int] | None = None,
    baseline: float = 0.0,
    chunk_size: int | None = None,
) -> jax.Array:
    """Occlusion: the score drop when a window of pixels is set to a baseline value.

    For each window position ``W_p`` (a ``window`` of pixels, all channels, moved by
    ``stride``; the last windows of a row or column end at the image border), with
    ``x^{(p)} = x ⊙ (1 − M_p) + b M_p``::

        φ_{h,w} = Σ_p [s(x) − s(x^{(p)})] M_p[h, w] / Σ_p M_p[h, w]

    the mean drop over the windows that cover the pixel (as Captum's ``Occlusion``), repeated
    over channels. With a 1×1 window and a linear score ``s = Σ w ⊙ x`` it equals
    ``Σ_c w_c (x_c − b)`` per pixel.

    Args:
      score_fn: ``score_fn(x [B, ...]) -> [B]``.
      x: Images ``[B, H, W, C]``, floating point.
      window: Window height and width (an int for a square), at most the image size.
      stride: Steps between windows; default: ``window`` (no overlap).
      baseline: The value occluded pixels take.
      chunk_size: Window positions evaluated at once (``None``: all; on CPU
        :func:`~jaxinterp.core.ops.auto_chunk_size`).

    Returns:
      ``φ`` shaped like ``x``.

    References:
      Zeiler, Fergus, "Visualizing and understanding convolutional networks", ECCV 2014.
    """
    x = checks.array(x, "x", ndims=(4,), image=True)
    window = _pair("window", window)
    stride = window if stride is None else _pair("stride", stride)
    if window[0] > x.shape[1] or window[1] > x.shape[2] or min(window + stride) < 1:
        raise ValueError(
            f"window must fit the image {x.shape[1:3]} and window, stride be >= 1; got "
            f"window={window}, stride={stride}"
        )
    baseline = checks.real("baseline", baseline)
    chunk_size = checks.chunk_size(chunk_size)
    size = (x.shape[1], x.shape[2])
    masks = jnp.asarray(_window_masks(size, window, stride), x.dtype)  # [P, H, W]
    s0 = checked_score(score_fn, x)

    def drops(m: jax.Array) -> jax.Array:  # m: [n, H, W] -> Σ_p drop_p M_p, [B, H, W]
        mm = m[:, None, :, :, None]
        z = x[None] * (1 - mm) + baseline * mm  # [n, B, H, W, C]
        s = scores_of_copies(score_fn, z)  # [n, B]
        return jnp.einsum("nb,nhw->bhw", s0[None] - s, m)

    zeros = jnp.zeros(x.shape[:3], x.dtype)
    total = chunked_reduce(drops, masks, chunk_size, jnp.add, zeros, examples_per_point=x.shape[0])
    phi = total / jnp.sum(masks, axis=0)[None]
    return jnp.broadcast_to(phi[..., None], x.shape)


def rise(
    score_fn: ScoreFn,
    x: jax.Array,
    *,
    key: jax.Array,
    num_masks: int = 1000,
    grid: int = 7,
    probability: float = 0.5,
    chunk_size: int | None = 100,
) -> jax.Array:
    """RISE: the score-weighted mean of random smooth masks.

    Each mask is a ``grid × grid`` field of Bernoulli(``p``) cells, upsampled bilinearly
    (``jax.image.resize``) to ``(grid + 1) · ⌈H/grid⌉`` per side and cropped at a random
    shift in ``[0, ⌈H/grid⌉)`` (and likewise in width), so that ``M_i ∈ [0, 1]^{H×W}``; then::

        φ_{h,w} = 1 / (N p) Σ_i s(x ⊙ M_i) M_i[h, w]

    Monte Carlo over ``N = num_masks`` masks; the same masks serve every example of the
    batch (common random numbers: an example's map depends on ``key`` and the example only).

    Args:
      score_fn: ``score_fn(x [B, ...]) -> [B]`` (RISE uses a probability).
      x: Images ``[B, H, W, C]``, floating point.
      key: PRNG key for the masks.
      num_masks: ``N >= 1``.
      grid: Cells per side ``>= 1`` of the coarse masks.
      probability: ``p ∈ (0, 1]``, the chance a cell is kept.
      chunk_size: Masks evaluated at once (``None``: all; on CPU
        :func:`~jaxinterp.core.ops.auto_chunk_size`).

    Returns:
      ``φ`` shaped like ``x``.

    References:
      Petsiuk, Das, Saenko, "RISE: Randomized input sampling for explanation of black-box
      models", BMVC 2018.
    """
    x = checks.array(x, "x", ndims=(4,), image=True)
    key = checks.key(key)
    num_masks = checks.integer("num_masks", num_masks)
    grid = checks.integer("grid", grid)
    p = checks.real("probability", probability, low=0.0, low_open=True, high=1.0)
    chunk_size = checks.chunk_size(chunk_size)
    h, w = x.shape[1:3]
    cell = (math.ceil(h / grid), math.ceil(w / grid))
    up = ((grid + 1) * cell[0], (grid + 1) * cell[1])

    def mask(k: jax.Array) -> jax.Array:
        k_cells, k_dy, k_dx = jax.random.split(k, 3)
        cells = jax.random.bernoulli(k_cells, p, (grid, grid)).astype(x.dtype)
        big = jax.image.resize(cells, up, method="bilinear")
        dy = jax.random.randint(k_dy, (), 0, cell[0])
        dx = jax.random.randint(k_dx, (), 0, cell[1])
        return jax.lax.dynamic_slice(big, (dy, dx), (h, w))

    def weighted(keys: jax.Array) -> jax.Array:  # keys: [n] -> Σ_i s(x ⊙ M_i) M_i, [B, H, W]
        m = jax.lax.map(mask, keys)  # one key at a time: masks do not depend on chunk_size
        z = x[None] * m[:, None, :, :, None]
        s = scores_of_copies(score_fn, z)  # [n, B]
        return jnp.einsum("nb,nhw->bhw", s, m)

    keys = jax.random.split(key, num_masks)
    zeros = jnp.zeros(x.shape[:3], x.dtype)
    total = chunked_reduce(
        weighted, keys, chunk_size, jnp.add, zeros, examples_per_point=x.shape[0]
    )
    phi = total / (num_masks * p)
    return jnp.broadcast_to(phi[..., None], x.shape)
