"""Faithfulness: does the score of the model follow what the attribution says matters?

Every function takes a per-example score ``score_fn(x [B, ...]) -> [B]`` (for instance
``attribution.class_score(apply_fn, params, y, kind="softmax")``), the inputs ``x`` and an
attribution shaped like ``x``, and returns one value per example ``[B]`` (float32). The
perturbed copies of ``x`` (steps or noise draws) are scored by
:func:`~jaxinterp.core.scores.scores_of_copies` (a class score sees the copies as one batch,
any other ``score_fn`` is vmapped over them and sees batches of ``B``), all at once
(``chunk_size=None``; on CPU :func:`~jaxinterp.core.ops.auto_chunk_size` bounds the examples
of a pass) or ``chunk_size`` copies a pass (bounded memory). Inputs are floats (images
channels last); an example whose attribution holds a NaN or an infinity gets NaN.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from jaxinterp.core import checks
from jaxinterp.core.ops import chunked_apply, row_sum
from jaxinterp.core.protocols import ScoreFn
from jaxinterp.core.scores import checked_score, scores_of_copies

from ._common import descending_ranks, nan_where_invalid, pixel_scores, pixel_shape
from ._substrates import SUBSTRATES, make_substrate

__all__ = [
    "MODES",
    "SUBSTRATES",
    "completeness_delta",
    "deletion_auc",
    "infidelity",
    "insertion_auc",
    "perturbation_curve",
]

MODES: tuple[str, ...] = ("deletion", "insertion")
"""The paths of :func:`perturbation_curve`."""


def perturbation_curve(
    score_fn: ScoreFn,
    x: jax.Array,
    attribution: jax.Array,
    *,
    mode: str = "deletion",
    num_steps: int = 16,
    substrate: str | jax.Array = "zeros",
    blur_sigma: float | None = None,
    chunk_size: int | None = None,
    key: jax.Array | None = None,
) -> jax.Array:
    """Scores along the deletion or insertion path of an attribution, ``[B, num_steps + 1]``.

    Pixels (all channels of a position; entries of a flat ``[B, D]`` input) are ranked by
    ``r = Σ_c a`` (signed), highest first, ties in a random order drawn from ``key``
    (:func:`jaxinterp.core.ops.descending_ranks`; never by index). With ``P`` pixels and
    ``T = num_steps``, step ``t = 0..T`` changes the top ``n_t = ⌊t·P/T + ½⌋`` pixels:
    deletion replaces them in ``x`` by the substrate ``x̃``; insertion starts from ``x̃`` and
    puts back the pixels of ``x``. Column ``t`` holds ``score_fn`` of the step-``t`` input.

    Args:
      score_fn: ``score_fn(x [B, ...]) -> [B]``.
      x: Float inputs ``[B, H, W, C]`` (channels last) or ``[B, D]``.
      attribution: Shaped like ``x``.
      mode: ``"deletion"`` or ``"insertion"``.
      num_steps: ``T >= 1``, a Python int.
      substrate: ``"zeros"``; ``"mean"`` (per-example, per-channel mean of ``x``); ``"blur"``
        (Gaussian blur of ``x``, σ = ``blur_sigma`` or ``H / 8`` pixels, images only); or an
        array shaped like ``x``.
      blur_sigma: σ in pixels for ``substrate="blur"``.
      chunk_size: ``None``: all ``T + 1`` inputs in one pass (on CPU
        :func:`~jaxinterp.core.ops.auto_chunk_size`); else this many a pass.
      key: PRNG key of the tie order (``None``: a fixed one, see
        :func:`jaxinterp.core.ops.tie_order`).

    Returns:
      ``[B, T + 1]`` scores; a row of NaN where the attribution holds a NaN or an infinity.

    Raises:
      ArgumentTypeError: A non-float ``x`` (raw ``uint8`` images: ``x.astype(jnp.float32) /
        255``) or a non-real attribution.
      ValueError: Mismatched shapes, an empty or channels-first ``x``, an unknown mode or
        substrate, bad hyperparameters.

    References:
      Petsiuk, Das, Saenko, "RISE: Randomized input sampling for explanation of black-box
      models", BMVC 2018.
    """
    checks.one_of("mode", mode, MODES)
    steps = checks.integer("num_steps", num_steps)
    chunk_size = checks.chunk_size(chunk_size)
    x = checks.array(x, "x", ndims=(2, 4), image=True)
    a = checks.like(attribution, x, "attribution")
    base = make_substrate(x, substrate, blur_sigma).astype(x.dtype)
    rank = descending_ranks(pixel_scores(a, absolute=False), key=key)  # [B, P]
    num_pixels = rank.shape[1]
    counts = jnp.asarray(
        [(2 * t * num_pixels + steps) // (2 * steps) for t in range(steps + 1)], jnp.int32
    )
    mask_shape = (x.shape[0], *pixel_shape(x)) + ((1,) if x.ndim >= 3 else ())

    def input_at(n: jax.Array) -> jax.Array:
        changed = jnp.broadcast_to((rank < n).reshape(mask_shape), x.shape)
        return jnp.where(changed, base, x) if mode == "deletion" else jnp.where(changed, x, base)

    def scores(ns: jax.Array) -> jax.Array:  # [m] -> [m, B]
        return scores_of_copies(score_fn, jax.vmap(input_at)(ns))

    curve = chunked_apply(scores, counts, chunk_size, examples_per_point=x.shape[0])
    return nan_where_invalid(a, curve.T.astype(jnp.float32))


def _auc(curve: jax.Array) -> jax.Array:
    """Trapezoid rule with spacing ``1/T`` over ``T + 1`` points: ``[B, T+1] -> [B]``."""
    steps = curve.shape[1] - 1
    return (jnp.sum(curve, axis=1) - 0.5 * (curve[:, 0] + curve[:, -1])) / steps


def _area_under(mode: str, default_substrate: str, doc: str) -> Callable[..., jax.Array]:
    """The AUC metric of :func:`perturbation_curve` in ``mode`` (one signature for both)."""

    def auc(
        score_fn: ScoreFn,
        x: jax.Array,
        attribution: jax.Array,
        *,
        num_steps: int = 16,
        substrate: str | jax.Array = default_substrate,
        blur_sigma: float | None = None,
        chunk_size: int | None = None,
        key: jax.Array | None = None,
    ) -> jax.Array:
        curve = perturbation_curve(
            score_fn, x, attribution, mode=mode, num_steps=num_steps, substrate=substrate,
            blur_sigma=blur_sigma, chunk_size=chunk_size, key=key,
        )  # fmt: skip
        return _auc(curve)

    auc.__name__ = auc.__qualname__ = f"{mode}_auc"
    auc.__doc__ = doc
    return auc


_RISE = """

    References:
      Petsiuk, Das, Saenko, "RISE: Randomized input sampling for explanation of black-box
      models", BMVC 2018.
    """

deletion_auc = _area_under(
    "deletion",
    "zeros",
    """Area under the deletion curve, ``[B]``: lower means a more faithful attribution.

    ``AUC = (1/T) (s_0/2 + s_1 + … + s_{T−1} + s_T/2)``, the trapezoid rule with spacing
    ``1/T`` over the scores ``s_t`` of :func:`perturbation_curve` (``mode="deletion"``); in
    ``[0, 1]`` when the score is a probability. Arguments as :func:`perturbation_curve`
    (default substrate ``"zeros"``)."""
    + _RISE,
)

insertion_auc = _area_under(
    "insertion",
    "blur",
    """Area under the insertion curve, ``[B]``: higher means a more faithful attribution.

    The trapezoid AUC (as :func:`deletion_auc`) of :func:`perturbation_curve` with
    ``mode="insertion"``: start from the substrate (a blurred ``x`` by default) and put the
    pixels of ``x`` back, most important first."""
    + _RISE,
)


def infidelity(
    score_fn: ScoreFn,
    x: jax.Array,
    attribution: jax.Array,
    *,
    key: jax.Array,
    num_samples: int = 16,
    noise_scale: float = 0.1,
    chunk_size: int | None = None,
) -> jax.Array:
    """Explanation infidelity, ``[B]``: how badly ``φ`` predicts the effect of perturbations.

    ``INFD(φ, s, x) = E_I[(Iᵀφ − (s(x) − s(x − I)))²]``, ``I ~ N(0, σ² Id)`` over all
    entries of ``x``, estimated by the mean over ``num_samples`` draws (no rescaling of
    ``φ``). The draws are shared by the examples of a batch (common random numbers), so an
    example's value depends on ``key`` and the example only, not on ``B`` or its batch
    neighbours; fold a batch index into ``key`` for independent draws across batches. Zero
    for ``φ = ∇s`` when ``s`` is linear; NaN where ``φ`` holds a NaN or an infinity.

    Args:
      score_fn: ``score_fn(x [B, ...]) -> [B]``.
      x: Float inputs ``[B, ...]`` (images channels last).
      attribution: ``φ``, shaped like ``x``.
      key: PRNG key.
      num_samples: Number of draws ``>= 1``, a Python int.
      noise_scale: ``σ > 0``.
      chunk_size: ``None`` (all draws in one pass; on CPU
        :func:`~jaxinterp.core.ops.auto_chunk_size`) or the draws a pass.

    Raises:
      ArgumentTypeError: A non-float ``x`` (raw ``uint8`` images: ``x.astype(jnp.float32) /
        255``), a non-real attribution or a bad ``key``.
      ValueError: Mismatched shapes, an empty or channels-first ``x``, bad hyperparameters.

    References:
      Yeh, Hsieh, Suggala, Inouye, Ravikumar, "On the (in)fidelity and sensitivity of
      explanations", NeurIPS 2019.
    """
    num_samples = checks.integer("num_samples", num_samples)
    noise_scale = checks.positive("noise_scale", noise_scale)
    chunk_size = checks.chunk_size(chunk_size)
    key = checks.key(key)
    x = checks.array(x, "x", image=True)
    a = checks.like(attribution, x, "attribution")
    noise = noise_scale * jax.random.normal(key, (num_samples, 1, *x.shape[1:]), x.dtype)
    s0 = checked_score(score_fn, x)

    def errors(i: jax.Array) -> jax.Array:  # noise [m, 1, ...] -> [m, B]
        predicted = jax.vmap(lambda ij: row_sum(ij * a))(i)
        return jnp.square(predicted - (s0[None] - scores_of_copies(score_fn, x[None] - i)))

    value = jnp.mean(
        chunked_apply(errors, noise, chunk_size, examples_per_point=x.shape[0]), axis=0
    ).astype(jnp.float32)
    return nan_where_invalid(a, value)


def completeness_delta(
    score_fn: ScoreFn, x: jax.Array, attribution: jax.Array, baseline: Any
) -> jax.Array:
    """Completeness gap ``δ = Σφ − (s(x) − s(x'))`` per example, ``[B]``.

    Zero for attributions that satisfy completeness (integrated gradients, up to quadrature
    error, and Gradient × Input of a linear score from a zero baseline); NaN where ``φ``
    holds a NaN or an infinity.

    Args:
      score_fn: ``score_fn(x [B, ...]) -> [B]``.
      x: Float inputs ``[B, ...]`` (images channels last).
      attribution: ``φ``, shaped like ``x``.
      baseline: ``x'``: ``None`` (zeros), a number, or an array that broadcasts to ``x``'s
        shape or to one example's ``x.shape[1:]`` (shared by the batch).

    Raises:
      ArgumentTypeError: A non-float ``x`` (raw ``uint8`` images: ``x.astype(jnp.float32) /
        255``) or a non-real attribution.
      ValueError: Mismatched shapes, an empty or channels-first ``x``, a bad ``baseline``.

    References:
      Sundararajan, Taly, Yan, "Axiomatic attribution for deep networks", ICML 2017.
    """
    x = checks.array(x, "x", image=True)
    a = checks.like(attribution, x, "attribution")
    base = checks.baseline(baseline, x)
    gap = checked_score(score_fn, x) - checked_score(score_fn, base)
    return nan_where_invalid(a, (row_sum(a) - gap).astype(jnp.float32))
