"""Substrates for deletion and insertion: what replaces a pixel that is taken away."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxinterp.metrics._common import check_like, check_positive

__all__ = ["SUBSTRATES", "blur", "make_substrate"]

SUBSTRATES: tuple[str, ...] = ("zeros", "mean", "blur")
"""What replaces deleted pixels (deletion) or what insertion starts from."""


def _gaussian_matrix(n: int, sigma: float) -> np.ndarray:
    """``[n, n]`` Gaussian weights ``exp(−(i − j)² / 2σ²)``, each row normalised to sum 1."""
    i = np.arange(n, dtype=np.float64)
    w = np.exp(-np.square(i[:, None] - i[None, :]) / (2.0 * sigma**2))
    return w / w.sum(axis=1, keepdims=True)


def blur(x: jax.Array, sigma: float) -> jax.Array:
    """Separable Gaussian blur of ``[B, H, W, C]``, each channel on its own.

    ``b_{h,w} = Σ_{h',w'} K_H[h, h'] K_W[w, w'] x_{h',w'}``, ``K[i, j] ∝ exp(−(i−j)²/2σ²)``
    normalised per row: a weighted mean over the pixels inside the image (no padding, so a
    constant image stays constant).
    """
    k_h = jnp.asarray(_gaussian_matrix(x.shape[1], sigma), x.dtype)
    k_w = jnp.asarray(_gaussian_matrix(x.shape[2], sigma), x.dtype)
    return jnp.einsum("ih,jw,bhwc->bijc", k_h, k_w, x)


def make_substrate(x: jax.Array, substrate: Any, blur_sigma: float | None = None) -> jax.Array:
    """The substrate named by ``substrate`` (one of :data:`SUBSTRATES`, or an array shaped
    like ``x``) for inputs ``x [B, H, W, C]`` or ``[B, D]``; see
    :func:`~jaxinterp.metrics.perturbation_curve`."""
    if blur_sigma is not None and not (isinstance(substrate, str) and substrate == "blur"):
        raise ValueError(f"blur_sigma applies to substrate='blur' only, got {substrate!r}")
    if not isinstance(substrate, str):
        return check_like(substrate, x, "substrate")
    if substrate == "zeros":
        return jnp.zeros_like(x)
    if substrate == "mean":
        axes = tuple(range(1, x.ndim - 1)) if x.ndim >= 3 else (1,)
        return jnp.broadcast_to(jnp.mean(x, axis=axes, keepdims=True), x.shape)
    if substrate == "blur":
        if x.ndim != 4:
            raise ValueError(f"substrate='blur' needs images [B, H, W, C], got shape {x.shape}")
        sigma = x.shape[1] / 8 if blur_sigma is None else check_positive("blur_sigma", blur_sigma)
        return blur(x, sigma)
    raise ValueError(
        f"unknown substrate {substrate!r}; expected one of {', '.join(SUBSTRATES)}"
        " or an array shaped like x"
    )
