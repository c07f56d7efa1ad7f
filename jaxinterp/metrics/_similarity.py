"""Per-example similarity of two maps: Pearson, cosine, mean squared error and SSIM.

Each takes two arrays ``[B, ...]`` of the same shape and compares example ``b`` of one with
example ``b`` of the other over all non-batch axes (SSIM: maps ``[B, H, W]``), giving ``[B]``
float32. Where a correlation or cosine is undefined (a constant or all-zero map) it is 0;
an example where either map holds a NaN or an infinity gets NaN (no comparison to make).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import dm_pix
import jax
import jax.numpy as jnp
import numpy as np

from jaxinterp.core import checks
from jaxinterp.core.ops import flat, safe_div

from ._common import nan_where_invalid

__all__ = ["SIMILARITIES", "cosine_similarity", "mse", "pearson", "ssim"]


def checked_pair(
    a: Any, b: Any, ndims: tuple[int, ...] | None = None
) -> tuple[jax.Array, jax.Array]:
    """Checks two batched arrays of one shape (rank in ``ndims`` if given); returns them as
    float32 arrays."""
    a = checks.array(a, "a", ndims=ndims, cast=True)
    b = checks.like(b, a, "b", like="a")
    return a.astype(jnp.float32), b.astype(jnp.float32)


def pearson(a: jax.Array, b: jax.Array) -> jax.Array:
    """Pearson correlation per example, ``[B, ...] × [B, ...] -> [B]``.

    ``ρ = Σ (a_i − ā)(b_i − b̄) / sqrt(Σ (a_i − ā)² · Σ (b_i − b̄)²)``; 0 where either map
    is constant; NaN where either map holds a NaN or an infinity.

    References:
      Pearson, "Notes on regression and inheritance in the case of two parents", Proc. R.
      Soc. London 1895.
    """
    a, b = checked_pair(a, b)
    return nan_where_invalid((a, b), _pearson(a, b))


@jax.jit
def _pearson(a: jax.Array, b: jax.Array) -> jax.Array:
    a, b = flat(a), flat(b)
    a = a - jnp.mean(a, axis=1, keepdims=True)
    b = b - jnp.mean(b, axis=1, keepdims=True)
    return cosine_rows(a, b)


def cosine_rows(a: jax.Array, b: jax.Array) -> jax.Array:
    """Cosine of rows ``[B, D]``, each row rescaled by its max first (no under/overflow)."""
    a = safe_div(a, jnp.max(jnp.abs(a), axis=1, keepdims=True))
    b = safe_div(b, jnp.max(jnp.abs(b), axis=1, keepdims=True))
    den = jnp.sqrt(jnp.sum(jnp.square(a), axis=1) * jnp.sum(jnp.square(b), axis=1))
    return jnp.clip(safe_div(jnp.sum(a * b, axis=1), den), -1.0, 1.0)


_cosine = jax.jit(cosine_rows)


def cosine_similarity(a: jax.Array, b: jax.Array) -> jax.Array:
    """Cosine similarity per example, ``⟨a, b⟩ / (‖a‖ ‖b‖)``, ``[B]``; 0 where a map is 0,
    NaN where a map holds a NaN or an infinity."""
    a, b = checked_pair(a, b)
    return nan_where_invalid((a, b), _cosine(flat(a), flat(b)))


def mse(a: jax.Array, b: jax.Array) -> jax.Array:
    """Mean squared error per example, ``(1/D) Σ_i (a_i − b_i)²``, ``[B]``; NaN where a map
    holds a NaN or an infinity."""
    a, b = checked_pair(a, b)
    return nan_where_invalid((a, b), _mse(flat(a), flat(b)))


@jax.jit
def _mse(a: jax.Array, b: jax.Array) -> jax.Array:
    return jnp.mean(jnp.square(a - b), axis=1)


def _window_matrix(n: int, window_size: int, sigma: float) -> np.ndarray:
    """``[n − w + 1, n]``: row ``i`` holds the normalised 1-D Gaussian window at ``i..i+w−1``."""
    t = np.arange(window_size, dtype=np.float64) - (window_size - 1) / 2
    g = np.exp(-np.square(t) / (2.0 * sigma**2))
    g /= g.sum()
    m = np.zeros((n - window_size + 1, n))
    for i in range(n - window_size + 1):
        m[i, i : i + window_size] = g
    return m


def ssim(
    a: jax.Array,
    b: jax.Array,
    *,
    window_size: int = 7,
    sigma: float = 1.5,
    data_range: float = 1.0,
) -> jax.Array:
    """Structural similarity of two maps per example, ``[B, H, W] × [B, H, W] -> [B]``.

    With ``w`` the normalised ``window_size × window_size`` Gaussian window (σ = ``sigma``)
    slid over the valid positions only (no padding: an ``(H − 6) × (W − 6)`` SSIM map for the
    default 7×7 window), local statistics ``μ_a = w ∗ a``, ``σ_a² = w ∗ a² − μ_a²``,
    ``σ_ab = w ∗ (ab) − μ_a μ_b`` and ``C1 = (0.01 L)²``, ``C2 = (0.03 L)²``
    (``L = data_range``)::

        SSIM = mean over positions of (2 μ_a μ_b + C1)(2 σ_ab + C2)
                                      / ((μ_a² + μ_b² + C1)(σ_a² + σ_b² + C2))

    This is Wang et al.'s definition, computed by ``dm_pix.ssim`` (which also clips the
    float32 round-off of the local statistics: ``σ² >= eps²``, ``|σ_ab| <= σ_a σ_b``, so a
    map with a large offset cannot score above 1). Its filter is given here as the same
    separable window applied by two small matrix products: equal to dm_pix's own
    (``jnp.convolve`` per row) to float32 round-off and several times faster on the CPU.
    scikit-image's default differs (reflect padding and an ``N/(N−1)`` sample-covariance
    factor), so its values differ slightly. NaN where a map holds a NaN or an infinity.

    Args:
      a, b: Maps ``[B, H, W]`` with ``H, W >= window_size``.
      window_size: Side of the window, a Python int ``>= 1``.
      sigma: Standard deviation of the window in pixels, ``> 0``.
      data_range: ``L``, the value range of the maps (1 for maps in ``[0, 1]``).

    References:
      Wang, Bovik, Sheikh, Simoncelli, "Image quality assessment: from error visibility to
      structural similarity", IEEE TIP 2004.
    """
    window_size = checks.integer("window_size", window_size)
    sigma = checks.positive("sigma", sigma)
    data_range = checks.positive("data_range", data_range)
    a, b = checked_pair(a, b, ndims=(3,))
    if min(a.shape[1:]) < window_size:
        raise ValueError(
            f"ssim needs maps [B, H, W] with H, W >= window_size={window_size}, "
            f"got shape {tuple(a.shape)}"
        )
    value = _ssim(a, b, window_size=window_size, sigma=sigma, data_range=data_range)
    return nan_where_invalid((a, b), value)


@functools.partial(jax.jit, static_argnames=("window_size", "sigma", "data_range"))
def _ssim(
    a: jax.Array, b: jax.Array, *, window_size: int, sigma: float, data_range: float
) -> jax.Array:
    m_h = jnp.asarray(_window_matrix(a.shape[1], window_size, sigma), jnp.float32)
    m_w = jnp.asarray(_window_matrix(a.shape[2], window_size, sigma), jnp.float32)

    def filt(v: jax.Array) -> jax.Array:  # [B, H, W, 1] -> [B, H − w + 1, W − w + 1, 1]
        return jnp.einsum("ih,bhwc,jw->bijc", m_h, v, m_w, precision=jax.lax.Precision.HIGHEST)

    return dm_pix.ssim(a[..., None], b[..., None], max_val=data_range, filter_fn=filt)


SIMILARITIES: dict[str, Callable[[jax.Array, jax.Array], jax.Array]] = {
    "pearson": pearson,
    "ssim": ssim,
    "cosine": cosine_similarity,
    "mse": mse,
}
"""Similarities by name (for :func:`random_perturbation_similarity`); ``mse`` is a distance."""
