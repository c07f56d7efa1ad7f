"""Per-example classification losses: what the attacks ascend and the penalties score.

Both losses map logits ``[B, K]`` and integer labels ``[B]`` to one value per example
``[B]``; larger means "more wrong" for the label. The attacks maximise the batch sum of these
values (untargeted) or of their negation toward a target label (targeted).
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


def _check_logits_labels(logits: jax.Array, labels: jax.Array, name: str) -> None:
    """Shape and dtype checks (static, so they also run under ``jit``); label range for
    concrete labels."""
    if logits.ndim != 2:
        raise ValueError(f"{name}: logits must be [B, K], got shape {tuple(logits.shape)}")
    checks.labels(labels, logits.shape[0], f"{name}: labels", num_classes=logits.shape[1])


def label_logit(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """``logits[b, labels[b]]`` for each ``b``, shape ``[B]``."""
    return jnp.take_along_axis(logits, labels[:, None], axis=1)[:, 0]


def ce_loss(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Softmax cross-entropy per example.

    ``ce(f, y) = logsumexp_j f_j - f_y = -log softmax(f)_y``, computed in float32 (or wider).

    Args:
      logits: Logits ``f`` of shape ``[B, K]``.
      labels: Integer labels ``y`` of shape ``[B]``, each in ``[0, K)``.

    Returns:
      Losses of shape ``[B]``, each ``>= 0``.

    Raises:
      ArgumentTypeError: If the labels are not integers.
      ValueError: If the shapes are not ``[B, K]`` and ``[B]``, or (concrete labels) a label
        lies outside ``[0, K)``.

    References:
      Goodfellow et al., "Explaining and Harnessing Adversarial Examples", ICLR 2015 (the
      loss ascended by FGSM).
    """
    _check_logits_labels(logits, labels, "ce_loss")
    logits = logits.astype(jnp.promote_types(logits.dtype, jnp.float32))
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def margin_loss(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Carlini–Wagner margin per example: how far the best other class beats the label.

    ``margin(f, y) = max_{j != y} f_j - f_y``. It is positive exactly when the example is
    misclassified (ties aside) and, unlike cross-entropy, does not saturate on confidently
    correct examples. No confidence clamp ``max(., -κ)`` is applied.

    Args:
      logits: Logits ``f`` of shape ``[B, K]`` with ``K >= 2``.
      labels: Integer labels ``y`` of shape ``[B]``, each in ``[0, K)``.

    Returns:
      Margins of shape ``[B]``.

    Raises:
      ArgumentTypeError: If the labels are not integers.
      ValueError: If the shapes are not ``[B, K]`` and ``[B]``, ``K < 2``, or (concrete
        labels) a label lies outside ``[0, K)``.

    References:
      Carlini & Wagner, "Towards Evaluating the Robustness of Neural Networks", IEEE S&P 2017.
    """
    _check_logits_labels(logits, labels, "margin_loss")
    if logits.shape[1] < 2:
        raise ValueError(f"margin_loss needs K >= 2 classes, got logits of shape {logits.shape}")
    logits = logits.astype(jnp.promote_types(logits.dtype, jnp.float32))
    is_label = jax.nn.one_hot(labels, logits.shape[1], dtype=jnp.bool_)
    best_other = jnp.max(jnp.where(is_label, -jnp.inf, logits), axis=-1)
    return best_other - label_logit(logits, labels)


LOSSES: dict[str, LossFn] = {"ce": ce_loss, "margin": margin_loss}
"""Losses by the names the attacks accept."""


def get_loss(name: str) -> LossFn:
    """Looks a loss up by name (``"ce"`` or ``"margin"``).

    Raises:
      ValueError: For an unknown name; the message lists the known ones.
    """
    return LOSSES[checks.one_of("loss", name, tuple(LOSSES))]
