"""Noisy-copy smoothing of any attribution: SmoothGrad, SmoothGrad², VarGrad."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxinterp.core import checks
from jaxinterp.core.ops import chunked_reduce, flat
from jaxinterp.core.protocols import AttributionFn, ScoreFn

from ._gradient import attributions_of_copies

__all__ = ["SMOOTHINGS", "smooth"]

SMOOTHINGS: tuple[str, ...] = ("smoothgrad", "smoothgrad_sq", "vargrad")
"""Statistics of the noisy attributions that :func:`smooth` can return."""

Moments = tuple[jax.Array, jax.Array, jax.Array]  # (count [], mean [B, ...], M2 [B, ...])


def _merge(a: Moments, b: Moments) -> Moments:
    """Chan et al.'s pairwise merge of (count, mean, sum of squared deviations)."""
    na, ma, m2a = a
    nb, mb, m2b = b
    n = na + nb
    d = mb - ma
    return n, ma + d * (nb / n), m2a + m2b + d * d * (na * nb / n)


def smooth(
    attribution_fn: AttributionFn,
    *,
    num_samples: int = 25,
    noise_level: float = 0.15,
    kind: str = "smoothgrad",
    chunk_size: int | None = None,
) -> Callable[..., jax.Array]:
    """Averages an attribution over noisy copies of the input.

    With ``a_s = A(x + σ ε_s)``, ``ε_s ~ N(0, I)``, ``s = 1..S`` and, per example,
    ``σ_b = noise_level · (max(x_b) − min(x_b))`` (a fraction of the input's range, as in
    PAIR saliency): ``smoothgrad`` ``(1/S) Σ_s a_s``; ``smoothgrad_sq`` ``(1/S) Σ_s a_s²``;
    ``vargrad`` ``(1/S) Σ_s (a_s − ā)²`` (population variance, ``>= 0``). The moments are
    merged chunk by chunk with Chan et al.'s pairwise update, so chunking changes neither
    the noise nor, beyond rounding, the result, and the variance is never negative. The noise
    is ``ε_s = jax.random.normal(jax.random.split(key, S)[s], x.shape, x.dtype)`` for any
    PRNG implementation; ``σ`` depends on ``x`` (it is differentiated through, like the
    rest).

    Args:
        attribution_fn: ``A(score_fn, x [B, ...]) -> [B, ...]``, e.g. :func:`gradient` or
            ``functools.partial(integrated_gradients, num_steps=8)``.
        num_samples: ``S >= 1`` noisy copies (PAIR's default 25), a Python int.
        noise_level: ``σ`` as a fraction of each example's value range (PAIR default 0.15);
            ``0`` gives ``A(x)`` itself (and zero VarGrad).
        kind: One of :data:`SMOOTHINGS`.
        chunk_size: ``None``: all ``S`` copies at once (``vmap``; on CPU
            :func:`~jaxinterp.core.ops.auto_chunk_size`); ``c``: ``c`` copies at a
            time in a ``lax.scan`` (the remainder is one last chunk), bounding memory.

    Returns:
        ``smoothed(score_fn, x [B, ...], *, key) -> [B, ...]``, pure and jittable.

    Raises:
        ValueError: Unknown ``kind``, ``num_samples`` or ``chunk_size`` below 1, negative or
            non-finite ``noise_level``; when called, an attribution not shaped like ``x``.

    References:
        Smilkov, Thorat, Kim, Viégas, Wattenberg, "SmoothGrad: removing noise by adding
        noise", arXiv:1706.03825, 2017; Adebayo, Gilmer, Goodfellow, Kim, "Local explanation
        methods for deep neural networks lack sensitivity to parameter values", ICLR Workshop
        2018 (VarGrad); Hooker, Erhan, Kindermans, Kim, "A benchmark for interpretability
        methods in deep neural networks", NeurIPS 2019 (SmoothGrad-Squared).
    """
    checks.one_of("kind", kind, SMOOTHINGS)
    num_samples = checks.integer("num_samples", num_samples)
    noise_level = checks.nonnegative("noise_level", noise_level)
    chunk_size = checks.chunk_size(chunk_size)

    def smoothed(score_fn: ScoreFn, x: jax.Array, *, key: jax.Array) -> jax.Array:
        x = checks.array(x, image=True)
        rows = flat(x)
        sigma = noise_level * (jnp.max(rows, axis=1) - jnp.min(rows, axis=1))
        sigma = sigma.reshape((-1,) + (1,) * (x.ndim - 1))  # [B, 1, ...]

        def moments(keys: jax.Array) -> Moments:
            # Drawn one key at a time (not vmapped): with the "rbg" PRNGs a vmapped draw
            # differs from the unbatched one, and the noise must not depend on chunk_size.
            noise = jax.lax.map(lambda k: jax.random.normal(k, x.shape, x.dtype), keys)

            attrs = attributions_of_copies(attribution_fn, score_fn, x[None] + sigma[None] * noise)
            mean = jnp.mean(attrs, axis=0)
            m2 = jnp.sum((attrs - mean[None]) ** 2, axis=0)
            return jnp.asarray(attrs.shape[0], x.dtype), mean, m2

        zeros = jnp.zeros_like(x)
        init = (jnp.zeros((), x.dtype), zeros, zeros)
        keys = jax.random.split(key, num_samples)
        _, mean, m2 = chunked_reduce(
            moments, keys, chunk_size, _merge, init, examples_per_point=x.shape[0]
        )
        if kind == "smoothgrad":
            return mean
        if kind == "vargrad":
            return m2 / num_samples
        return m2 / num_samples + mean * mean

    return smoothed
