"""APE: how much an attack confined to the explanation's top pixels hurts the true class.

The exact definition of Shoshan & Ratner's metric was not available (METHODS §4); the one
adopted here perturbs only the pixels an explanation ranks highest, with an L∞ PGD budget,
and reports the drop of the true-class probability, next to the same attack on the pixels it
ranks lowest as a control.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

from jaxinterp.core import checks
from jaxinterp.core.ascent import gradient_steps
from jaxinterp.core.losses import ce_loss, label_logit, margin_loss
from jaxinterp.core.protocols import ApplyFn

from ._common import descending_ranks, nan_where_invalid, pixel_scores, pixel_shape

__all__ = ["ape"]


def _masked_pgd(
    apply_fn: ApplyFn,
    params: Any,
    x: jax.Array,
    y: jax.Array,
    mask: jax.Array,
    *,
    epsilon: float,
    num_steps: int,
    step_size: float,
    bounds: tuple[float, float] | None,
    score: str,
) -> jax.Array:
    """L∞ PGD from ``δ = 0`` on the entries where ``mask`` (shaped like ``x``) is 1:
    ``δ ← Π(δ + α · sign(∇ L(f(x + δ), y)) ⊙ mask)``, ``L`` the cross-entropy (``score``
    ``"probability"``) or the margin loss (``"margin"``), ``Π`` the clip to ``[−ε, ε]`` and
    to ``bounds``; returns ``x + δ``."""
    params = jax.lax.stop_gradient(params)
    mask = mask.astype(x.dtype)
    objective = margin_loss if score == "margin" else ce_loss

    def loss(delta: jax.Array) -> jax.Array:
        return jnp.sum(objective(apply_fn(params, x + delta), y))

    def project(delta: jax.Array) -> jax.Array:
        delta = jnp.clip(delta, -epsilon, epsilon)
        if bounds is not None:
            delta = (jnp.clip(x + delta, bounds[0], bounds[1]) - x) * mask
        return delta

    delta = gradient_steps(
        loss, jnp.zeros_like(x), num_steps=num_steps, step_size=step_size, mask=mask,
        project=project,
    )  # fmt: skip
    return jax.lax.stop_gradient(x + delta)


SCORES = ("probability", "margin")
"""What :func:`ape` measures the drop of."""


def _score(apply_fn: ApplyFn, params: Any, x: jax.Array, y: jax.Array, score: str) -> jax.Array:
    """``p_y`` (``"probability"``) or the logit margin ``f_y − max_{j≠y} f_j``, ``[B]``."""
    logits = apply_fn(params, x).astype(jnp.float32)
    if score == "margin":
        return -margin_loss(logits, y)
    return label_logit(jax.nn.softmax(logits, axis=-1), y)  # NaN for a traced label >= K.


def ape(
    apply_fn: ApplyFn,
    params: Any,
    x: jax.Array,
    y: jax.Array,
    attribution: jax.Array,
    *,
    epsilon: float,
    num_steps: int = 10,
    step_size: float | None = None,
    fraction: float | jax.Array = 0.1,
    bounds: tuple[float, float] | None = (0.0, 1.0),
    score: str = "probability",
    key: jax.Array | None = None,
) -> dict[str, jax.Array]:
    """Adversarial perturbation effect of an explanation's top pixels (adopted APE), ``[B]``.

    Pixels (all channels of a position) are ranked by ``Σ_c |a|``, highest first, ties in
    a random order drawn from ``key`` (never by index: sign-step perturbations are mostly
    tied); ``T`` holds the top ``k = max(1, ⌊q·P + ½⌋)`` of the ``P`` pixels
    (``q = fraction``) and ``T̄`` the bottom ``k``. L∞ PGD (sign steps on the cross-entropy
    of ``y``, from ``δ = 0``, ``num_steps`` steps of ``α``, a ``lax.fori_loop``) moves only
    the pixels of a mask, within ``‖δ‖∞ <= ε`` and ``bounds``::

        ape            = s_y(x) − s_y(x + δ_T)
        ape_complement = s_y(x) − s_y(x + δ_T̄)

    ``s_y = p_y = softmax(f)_y`` (``score="probability"``), or the logit margin
    ``s_y = f_y − max_{j≠y} f_j`` (``score="margin"``, attacked with the margin loss): the
    probability saturates on confident examples (``p_y ≈ 1`` moves little whatever the set),
    the margin does not. An explanation that names the decision-relevant pixels has
    ``ape > ape_complement``. Both attacks run as one batch of ``2B`` inputs. Both values are
    NaN for an example whose attribution holds a NaN or an infinity.

    Args:
      apply_fn: ``apply_fn(params, x) -> logits [B, K]``.
      params: Model parameters (held fixed).
      x: Float inputs ``[B, H, W, C]`` (channels last) or ``[B, D]``, inside ``bounds``.
      y: True labels ``[B]`` (int), each in ``[0, K)``.
      attribution: Shaped like ``x``.
      epsilon: L∞ budget ``ε > 0``.
      num_steps: PGD steps ``>= 1``, a Python int.
      step_size: ``α > 0``; default ``2.5 ε / num_steps``.
      fraction: ``q ∈ (0, 0.5]``, so that ``T`` and ``T̄`` are disjoint. A traced scalar is
        taken as given (unchecked; ``k`` is then computed in its float type), so one compiled
        program can serve several fractions: the masks are rank comparisons, not ``top_k``.
      bounds: Valid input range ``(lo, hi)``, or ``None``.
      score: ``"probability"`` or ``"margin"``.
      key: PRNG key of the tie order of the ranking (``None``: a fixed one).

    Returns:
      ``{"ape": [B], "ape_complement": [B]}``, float32.

    Raises:
      ArgumentTypeError: A non-float ``x`` (raw ``uint8`` images: ``x.astype(jnp.float32) /
        255``), non-integer ``y``, a non-real attribution.
      ValueError: Mismatched shapes, an empty or channels-first ``x``, (concrete) ``x``
        outside ``bounds`` or a label outside ``[0, K)``, bad hyperparameters.

    References:
      Shoshan, Ratner, "Regularized adversarial examples for model interpretability",
      arXiv:1811.07311, 2018 (the metric's name; this definition is the library's).
    """
    epsilon = checks.positive("epsilon", epsilon)
    num_steps = checks.integer("num_steps", num_steps)
    step_size = checks.step_size(step_size, epsilon, num_steps)
    if checks.is_concrete(fraction):
        fraction = checks.real("fraction", fraction, low=0.0, low_open=True, high=0.5)
    bounds = checks.bounds(bounds)
    x = checks.array(x, "x", ndims=(2, 4), image=True)
    a = checks.like(attribution, x, "attribution")
    y = checks.labels(y, x.shape[0], "y", num_classes=checks.num_classes(apply_fn, params, x))
    checks.in_bounds(x, bounds)
    checks.one_of("score", score, SCORES)
    rank = descending_ranks(pixel_scores(a, absolute=True), key=key)  # [B, P]
    num_pixels = rank.shape[1]
    if isinstance(fraction, float):
        k: int | jax.Array = max(1, math.floor(fraction * num_pixels + 0.5))
    else:  # traced
        k = jnp.maximum(1, jnp.floor(fraction * num_pixels + 0.5).astype(jnp.int32))
    shape = (x.shape[0], *pixel_shape(x)) + ((1,) if x.ndim == 4 else ())

    def as_mask(m: jax.Array) -> jax.Array:
        return jnp.broadcast_to(m.reshape(shape), x.shape)

    masks = jnp.concatenate([as_mask(rank < k), as_mask(rank >= num_pixels - k)])
    xx, yy = jnp.concatenate([x, x]), jnp.concatenate([y, y])
    x_adv = _masked_pgd(
        apply_fn,
        params,
        xx,
        yy,
        masks,
        epsilon=epsilon,
        num_steps=num_steps,
        step_size=step_size,
        bounds=bounds,
        score=score,
    )
    p0 = _score(apply_fn, jax.lax.stop_gradient(params), x, y, score)
    p1 = _score(apply_fn, jax.lax.stop_gradient(params), x_adv, yy, score)
    b = x.shape[0]
    return nan_where_invalid(a, {"ape": p0 - p1[:b], "ape_complement": p0 - p1[b:]})
