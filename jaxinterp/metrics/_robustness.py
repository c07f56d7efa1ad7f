"""Robustness of explanations to random input noise: max-sensitivity and RPS.

Both take ``explain_fn(x [B, ...]) -> [B, ...]``, an attribution shaped like ``x`` that
closes over the model and the explained class, for example
``lambda z: attribution.gradient(attribution.class_score(apply_fn, params, y), z)``. The
noise draws are shared by the examples of a batch (common random numbers): an example's
value depends on ``key`` and the example only, not on ``B`` or its neighbours; fold a batch
index into ``key`` for independent draws across batches. The noisy copies are evaluated in
one ``vmap`` (``chunk_size=None``; on CPU :func:`~jaxinterp.core.ops.auto_chunk_size`
bounds a pass) or by ``lax.map`` with ``batch_size=chunk_size``. Inputs
are floats (images channels last); an example whose explanation (clean or noisy) holds a
NaN or an infinity gets NaN.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from jaxinterp.core import checks
from jaxinterp.core.ops import chunked_map, max_normalized_map, row_sum, safe_div

from ._common import nan_where_invalid
from ._similarity import SIMILARITIES

__all__ = ["heatmap", "max_sensitivity", "random_perturbation_similarity"]

ExplainFn = Callable[[jax.Array], jax.Array]
"""``explain_fn(x [B, ...]) -> [B, ...]``, shaped like ``x``."""


def heatmap(attribution: jax.typing.ArrayLike) -> jax.Array:
    """The RPS heatmap ``h = Σ_c |a| / max Σ_c |a|`` per example, in ``[0, 1]``.

    ``[B, H, W, C] -> [B, H, W]`` (channels last; any ``[B, ..., C]`` with ``ndim >= 3``
    loses its last axis), ``[B, D] -> [B, D]`` without a channel sum; an all-zero map stays 0,
    one holding a NaN or an infinity becomes all NaN.

    References:
      Joo, Jeong, Heo, Weller, Moon, "Towards more robust interpretation via local gradient
      alignment", AAAI 2023.
    """
    a = checks.array(attribution, "attribution", cast=True)
    return nan_where_invalid(a, max_normalized_map(a))


def _check_explanation(explain_fn: Any, x: jax.Array) -> jax.Array:
    phi = checks.array(checks.function("explain_fn", explain_fn)(x), "explain_fn(x)", cast=True)
    if phi.shape != x.shape:
        raise ValueError(
            f"explain_fn must return an attribution shaped like x {x.shape}, got shape {phi.shape}"
        )
    return phi


def max_sensitivity(
    explain_fn: ExplainFn,
    x: jax.Array,
    *,
    key: jax.Array,
    radius: float = 0.02,
    num_samples: int = 8,
    chunk_size: int | None = None,
) -> jax.Array:
    """Max-sensitivity of an explanation, relative to its norm, ``[B]``.

    ``SENS_max(φ, x) = max_j ‖φ(x + δ_j) − φ(x)‖₂ / ‖φ(x)‖₂`` with ``δ_j ~ U[−r, r]^d``,
    ``j = 1..num_samples`` (a Monte Carlo estimate of the max over the L∞ ball of radius
    ``r``); 0 where ``φ(x) = 0``, NaN where an explanation holds a NaN or an infinity. The
    input is not clipped to a valid range.

    Args:
      explain_fn: ``explain_fn(x [B, ...]) -> [B, ...]``.
      x: Float inputs ``[B, ...]`` (images channels last).
      key: PRNG key.
      radius: ``r > 0``, in input units.
      num_samples: Number of draws ``>= 1``, a Python int.
      chunk_size: ``None`` (one ``vmap``; on CPU :func:`~jaxinterp.core.ops.auto_chunk_size`) or the
        ``lax.map`` batch size over draws.

    Raises:
      ArgumentTypeError: A non-float ``x`` (raw ``uint8`` images: ``x.astype(jnp.float32) /
        255``), a non-callable ``explain_fn`` or a bad ``key``.
      ValueError: An empty or channels-first ``x``, an explanation not shaped like ``x``, bad
        hyperparameters.

    References:
      Yeh, Hsieh, Suggala, Inouye, Ravikumar, "On the (in)fidelity and sensitivity of
      explanations", NeurIPS 2019.
    """
    radius = checks.positive("radius", radius)
    num_samples = checks.integer("num_samples", num_samples)
    chunk_size = checks.chunk_size(chunk_size)
    key = checks.key(key)
    x = checks.array(x, "x", image=True)
    phi = _check_explanation(explain_fn, x)
    norm = jnp.sqrt(row_sum(jnp.square(phi)))
    deltas = jax.random.uniform(key, (num_samples, 1, *x.shape[1:]), x.dtype, -radius, radius)

    def one(delta: jax.Array) -> jax.Array:
        noisy = explain_fn(x + delta)
        return nan_where_invalid(noisy, jnp.sqrt(row_sum(jnp.square(noisy - phi))))

    dist = jnp.max(
        chunked_map(one, deltas, chunk_size, examples_per_point=x.shape[0]), axis=0
    )  # NaN propagates.
    return nan_where_invalid(phi, safe_div(dist, norm).astype(jnp.float32))


def random_perturbation_similarity(
    explain_fn: ExplainFn,
    x: jax.Array,
    *,
    key: jax.Array,
    epsilon: float | jax.Array = 4 / 255,
    num_draws: int = 10,
    similarity: str | Sequence[str] | Callable[[jax.Array, jax.Array], jax.Array] = "pearson",
    bounds: tuple[float, float] | None = (0.0, 1.0),
    chunk_size: int | None = None,
) -> jax.Array | dict[str, jax.Array]:
    """Random perturbation similarity (RPS) of heatmaps, ``[B]``.

    ``RPS(x) = (1/N) Σ_n sim(h(x), h(clip(x + δ_n)))``, ``δ_n ~ U[−ε, ε]^d``, ``h`` the
    :func:`heatmap` of ``explain_fn``, the clip to ``bounds`` if given. Higher is more
    robust for ``pearson``, ``ssim`` and ``cosine``; lower for ``mse`` (a distance). NaN
    where an explanation (clean or noisy) holds a NaN or an infinity.

    Args:
      explain_fn: ``explain_fn(x [B, ...]) -> [B, ...]``.
      x: Float inputs ``[B, H, W, C]`` (channels last; ``[B, D]`` for the similarities other
        than SSIM).
      key: PRNG key.
      epsilon: ``ε > 0`` (Joo et al.: 4/255 for images in ``[0, 1]``); a traced scalar is
        taken as given (unchecked), so one compiled program can serve several radii.
      num_draws: ``N >= 1``, a Python int (Joo et al.: 10).
      similarity: A name in :data:`SIMILARITIES` (``"pearson"``, ``"ssim"``, ``"cosine"``,
        ``"mse"``) or ``sim(maps_a, maps_b) -> [B]``; or a sequence of names, which returns
        ``{name: [B]}`` with every similarity computed on the same noisy explanations (one
        pass of ``explain_fn`` per draw, whatever the number of similarities).
      bounds: ``(lo, hi)`` to clip the noisy inputs to, or ``None``.
      chunk_size: ``None`` (one ``vmap``; on CPU :func:`~jaxinterp.core.ops.auto_chunk_size`) or the
        ``lax.map`` batch size over draws.

    Raises:
      ArgumentTypeError: A non-float ``x`` (raw ``uint8`` images: ``x.astype(jnp.float32) /
        255``), a non-callable ``explain_fn`` or ``similarity``, or a bad ``key``.
      ValueError: An empty or channels-first ``x``, an explanation not shaped like ``x``, an
        unknown similarity, bad hyperparameters.

    References:
      Joo, Jeong, Heo, Weller, Moon, "Towards more robust interpretation via local gradient
      alignment", AAAI 2023.
    """
    if checks.is_concrete(epsilon):
        epsilon = checks.positive("epsilon", epsilon)
    num_draws = checks.integer("num_draws", num_draws)
    chunk_size = checks.chunk_size(chunk_size)
    key = checks.key(key)
    bounds = checks.bounds(bounds)
    names = None
    if isinstance(similarity, Sequence) and not isinstance(similarity, str):
        names = checks.sequence("similarity", similarity, str)
    sims = tuple(_resolve_similarity(one) for one in (names or (similarity,)))
    x = checks.array(x, "x", image=True)
    phi = _check_explanation(explain_fn, x)
    h0 = heatmap(phi)
    deltas = jax.random.uniform(key, (num_draws, 1, *x.shape[1:]), x.dtype, -epsilon, epsilon)

    def one(delta: jax.Array) -> tuple[jax.Array, ...]:
        z = x + delta
        z = z if bounds is None else jnp.clip(z, bounds[0], bounds[1])
        h = heatmap(explain_fn(z))
        return tuple(nan_where_invalid(h, sim(h0, h)) for sim in sims)

    per_draw = chunked_map(one, deltas, chunk_size, examples_per_point=x.shape[0])
    values = [jnp.mean(v, axis=0).astype(jnp.float32) for v in per_draw]
    values = nan_where_invalid(phi, values)
    return dict(zip(names, values, strict=True)) if names else values[0]


def _resolve_similarity(similarity: Any) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """A name in :data:`SIMILARITIES` or a function, as a function."""
    if isinstance(similarity, str):
        return SIMILARITIES[checks.one_of("similarity", similarity, tuple(SIMILARITIES))]
    return checks.function("similarity", similarity)
