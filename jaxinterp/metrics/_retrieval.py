"""Retrieval rate: does masking an adversarial input by its saliency give back the clean class?

And its specificity control: does the same procedure hand back *any* class it is asked for?
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

from jaxinterp.core import checks
from jaxinterp.core.ops import descending_ranks
from jaxinterp.core.protocols import ApplyFn

from ._common import nan_where_invalid, pixel_scores, pixel_shape
from ._robustness import heatmap

__all__ = ["retrieval", "retrieval_specificity"]


def _mask(a: jax.Array, x: jax.Array, fraction: float | None, key: jax.Array | None) -> jax.Array:
    """The multiplicative mask, shaped like ``x``: the heatmap, or the top-``q`` pixel set."""
    if fraction is None:
        m = heatmap(a)
    else:
        rank = descending_ranks(pixel_scores(a, absolute=True), key=key)
        k = max(1, math.floor(fraction * rank.shape[1] + 0.5))
        m = (rank < k).astype(x.dtype).reshape(x.shape[0], *pixel_shape(x))
    return jnp.broadcast_to(m[..., None], x.shape) if x.ndim == 4 else m


def retrieval(
    apply_fn: ApplyFn,
    params: Any,
    x_adv: jax.Array,
    attribution: jax.Array,
    clean_label: jax.Array,
    *,
    fraction: float | None = None,
    key: jax.Array | None = None,
) -> jax.Array:
    """Whether the saliency-masked adversarial input is classified as the clean class,
    ``[B]`` float 0/1 (its batch mean is the retrieval rate).

    ``hit = [argmax f(x_adv ⊙ m) = clean_label]`` with the mask ``m`` repeated over the
    channels: by default the soft mask ``m = Σ_c |a| / max Σ_c |a|`` (:func:`heatmap`,
    all-zero stays 0), as Lim et al. use it; with ``fraction = q``, the binary mask of the
    top ``k = max(1, ⌊q·P + ½⌋)`` of the ``P`` pixels by ``Σ_c |a|`` (ties in a random order
    drawn from ``key``), which gives every method the same pixel budget. ``attribution`` is
    the saliency of ``x_adv`` for the clean prediction's class (Lim et al. compute it for
    ``f(x)``'s top-1 class), e.g. a RelEx mask or a gradient.

    Args:
      apply_fn: ``apply_fn(params, x) -> logits [B, K]``.
      params: Model parameters.
      x_adv: Float adversarial inputs ``[B, H, W, C]`` (channels last) or ``[B, D]``.
      attribution: Shaped like ``x_adv``.
      clean_label: ``[B]`` int, the prediction on the clean inputs, each in ``[0, K)``.
      fraction: ``None`` (soft mask) or the kept share of pixels ``q ∈ (0, 1]``.
      key: PRNG key of the tie order of the binary mask.

    Returns:
      ``[B]`` float32 0/1; NaN where the attribution holds a NaN or an infinity, or (traced)
      where ``clean_label`` lies outside ``[0, K)``.

    Raises:
      ArgumentTypeError: A non-float ``x_adv`` (raw ``uint8`` images:
        ``x_adv.astype(jnp.float32) / 255``), non-integer labels, a non-real attribution.
      ValueError: Mismatched shapes, an empty or channels-first ``x_adv``, (concrete) a label
        outside ``[0, K)``, a bad ``fraction``.

    References:
      Lim, Lee, Kim, "Building reliable explanations of unreliable neural networks: locally
      smoothing perspective of model interpretation", CVPR 2021.
    """
    x_adv = checks.array(x_adv, "x_adv", ndims=(2, 4), image=True)
    a = checks.like(attribution, x_adv, "attribution", like="x_adv")
    num_classes = checks.num_classes(apply_fn, params, x_adv)
    clean_label = checks.labels(clean_label, x_adv.shape[0], "clean_label", num_classes=num_classes)
    if fraction is not None:
        fraction = checks.real("fraction", fraction, low=0.0, low_open=True, high=1.0)
    m = _mask(a, x_adv, fraction, key)
    pred = jnp.argmax(apply_fn(params, x_adv * m), axis=-1)
    hit = jnp.where(
        (clean_label >= 0) & (clean_label < num_classes), pred == clean_label, jnp.nan
    ).astype(jnp.float32)
    return nan_where_invalid(a, hit)


def retrieval_specificity(
    apply_fn: ApplyFn,
    params: Any,
    x_adv: jax.Array,
    clean_attribution: jax.Array,
    other_attribution: jax.Array,
    clean_label: jax.Array,
    other_label: jax.Array,
    *,
    fraction: float | None = None,
    key: jax.Array | None = None,
) -> dict[str, jax.Array]:
    """Retrieval of the clean class minus "retrieval" of a class that was never there, ``[B]``.

    ``clean = retrieval(x_adv, a_y, y)`` and ``other = retrieval(x_adv, a_t, t)`` with ``a_t``
    the same method's saliency of ``x_adv`` for a third class ``t`` (neither the clean nor
    the adversarial prediction); ``specificity = clean − other``. A masking procedure that
    can make any requested class win (a soft mask optimised per class is a multiplicative
    attack) scores a high ``clean`` *and* a high ``other``: only the difference says that
    the map recovered the clean class rather than whatever it was asked for.

    Args:
      apply_fn, params, x_adv, fraction, key: As :func:`retrieval`.
      clean_attribution: Saliency of ``x_adv`` for ``clean_label``.
      other_attribution: Saliency of ``x_adv`` for ``other_label``.
      clean_label: ``[B]`` int.
      other_label: ``[B]`` int, the third class.

    Returns:
      ``{"clean", "other", "specificity"}``, each ``[B]`` float32; ``clean`` (``other``) is
      NaN where ``clean_attribution`` (``other_attribution``) holds a NaN or an infinity, and
      ``specificity`` where either does.

    Raises:
      ArgumentTypeError, ValueError: As :func:`retrieval`, for either call.

    References:
      The control is the library's (METHODS §5.3); retrieval from Lim, Lee, Kim, CVPR 2021.
    """
    keys = (None, None) if key is None else tuple(jax.random.split(key))
    clean = retrieval(
        apply_fn, params, x_adv, clean_attribution, clean_label, fraction=fraction, key=keys[0]
    )
    other = retrieval(
        apply_fn, params, x_adv, other_attribution, other_label, fraction=fraction, key=keys[1]
    )
    return {"clean": clean, "other": other, "specificity": clean - other}
