"""Gradient (saliency) and Gradient × Input.

The path and noise methods built on them (integrated gradients, smoothing) bound their
memory with :func:`jaxinterp.core.ops.chunked_reduce`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxinterp.core import checks
from jaxinterp.core.protocols import AttributionFn, ScoreFn
from jaxinterp.core.scores import checked_score, scores_of_copies

__all__ = ["attributions_of_copies", "gradient", "gradient_x_input", "gradients_of_copies"]


def gradient(score_fn: ScoreFn, x: jax.Array) -> jax.Array:
    """Per-example input gradient (saliency).

    ``g_b = ∇ₓ s_b(x_b)``, computed as ``∇ₓ Σ_b s_b(x_b)`` in one reverse pass — exact
    because examples do not interact in ``score_fn``.

    Args:
        score_fn: ``score_fn(x [B, ...]) -> [B]``, e.g. from :func:`class_score`.
        x: Inputs ``[B, ...]`` (e.g. ``[B, H, W, C]``), floating point.

    Returns:
        ``g``, shaped like ``x``.

    Raises:
        TypeError: ``x`` is not floating point (raw ``uint8`` images: the message gives
            ``x.astype(jnp.float32) / 255``).
        ValueError: ``score_fn`` does not return shape ``[B]``, an empty batch, or a 4-D
            ``x`` that looks channels-first (``[B, H, W, C]`` is expected).

    References:
        Simonyan, Vedaldi, Zisserman, "Deep inside convolutional networks: visualising image
        classification models and saliency maps", ICLR Workshop 2014.
    """
    x = checks.array(x, image=True)
    return jax.grad(lambda z: jnp.sum(checked_score(score_fn, z)))(x)


def gradients_of_copies(score_fn: ScoreFn, z: jax.Array) -> jax.Array:
    """:func:`gradient` of each copy of a batch: ``z [n, B, ...] -> [n, B, ...]``.

    One reverse pass over the copies as
    :func:`~jaxinterp.core.scores.scores_of_copies` scores them (a class score: one batch of
    ``n·B`` inputs; any other score function: vmapped over the copies).
    """
    return jax.grad(lambda v: jnp.sum(scores_of_copies(score_fn, v)))(z)


def gradient_x_input(score_fn: ScoreFn, x: jax.Array) -> jax.Array:
    """Gradient × Input: ``φ_b = x_b ⊙ ∇ₓ s_b(x_b)``.

    Equal to integrated gradients from a zero baseline when ``s`` is linear.

    Args:
        score_fn: ``score_fn(x [B, ...]) -> [B]``.
        x: Inputs ``[B, ...]``, floating point.

    Returns:
        ``φ``, shaped like ``x``.

    References:
        Shrikumar, Greenside, Shcherbina, Kundaje, "Not just a black box: learning important
        features through propagating activation differences", arXiv:1605.01713, 2016.
    """
    x = checks.array(x, image=True)
    return x * gradient(score_fn, x)


def attributions_of_copies(
    attribution_fn: AttributionFn, score_fn: ScoreFn, z: jax.Array
) -> jax.Array:
    """``attribution_fn(score_fn, z[i])`` for each copy: ``z [n, B, ...] -> [n, B, ...]``.

    :func:`gradient` and :func:`gradient_x_input` take one reverse pass over the copies
    (:func:`gradients_of_copies`); any other method is vmapped over them. Each result must
    be shaped like its copy.
    """
    if attribution_fn is gradient:
        return gradients_of_copies(score_fn, z)
    if attribution_fn is gradient_x_input:
        return z * gradients_of_copies(score_fn, z)

    def one(zi: jax.Array) -> jax.Array:
        a = attribution_fn(score_fn, zi)
        if a.shape != zi.shape:
            raise ValueError(
                f"attribution_fn must return an array shaped like x {zi.shape}, got {a.shape}"
            )
        return a

    return jax.vmap(one)(z)
