"""Per-example classification losses: what the attacks ascend and the penalties score.

Both losses map logits ``[B, K]`` and integer labels ``[B]`` to one value per example
``[B]``; larger means "more wrong" for the label. Concrete labels outside ``[0, K)`` raise;
traced ones (under ``jit``) give NaN for their example, never the loss of another class.
The attacks maximise the batch sum of these values (untargeted) or of their negation toward
a target label (targeted).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from jaxinterp.core import checks

__all__ = ["LOSSES", "LossFn", "ce_loss", "get_loss", "label_logit", "margin_loss"]

LossFn = Callable[[jax.Array, jax.Array], jax.Array]
"""``loss(logits [B, K], labels [B] int) -> [B]``."""


def _check_logits_labels(logits: jax.Array, labels: jax.Array, name: str) -> jax.Array:
    """Shape and dtype checks (static, so they also run under ``jit``); label range for
    concrete labels. Returns the labels as an array."""
    if jnp.ndim(logits) != 2:
        raise ValueError(f"{name}: logits must be [B, K], got shape {tuple(jnp.shape(logits))}")
    return checks.labels(labels, logits.shape[0], f"{name}: labels", num_classes=logits.shape[1])


def _in_range(labels: jax.Array, num_classes: int) -> jax.Array:
    """``[B]`` bool: ``0 <= labels[b] < K``."""
    return (labels >= 0) & (labels < num_classes)


def _nan_outside(value: jax.Array, labels: jax.Array, num_classes: int) -> jax.Array:
    """``value [B]`` with NaN where a label lies outside ``[0, K)`` (traced labels, which the
    concrete range check cannot see)."""
    return jnp.where(_in_range(labels, num_classes), value, jnp.nan)


def _clipped(labels: jax.Array, num_classes: int) -> jax.Array:
    """Labels clipped to ``[0, K)``: the index the gathers use; the result is NaN-masked."""
    return jnp.clip(labels, 0, num_classes - 1)


def label_logit(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """``logits[b, labels[b]]`` for each ``b``, shape ``[B]``.

    Args:
      logits: ``[B, K]`` (logits, or any per-class values such as probabilities).
      labels: Integer labels ``[B]``, each in ``[0, K)``.

    Returns:
      ``[B]``; NaN for an example whose label lies outside ``[0, K)`` (labels traced under
      ``jit``, which cannot be range-checked: never the value of another class).

    Raises:
      ArgumentTypeError: If the labels are not integers.
      ValueError: If the shapes are not ``[B, K]`` and ``[B]``, or (concrete labels) a label
        lies outside ``[0, K)``.
    """
    labels = _check_logits_labels(logits, labels, "label_logit")
    k = logits.shape[1]
    picked = jnp.take_along_axis(logits, _clipped(labels, k)[:, None], axis=1)[:, 0]
    return _nan_outside(picked, labels, k)


def ce_loss(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Softmax cross-entropy per example.

    ``ce(f, y) = logsumexp_j f_j - f_y = -log softmax(f)_y``, computed in float32 (or wider).

    Args:
      logits: Logits ``f`` of shape ``[B, K]``.
      labels: Integer labels ``y`` of shape ``[B]``, each in ``[0, K)``.

    Returns:
      Losses of shape ``[B]``, each ``>= 0``; NaN for an example whose label lies outside
      ``[0, K)`` (labels traced under ``jit``, where the range check cannot run).

    Raises:
      ArgumentTypeError: If the labels are not integers.
      ValueError: If the shapes are not ``[B, K]`` and ``[B]``, or (concrete labels) a label
        lies outside ``[0, K)``.

    References:
      Goodfellow et al., "Explaining and Harnessing Adversarial Examples", ICLR 2015 (the
      loss ascended by FGSM).
    """
    labels = _check_logits_labels(logits, labels, "ce_loss")
    k = logits.shape[1]
    logits = logits.astype(jnp.promote_types(logits.dtype, jnp.float32))
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, _clipped(labels, k))
    return _nan_outside(loss, labels, k)


def margin_loss(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Carlini–Wagner margin per example: how far the best other class beats the label.

    ``margin(f, y) = max_{j != y} f_j - f_y``. It is positive exactly when the example is
    misclassified (ties aside) and, unlike cross-entropy, does not saturate on confidently
    correct examples. No confidence clamp ``max(., -κ)`` is applied.

    Args:
      logits: Logits ``f`` of shape ``[B, K]`` with ``K >= 2``.
      labels: Integer labels ``y`` of shape ``[B]``, each in ``[0, K)``.

    Returns:
      Margins of shape ``[B]``; NaN for an example whose label lies outside ``[0, K)``
      (labels traced under ``jit``, where the range check cannot run).

    Raises:
      ArgumentTypeError: If the labels are not integers.
      ValueError: If the shapes are not ``[B, K]`` and ``[B]``, ``K < 2``, or (concrete
        labels) a label lies outside ``[0, K)``.

    References:
      Carlini & Wagner, "Towards Evaluating the Robustness of Neural Networks", IEEE S&P 2017.
    """
    labels = _check_logits_labels(logits, labels, "margin_loss")
    k = logits.shape[1]
    if k < 2:
        raise ValueError(f"margin_loss needs K >= 2 classes, got logits of shape {logits.shape}")
    logits = logits.astype(jnp.promote_types(logits.dtype, jnp.float32))
    safe = _clipped(labels, k)
    is_label = jax.nn.one_hot(safe, k, dtype=jnp.bool_)
    best_other = jnp.max(jnp.where(is_label, -jnp.inf, logits), axis=-1)
    label = jnp.take_along_axis(logits, safe[:, None], axis=1)[:, 0]
    return _nan_outside(best_other - label, labels, k)


LOSSES: dict[str, LossFn] = {"ce": ce_loss, "margin": margin_loss}
"""Losses by the names the attacks accept."""


def get_loss(name: str) -> LossFn:
    """Looks a loss up by name (``"ce"`` or ``"margin"``).

    Raises:
      ValueError: For an unknown name; the message lists the known ones.
    """
    return LOSSES[checks.one_of("loss", name, tuple(LOSSES))]
