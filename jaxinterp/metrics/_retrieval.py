"""Retrieval rate: does masking an adversarial input by its saliency give back the clean class?"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jaxinterp.core import checks
from jaxinterp.core.protocols import ApplyFn

from ._robustness import heatmap

__all__ = ["retrieval"]


def retrieval(
    apply_fn: ApplyFn,
    params: Any,
    x_adv: jax.Array,
    attribution: jax.Array,
    clean_label: jax.Array,
) -> jax.Array:
    """Whether the saliency-masked adversarial input is classified as the clean class,
    ``[B]`` float 0/1 (its batch mean is the retrieval rate).

    ``m = Σ_c |a| / max Σ_c |a|`` (:func:`heatmap`, all-zero stays 0), repeated over the
    channels; ``hit = [argmax f(x_adv ⊙ m) = clean_label]``. ``attribution`` is the
    saliency of ``x_adv`` for the clean prediction's class (Lim et al. compute it for
    ``f(x)``'s top-1 class), e.g. a RelEx mask or a gradient.

    Args:
      apply_fn: ``apply_fn(params, x) -> logits [B, K]``.
      params: Model parameters.
      x_adv: Adversarial inputs ``[B, H, W, C]`` or ``[B, D]``.
      attribution: Shaped like ``x_adv``.
      clean_label: ``[B]`` int, the prediction on the clean inputs.

    References:
      Lim, Lee, Kim, "Building reliable explanations of unreliable neural networks: locally
      smoothing perspective of model interpretation", CVPR 2021.
    """
    x_adv = checks.array(x_adv, "x_adv", ndims=(2, 4), cast=True)
    a = checks.like(attribution, x_adv, "attribution", like="x_adv")
    clean_label = checks.labels(clean_label, x_adv.shape[0], "clean_label")
    m = heatmap(a)
    m = jnp.broadcast_to(m[..., None], x_adv.shape) if x_adv.ndim == 4 else m
    pred = jnp.argmax(apply_fn(params, x_adv * m), axis=-1)
    return (pred == clean_label).astype(jnp.float32)
