"""Array operations shared by every subpackage: per-example reductions, unit vectors,
attribution maps, a Gaussian blur, and evaluating many points a chunk at a time.

Batched arrays are ``[B, ...]``; "per example" reduces every axis but the first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import jax
import jax.numpy as jnp
import numpy as np

from jaxinterp.core import checks

__all__ = [
    "AUTO_CHUNK_EXAMPLES",
    "TIE_KEY",
    "auto_chunk_size",
    "chunked_apply",
    "chunked_map",
    "chunked_reduce",
    "flat",
    "gaussian_smoothing",
    "descending_ranks",
    "l2_norm",
    "max_normalized_map",
    "normalized_map",
    "per_example",
    "project_ball",
    "row_sum",
    "safe_div",
    "sq_l2",
    "topk_intersection",
    "tie_order",
    "topk_mask",
    "unit_l2",
]

T = TypeVar("T")

TIE_KEY = 0
"""Seed of the tie order used when a ranking function is given no ``key``."""


def per_example(v: jax.Array, ndim: int) -> jax.Array:
    """``[B]`` -> ``[B, 1, ..., 1]`` with ``ndim`` axes (explicit broadcasting)."""
    return v.reshape(v.shape + (1,) * (ndim - v.ndim))


def flat(v: jax.Array) -> jax.Array:
    """``[B, ...] -> [B, D]``."""
    return v.reshape(v.shape[0], -1)


def row_sum(v: jax.Array) -> jax.Array:
    """Sum over every axis but the first: ``[B, ...] -> [B]``."""
    return jnp.sum(v, axis=tuple(range(1, v.ndim)))


def sq_l2(v: jax.Array) -> jax.Array:
    """Per-example squared L2 norm ``Σ_i v_i²``, ``[B, ...] -> [B]``."""
    return row_sum(jnp.square(v))


def l2_norm(v: jax.Array) -> jax.Array:
    """Per-example L2 norm, ``[B, ...] -> [B, 1, ..., 1]`` (kept broadcastable to ``v``)."""
    return jnp.sqrt(jnp.sum(jnp.square(v), axis=tuple(range(1, v.ndim)), keepdims=True))


def unit_l2(v: jax.Array) -> jax.Array:
    """``v / ‖v‖₂`` per example; zero where ``v`` is zero.

    Rescales by ``max |v|`` first, so tiny vectors do not underflow when squared.
    """
    peak = jnp.max(jnp.abs(v), axis=tuple(range(1, v.ndim)), keepdims=True)
    v = v / jnp.where(peak > 0, peak, 1.0)
    norm = l2_norm(v)
    return v / jnp.where(norm > 0, norm, 1.0)


_TINY = 1e-30  # Below any float32 norm worth dividing by; guards divisions by zero.


def project_ball(
    v: jax.Array,
    center: jax.Array,
    epsilon: float | jax.Array,
    norm: str = "linf",
    bounds: tuple[float, float] | None = None,
) -> jax.Array:
    """``v`` projected per example onto the ``ε``-ball around ``center``, then clipped to
    ``bounds``: ``clip(v, c − ε, c + ε)`` (``"linf"``) or ``c + δ · min(1, ε / ‖δ‖₂)`` with
    ``δ = v − c`` (``"l2"``)."""
    if norm == "linf":
        v = jnp.clip(v, center - epsilon, center + epsilon)
    else:
        delta = v - center
        v = center + delta * jnp.minimum(1.0, epsilon / (l2_norm(delta) + _TINY))
    return v if bounds is None else jnp.clip(v, bounds[0], bounds[1])


def safe_div(num: jax.Array, den: jax.Array) -> jax.Array:
    """``num / den`` where ``den != 0``, else ``0`` (no NaN in values or gradients)."""
    ok = den != 0
    return jnp.where(ok, num / jnp.where(ok, den, 1), 0)


def normalized_map(attribution: jax.Array) -> jax.Array:
    """``h = Σ_c |a_c| / Σ |a|`` per example: ``[B, H, W, C] -> [B, H, W]``.

    Channels last; ``[B, F]`` is not channel-summed; an all-zero map stays zero.
    """
    h = jnp.abs(attribution)
    h = jnp.sum(h, axis=-1) if h.ndim > 2 else h
    total = jnp.sum(h, axis=tuple(range(1, h.ndim)), keepdims=True)
    return h / jnp.where(total > 0, total, 1.0)


def max_normalized_map(attribution: jax.Array) -> jax.Array:
    """``h = Σ_c |a_c| / max Σ_c |a_c|`` per example: ``[B, H, W, C] -> [B, H, W]``, its
    largest value 1 (channels as :func:`normalized_map`; an all-zero map stays zero)."""
    h = jnp.abs(attribution)
    h = jnp.sum(h, axis=-1) if h.ndim > 2 else h
    top = jnp.max(h, axis=tuple(range(1, h.ndim)), keepdims=True)
    return h / jnp.where(top > 0, top, 1.0)


def tie_order(key: jax.Array | None, shape: tuple[int, ...]) -> jax.Array:
    """``[B, D]`` int32: a uniformly random permutation of ``0..D−1``, the same for each row.

    The order in which ranking functions break ties: drawn from ``key``, or from
    ``PRNGKey(TIE_KEY)`` when ``key`` is ``None`` (reproducible, and still not the index).
    One permutation for every row keeps an example's ranking independent of the batch it
    is in.
    """
    key = jax.random.PRNGKey(TIE_KEY) if key is None else key
    b, d = shape
    perm = jax.random.permutation(key, d).astype(jnp.int32)
    return jnp.broadcast_to(perm, (b, d))


def descending_ranks(r: jax.Array, *, key: jax.Array | None = None) -> jax.Array:
    """Rank of each entry of each row of ``r [B, D]``, highest first (0 = the highest), int32.

    Tied entries are ordered by :func:`tie_order` (random, from ``key``), never by their
    index: a constant row gets a uniformly random ranking, so a "top" set cut out of ties is
    a random subset of them, not the first rows of an image. ``−0.0`` and ``0.0`` tie.
    """
    perm = tie_order(key, r.shape)
    shuffled = jnp.take_along_axis(r + 0.0, perm, axis=1)
    order = jnp.take_along_axis(perm, jnp.argsort(-shuffled, axis=1, stable=True), axis=1)
    rows = jnp.arange(r.shape[0])[:, None]
    positions = jnp.broadcast_to(jnp.arange(r.shape[1], dtype=jnp.int32), r.shape)
    return jnp.zeros(r.shape, jnp.int32).at[rows, order].set(positions)


def topk_mask(h: jax.Array, k: int, *, key: jax.Array | None = None) -> jax.Array:
    """``[B, D]`` 0/1 indicator of each row's ``k`` largest entries of the flattened ``h``.

    Ties at the cut are broken by :func:`tie_order` (random, from ``key``), not by index.
    """
    f = flat(h)
    perm = tie_order(key, f.shape)
    _, idx = jax.lax.top_k(jnp.take_along_axis(f, perm, axis=1), k)
    idx = jnp.take_along_axis(perm, idx, axis=1)
    rows = jnp.arange(f.shape[0])[:, None]
    return jnp.zeros_like(f).at[rows, idx].set(1.0)


def topk_intersection(
    map_a: jax.Array, map_b: jax.Array, k: int, *, key: jax.Array | None = None
) -> jax.Array:
    """``|top_k(a) ∩ top_k(b)| / k`` per example, in ``[0, 1]``; maps ``[B, ...]`` -> ``[B]``.

    Ties at each map's cut are broken at random (:func:`topk_mask`; the two maps get
    independent tie orders drawn from ``key``).

    References:
      Ghorbani, Abid, Zou, "Interpretation of Neural Networks Is Fragile", AAAI 2019.
    """
    key_a, key_b = jax.random.split(jax.random.PRNGKey(TIE_KEY) if key is None else key)
    return jnp.sum(topk_mask(map_a, k, key=key_a) * topk_mask(map_b, k, key=key_b), axis=1) / k


def _gaussian_matrix(n: int, sigma: float) -> np.ndarray:
    """``[n, n]`` row-normalised Gaussian weights ``exp(−(i − j)² / 2σ²)``."""
    i = np.arange(n, dtype=np.float64)
    w = np.exp(-np.square(i[:, None] - i[None, :]) / (2.0 * sigma**2))
    return w / w.sum(axis=1, keepdims=True)


def gaussian_smoothing(sigma: float) -> Callable[[jax.Array], jax.Array]:
    """Separable spatial Gaussian blur of ``[B, H, W, C]`` arrays, each channel on its own.

    ``s(g)_{h,w} = Σ_{h',w'} K_H[h, h'] K_W[w, w'] g_{h',w'}`` with
    ``K[i, j] ∝ exp(−(i − j)² / 2σ²)`` normalised per row: a weighted average over the pixels
    inside the image (no padding; constants are preserved, also at the border).

    Not ``dm_pix.gaussian_blur``, on purpose: that one truncates the kernel to
    ``kernel_size`` taps and zero-pads (``"SAME"``), so its weights near the border sum to
    less than 1 and a constant image darkens there (a constant 1 becomes 0.49 in the corner
    at σ = 1). This blur is the deletion/insertion substrate (METHODS §4), where a dark frame
    would put information into the "uninformative" image, and the gradient smoothing of the
    regularized adversarial explanation (METHODS §3), where it would shrink the steps at the
    border. Farther than about 6σ from the border, with ``kernel_size >= 2⌈6σ⌉ + 1``, the two
    agree to float32 round-off (``tests/test_maintained_libraries.py``).

    Args:
      sigma: Standard deviation ``σ > 0`` in pixels.

    Returns:
      ``smooth(g [B, H, W, C]) -> [B, H, W, C]``, linear and jittable.

    Raises:
      ValueError: If ``sigma`` is not a finite number > 0.
    """
    sigma = checks.positive("smoothing_sigma", sigma)

    def smooth(g: jax.Array) -> jax.Array:
        if g.ndim != 4:
            raise ValueError(f"gaussian smoothing expects [B, H, W, C], got shape {g.shape}")
        k_h = jnp.asarray(_gaussian_matrix(g.shape[1], sigma), g.dtype)
        k_w = jnp.asarray(_gaussian_matrix(g.shape[2], sigma), g.dtype)
        return jnp.einsum("ih,jw,bhwc->bijc", k_h, k_w, g)

    return smooth


AUTO_CHUNK_EXAMPLES = 512
"""On CPU, ``chunk_size=None`` evaluates at most this many examples in one pass.

XLA:CPU's throughput falls once a pass holds more examples: on a 2-core Zen 4 the bundled
CNN's input gradient cost 0.82-0.85 ms per example at 64 to 512 examples a pass, 1.16 ms at
1,024, 1.22 ms at 2,048 and 1.42 ms at 4,096 (medians after 4 warm-up calls), and 32-point
integrated gradients on 128 examples took 7.6 s all at once against 3.7 s four points at a
time. On GPU and TPU one large pass is the fast one, and ``None`` keeps it there.
"""


def auto_chunk_size(n: int, examples_per_point: int, backend: str | None = None) -> int | None:
    """The chunk that ``chunk_size=None`` stands for: ``n`` points of ``e`` examples each.

    ``None`` (all ``n`` points in one pass) off CPU or when ``n·e <= AUTO_CHUNK_EXAMPLES``;
    otherwise, with ``p = max(1, AUTO_CHUNK_EXAMPLES // e)`` points allowed in a pass, the
    balanced chunk ``ceil(n / ceil(n / p))``: as few passes as the bound allows, of nearly
    equal size, none above :data:`AUTO_CHUNK_EXAMPLES` examples unless a single point
    already is. Chunking changes only the summation order of the results.

    Args:
      n: Points (path nodes, noisy copies, masks) to evaluate.
      examples_per_point: Examples one point evaluates (the batch size ``B``).
      backend: The backend deciding it (default ``jax.default_backend()``).

    Returns:
      ``None`` or a chunk size ``1 <= c < n``.
    """
    backend = jax.default_backend() if backend is None else backend
    e = max(int(examples_per_point), 1)
    if backend != "cpu" or n * e <= AUTO_CHUNK_EXAMPLES:
        return None
    per_pass = max(1, AUTO_CHUNK_EXAMPLES // e)
    passes = -(-n // per_pass)
    return -(-n // passes)


def _split_chunks(
    xs: Any, chunk_size: int | None, examples_per_point: int | None
) -> tuple[Any, Any]:
    """``(full, rest)``: with ``c`` the chunk size (``None`` resolved by
    :func:`auto_chunk_size` when ``examples_per_point`` is given) and ``n = q·c + r``, the
    ``q`` full chunks stacked ``[q, c, ...]`` and the ``r`` leftover points (``None`` when
    ``r = 0``); ``(None, xs)`` when there is one pass (``c`` is ``None`` or ``>= n``)."""
    n = jax.tree.leaves(xs)[0].shape[0]
    if chunk_size is None and examples_per_point is not None:
        chunk_size = auto_chunk_size(n, examples_per_point)
    if chunk_size is None or chunk_size >= n:
        return None, xs
    q, r = divmod(n, chunk_size)
    full = jax.tree.map(lambda a: a[: q * chunk_size].reshape(q, chunk_size, *a.shape[1:]), xs)
    rest = jax.tree.map(lambda a: a[q * chunk_size :], xs) if r else None
    return full, rest


def chunked_map(
    fn: Callable[[Any], Any],
    xs: Any,
    chunk_size: int | None,
    *,
    examples_per_point: int | None = None,
) -> Any:
    """``fn`` over the leading axis of ``xs``, results stacked: one ``vmap``
    (``chunk_size=None``) or ``chunk_size`` points a pass (:func:`chunked_apply` of the
    vmapped ``fn``).

    With ``examples_per_point`` given, ``chunk_size=None`` means :func:`auto_chunk_size`
    (on CPU, at most :data:`AUTO_CHUNK_EXAMPLES` examples per pass).
    """
    return chunked_apply(jax.vmap(fn), xs, chunk_size, examples_per_point=examples_per_point)


def chunked_apply(
    fn: Callable[[Any], Any],
    xs: Any,
    chunk_size: int | None,
    *,
    examples_per_point: int | None = None,
) -> Any:
    """``fn`` of a stack of ``n`` points, ``chunk_size`` points a pass, results concatenated.

    ``fn`` maps a chunk (``xs`` with leading axis ``m``) to outputs with leading axis ``m``,
    each row from its point alone. With ``c = chunk_size`` and ``n = q·c + r``: a
    ``lax.map`` over the ``q`` full chunks, then the ``r`` leftover points as one smaller
    chunk. ``None`` (resolved as in :func:`chunked_map`) or ``c >= n``: ``fn(xs)``.
    """
    full, rest = _split_chunks(xs, chunk_size, examples_per_point)
    if full is None:
        return fn(rest)
    out = jax.tree.map(lambda a: a.reshape(-1, *a.shape[2:]), jax.lax.map(fn, full))
    if rest is None:
        return out
    return jax.tree.map(lambda a, b: jnp.concatenate([a, b]), out, fn(rest))


def chunked_reduce(
    fn: Callable[[Any], T],
    xs: Any,
    chunk_size: int | None,
    combine: Callable[[T, T], T],
    init: T,
    *,
    examples_per_point: int | None = None,
) -> T:
    """``fn`` over a stack of ``n`` points, ``chunk_size`` points at a time, folded.

    With ``c = chunk_size`` and ``n = q·c + r``: a ``lax.scan`` over the ``q`` full chunks
    carries ``acc ← combine(acc, fn(chunk))`` from ``init``, then the ``r`` leftover points
    are one more (smaller) chunk, so every point is evaluated exactly once. The scan body is
    rematerialised (``jax.checkpoint``), so differentiating through it keeps only the
    chunk inputs, not every chunk's activations. ``None`` or ``c >= n`` returns ``fn(xs)``.
    Unlike :func:`chunked_map`, nothing of size ``n`` is ever stacked.

    Args:
      fn: Maps a chunk (``xs`` with leading axis ``m <= n``) to a summary (a pytree whose
        shapes do not depend on ``m``).
      xs: A pytree of arrays sharing the leading axis ``n`` (e.g. path nodes or keys).
      chunk_size: ``c >= 1``, or ``None`` for all points at once (with
        ``examples_per_point``: :func:`auto_chunk_size`, so on CPU at most
        :data:`AUTO_CHUNK_EXAMPLES` examples per pass).
      combine: Associative merge of two summaries.
      init: The identity of ``combine`` (shaped like a summary).
      examples_per_point: Examples one point evaluates (e.g. the batch size), or ``None``.

    Returns:
      The folded summary.
    """
    full, rest = _split_chunks(xs, chunk_size, examples_per_point)
    if full is None:
        return fn(rest)
    body_fn = jax.checkpoint(fn)

    def body(acc: T, chunk: Any) -> tuple[T, None]:
        return combine(acc, body_fn(chunk)), None

    acc, _ = jax.lax.scan(body, init, full)
    return acc if rest is None else combine(acc, fn(rest))
