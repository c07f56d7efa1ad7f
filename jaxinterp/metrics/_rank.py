"""Rank agreement of two maps per example: Spearman's ρ, Kendall's τ_b, top-k intersection.

The correlations compare example ``b`` of ``a [B, ...]`` with example ``b`` of ``b [B, ...]``
over all non-batch entries, handle ties like ``scipy.stats.spearmanr`` / ``kendalltau``
(average ranks; τ_b), and give 0 where a map is constant. Every value is NaN for an
example where a map holds a NaN or an infinity (such a map has no ranking).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.scipy.stats import rankdata

from jaxinterp.core import checks, ops
from jaxinterp.core.ops import flat

from ._common import nan_where_invalid
from ._similarity import checked_pair, cosine_rows

__all__ = ["average_ranks", "kendall_tau", "spearman", "topk_intersection"]

_CHUNK_ELEMENTS = 2**16  # Pairs per example compared at once by kendall_tau.


def average_ranks(v: jax.Array) -> jax.Array:
    """1-based ranks of each row of ``v [B, D]``, ties sharing their average rank, ``[B, D]``.

    An entry with ``l`` entries below it and ``e`` equal to it (itself included) gets rank
    ``l + (e + 1)/2`` (``−0.0`` and ``0.0`` tie): ``jax.scipy.stats.rankdata(method=
    "average")`` along each row (one sort, ``O(D log D)``), as float32. A row holding a NaN or
    an infinity gets NaN ranks.
    """
    v = checks.array(v, "v", ndims=(2,), cast=True)
    return nan_where_invalid(v, _average_ranks(v))


@jax.jit
def _average_ranks(v: jax.Array) -> jax.Array:
    return rankdata(v, "average", axis=1).astype(jnp.float32)


def spearman(a: jax.Array, b: jax.Array) -> jax.Array:
    """Spearman rank correlation per example, ``[B, ...] × [B, ...] -> [B]``.

    The Pearson correlation of the average ranks (:func:`average_ranks`) of the flattened
    maps, equal to ``scipy.stats.spearmanr`` including ties; 0 where a map is constant.

    References:
      Spearman, "The proof and measurement of association between two things", American
      Journal of Psychology 1904.
    """
    a, b = checked_pair(a, b)
    return nan_where_invalid((a, b), _spearman(a, b))


@jax.jit
def _spearman(a: jax.Array, b: jax.Array) -> jax.Array:
    ra, rb = _average_ranks(flat(a)), _average_ranks(flat(b))
    ra = ra - jnp.mean(ra, axis=1, keepdims=True)
    rb = rb - jnp.mean(rb, axis=1, keepdims=True)
    return cosine_rows(ra, rb)


def kendall_tau(a: jax.Array, b: jax.Array) -> jax.Array:
    """Kendall's τ_b per example, ``[B, ...] × [B, ...] -> [B]``.

    Over all pairs ``i < j`` of the ``D`` flattened entries, with ``s^a_ij = sign(a_i − a_j)``
    (likewise ``s^b``)::

        τ_b = Σ s^a s^b / sqrt(Σ (s^a)² · Σ (s^b)²) = (n_c − n_d) / sqrt((n_0 − n_1)(n_0 − n_2))

    (``n_c``/``n_d`` concordant/discordant pairs, ``n_0 = D(D−1)/2``, ``n_1``/``n_2`` pairs
    tied in ``a``/``b``): ``scipy.stats.kendalltau``'s default statistic. Signs come from
    comparisons (exact) and are summed as integers. Cost ``O(D²)`` per example; rows are
    compared in chunks of about ``2^16 / D``, so memory is ``O(B · 2^16)`` whatever ``D``
    (and the chunking does not depend on ``B``). 0 where a map is constant.

    References:
      Kendall, "The treatment of ties in ranking problems", Biometrika 1945.
    """
    a, b = checked_pair(a, b)
    return nan_where_invalid((a, b), _kendall_tau(a, b))


@jax.jit
def _kendall_tau(a: jax.Array, b: jax.Array) -> jax.Array:
    a, b = flat(a) + 0.0, flat(b) + 0.0
    d = a.shape[1]
    rows = max(1, min(d, _CHUNK_ELEMENTS // max(d, 1)))
    chunks = -(-d // rows)
    index = jnp.arange(chunks * rows).reshape(chunks, rows)
    valid = index < d
    index = jnp.minimum(index, d - 1)

    def signs(v: jax.Array, idx: jax.Array, ok: jax.Array) -> jax.Array:
        vi, vj = v[:, idx][:, :, None], v[:, None, :]  # [B, rows, 1], [B, 1, D]
        s = (vi > vj).astype(jnp.int32) - (vi < vj).astype(jnp.int32)
        return s * ok[None, :, None].astype(jnp.int32)

    def body(
        carry: tuple[jax.Array, ...], chunk: tuple[jax.Array, jax.Array]
    ) -> tuple[tuple[jax.Array, ...], None]:
        sa, sb = signs(a, *chunk), signs(b, *chunk)
        sums = (
            jnp.sum(sa * sb, axis=(1, 2)),
            jnp.sum(sa * sa, axis=(1, 2)),
            jnp.sum(sb * sb, axis=(1, 2)),
        )
        return tuple(c + s.astype(jnp.float32) for c, s in zip(carry, sums, strict=True)), None

    zero = jnp.zeros(a.shape[:1], jnp.float32)
    init: tuple[jax.Array, ...] = (zero, zero, zero)
    (both, tied_a, tied_b), _ = jax.lax.scan(body, init, (index, valid))
    den = jnp.sqrt(tied_a) * jnp.sqrt(tied_b)  # Each pair is counted twice: (i, j), (j, i).
    ok = den > 0
    return jnp.where(ok, jnp.clip(both / jnp.where(ok, den, 1.0), -1.0, 1.0), 0.0)


def topk_intersection(
    map_a: jax.Array, map_b: jax.Array, k: int, *, key: jax.Array | None = None
) -> jax.Array:
    """``|top_k(a) ∩ top_k(b)| / k`` per example, in ``[0, 1]``; maps ``[B, ...]`` -> ``[B]``.

    :func:`jaxinterp.core.ops.topk_intersection` with its arguments checked: ties at each
    map's cut are broken at random (the two maps get independent tie orders drawn from
    ``key``); NaN where a map holds a NaN or an infinity.

    Args:
      map_a, map_b: Maps ``[B, ...]`` of one shape (``D`` entries per example).
      k: The top-set size, a Python int ``1 <= k <= D``.
      key: PRNG key of the tie orders (``None``: a fixed one).

    Raises:
      ArgumentTypeError: A map that is not a real array, or ``k`` not an integer.
      ValueError: Maps of different shapes, an empty batch, or ``k`` outside ``[1, D]``.

    References:
      Ghorbani, Abid, Zou, "Interpretation of Neural Networks Is Fragile", AAAI 2019.
    """
    a = checks.array(map_a, "map_a", min_ndim=2, cast=True)
    b = checks.like(map_b, a, "map_b", like="map_a")
    k = checks.integer("k", k, maximum=math.prod(a.shape[1:]))
    return nan_where_invalid((a, b), ops.topk_intersection(a, b, k, key=key))
