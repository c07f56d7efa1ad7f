"""Substrates for deletion and insertion: what replaces a pixel that is taken away."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jaxinterp.core import checks
from jaxinterp.core.ops import gaussian_smoothing

__all__ = ["SUBSTRATES", "blur", "make_substrate"]

SUBSTRATES: tuple[str, ...] = ("zeros", "mean", "blur")
"""What replaces deleted pixels (deletion) or what insertion starts from."""


def blur(x: jax.Array, sigma: float) -> jax.Array:
    """Separable Gaussian blur of ``[B, H, W, C]``, each channel on its own: the
    :func:`~jaxinterp.attribution.gaussian_smoothing` of the explanations, applied to ``x``
    (a weighted mean over the pixels inside the image, so a constant image stays constant).
    """
    return gaussian_smoothing(sigma)(x)


def make_substrate(x: jax.Array, substrate: Any, blur_sigma: float | None = None) -> jax.Array:
    """The substrate named by ``substrate`` (one of :data:`SUBSTRATES`, or an array shaped
    like ``x``) for inputs ``x [B, H, W, C]`` or ``[B, D]``; see
    :func:`~jaxinterp.metrics.perturbation_curve`."""
    if blur_sigma is not None and not (isinstance(substrate, str) and substrate == "blur"):
        raise ValueError(f"blur_sigma applies to substrate='blur' only, got {substrate!r}")
    if not isinstance(substrate, str):
        return checks.like(substrate, x, "substrate")
    checks.one_of("substrate", substrate, SUBSTRATES)
    if substrate == "zeros":
        return jnp.zeros_like(x)
    if substrate == "mean":
        axes = tuple(range(1, x.ndim - 1)) if x.ndim >= 3 else (1,)
        return jnp.broadcast_to(jnp.mean(x, axis=axes, keepdims=True), x.shape)
    if x.ndim != 4:
        raise ValueError(f"substrate='blur' needs images [B, H, W, C], got shape {x.shape}")
    sigma = x.shape[1] / 8 if blur_sigma is None else checks.positive("blur_sigma", blur_sigma)
    return blur(x, sigma)
