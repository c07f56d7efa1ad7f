"""Integrated gradients: the path integral of the gradient from a baseline, by quadrature."""

from __future__ import annotations

from typing import Any, Literal, overload

import jax
import jax.numpy as jnp
import numpy as np

from jaxinterp.core import checks
from jaxinterp.core.ops import chunked_reduce, flat
from jaxinterp.core.protocols import ScoreFn
from jaxinterp.core.scores import checked_score

from ._gradient import gradients_of_copies

__all__ = ["METHODS", "expected_integrated_gradients", "integrated_gradients", "quadrature"]

METHODS: tuple[str, ...] = (
    "riemann_left",
    "riemann_right",
    "riemann_middle",
    "riemann_trapezoid",
    "trapezoid",
    "gauss_legendre",
)
"""Quadrature rules for the path integral (Captum's names; ``gausslegendre`` is an alias)."""


def quadrature(method: str, num_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes ``α_i ∈ [0, 1]`` and weights ``w_i`` with ``∫₀¹ g(α) dα ≈ Σ_i w_i g(α_i)``.

    With ``n = num_steps``: ``riemann_left`` ``α_i = i/n`` (``i = 0..n−1``), ``w_i = 1/n``;
    ``riemann_right`` ``α_i = i/n`` (``i = 1..n``), ``w_i = 1/n``; ``riemann_middle``
    ``α_i = (i + ½)/n``, ``w_i = 1/n``; ``riemann_trapezoid`` exactly as Captum defines it,
    ``α_i = i/(n−1)``, ``w_i = 1/n`` with both end weights halved, so the weights sum to
    ``(n − 1)/n`` (Captum's quirk, kept for parity: attributions then miss completeness by
    that factor); ``trapezoid`` the composite trapezoid rule on the same nodes,
    ``w_i = 1/(n−1)`` with halved ends (weights sum to 1); both need ``n >= 2``;
    ``gauss_legendre`` the Gauss–Legendre nodes ``t`` and weights ``v`` of
    ``numpy.polynomial.legendre.leggauss(n)`` mapped to ``[0, 1]``: ``α = (t + 1)/2``,
    ``w = v/2`` (exact for polynomials of degree ``2n − 1``).

    Args:
        method: One of :data:`METHODS`.
        num_steps: ``n >= 1`` (``>= 2`` for the trapezoid rules), a Python int.

    Returns:
        ``(alphas [n], weights [n])``, float64 numpy arrays, ``alphas`` ascending.

    References:
        Captum, ``captum/attr/_utils/approximation_methods.py``.
    """
    method = checks.one_of(
        "method", "gauss_legendre" if method == "gausslegendre" else method, METHODS
    )
    trapezoids = ("riemann_trapezoid", "trapezoid")
    n = checks.integer("num_steps", num_steps, 2 if method in trapezoids else 1)
    i = np.arange(n, dtype=np.float64)
    weights = np.full(n, 1.0 / n)
    if method == "riemann_left":
        alphas = i / n
    elif method == "riemann_right":
        alphas = (i + 1.0) / n
    elif method == "riemann_middle":
        alphas = (i + 0.5) / n
    elif method in trapezoids:
        alphas = i / (n - 1)
        if method == "trapezoid":
            weights = np.full(n, 1.0 / (n - 1))
        weights[[0, -1]] /= 2.0
    else:
        t, v = np.polynomial.legendre.leggauss(n)
        alphas, weights = (t + 1.0) / 2.0, v / 2.0
    return alphas, weights


def _baseline(baseline: Any, x: jax.Array) -> jax.Array:
    """:func:`~jaxinterp.core.checks.baseline`, pointing a stack of baselines elsewhere."""
    if baseline is not None and jnp.ndim(baseline) == x.ndim + 1:
        raise ValueError(
            f"baseline of shape {jnp.shape(baseline)} has one axis more than x {x.shape}; for "
            "several baselines [S, B, ...] use expected_integrated_gradients"
        )
    return checks.baseline(baseline, x)


@overload
def integrated_gradients(
    score_fn: ScoreFn,
    x: jax.Array,
    *,
    baseline: float | jax.Array | None = ...,
    num_steps: int = ...,
    method: str = ...,
    chunk_size: int | None = ...,
    return_delta: Literal[False] = ...,
) -> jax.Array: ...


@overload
def integrated_gradients(
    score_fn: ScoreFn,
    x: jax.Array,
    *,
    baseline: float | jax.Array | None = ...,
    num_steps: int = ...,
    method: str = ...,
    chunk_size: int | None = ...,
    return_delta: Literal[True],
) -> tuple[jax.Array, jax.Array]: ...


@overload
def integrated_gradients(
    score_fn: ScoreFn,
    x: jax.Array,
    *,
    baseline: float | jax.Array | None = ...,
    num_steps: int = ...,
    method: str = ...,
    chunk_size: int | None = ...,
    return_delta: bool,
) -> jax.Array | tuple[jax.Array, jax.Array]: ...


def integrated_gradients(
    score_fn: ScoreFn,
    x: jax.Array,
    *,
    baseline: float | jax.Array | None = None,
    num_steps: int = 50,
    method: str = "gauss_legendre",
    chunk_size: int | None = None,
    return_delta: bool = False,
) -> jax.Array | tuple[jax.Array, jax.Array]:
    """Integrated gradients of a per-example score, from a baseline ``x'`` to ``x``.

    ``φ_b = (x_b − x'_b) ⊙ Σ_i w_i ∇s_b(x'_b + α_i (x_b − x'_b))``, the quadrature
    (:func:`quadrature`) of ``(x − x') ⊙ ∫₀¹ ∇s(x' + α(x − x')) dα``. Completeness,
    ``Σφ_b = s_b(x_b) − s_b(x'_b)``, holds up to the quadrature error, reported as
    ``δ_b = Σφ_b − (s_b(x_b) − s_b(x'_b))``. The nodes are computed in numpy when called,
    so a jitted caller recompiles only if ``num_steps`` or ``method`` change. Differentiable
    in ``x``, ``baseline`` and anything ``score_fn`` closes over (e.g. params).

    Args:
        score_fn: ``score_fn(x [B, ...]) -> [B]``, e.g. :func:`class_score`; it always sees
            batches of ``B`` examples (the path points are vmapped, not concatenated).
        x: Inputs ``[B, ...]``, floating point.
        baseline: ``None`` (zeros), a Python number (constant), or an array broadcastable to
            ``[B, ...]`` or to one example ``x.shape[1:]``.
        num_steps: Number of path points ``n`` (Captum's default 50), a Python int.
        method: One of :data:`METHODS`; ``gauss_legendre`` (Captum's default) needs the
            fewest steps on smooth models.
        chunk_size: ``None``: all ``n`` points at once (one ``vmap``, activations of
            ``n·B`` examples alive), except on CPU, where passes of at most
            :data:`~jaxinterp.core.ops.AUTO_CHUNK_EXAMPLES` examples run faster and
            ``None`` means the balanced chunk of
            :func:`~jaxinterp.core.ops.auto_chunk_size`; ``c``: ``c`` points at a time in a
            ``lax.scan`` accumulator (like Captum's ``internal_batch_size``, in path points
            rather than examples); ``n`` need not be a multiple of ``c``, the remainder is
            one last chunk. ``c = n`` forces one pass on any backend.
        return_delta: Also return the completeness error ``δ [B]``.

    Returns:
        ``φ`` shaped like ``x``, or ``(φ, δ)`` if ``return_delta``.

    Raises:
        ValueError: Unknown ``method``, ``num_steps`` or ``chunk_size`` below 1 (2 for the
            trapezoid), or a baseline that does not broadcast to ``x``.

    References:
        Sundararajan, Taly, Yan, "Axiomatic attribution for deep networks", ICML 2017.
    """
    x = checks.array(x, image=True)
    alphas, weights = quadrature(method, num_steps)
    chunk_size = checks.chunk_size(chunk_size)
    base = _baseline(baseline, x)
    diff = x - base

    def path_sum(nodes: tuple[jax.Array, jax.Array]) -> jax.Array:
        a, w = nodes  # [m], [m]
        path = base[None] + a.reshape(-1, *(1,) * x.ndim) * diff[None]  # [m, B, ...]
        grads = gradients_of_copies(score_fn, path)
        return jnp.tensordot(w, grads, axes=1)

    nodes = (jnp.asarray(alphas, x.dtype), jnp.asarray(weights, x.dtype))
    phi = diff * chunked_reduce(
        path_sum, nodes, chunk_size, jnp.add, jnp.zeros_like(x), examples_per_point=x.shape[0]
    )
    if not return_delta:
        return phi
    gap = checked_score(score_fn, x) - checked_score(score_fn, base)
    return phi, jnp.sum(flat(phi), axis=1) - gap


def expected_integrated_gradients(
    score_fn: ScoreFn,
    x: jax.Array,
    baselines: jax.Array,
    **kwargs: Any,
) -> jax.Array | tuple[jax.Array, jax.Array]:
    """Integrated gradients averaged over ``S`` baselines (a sampled baseline distribution).

    ``φ_b = (1/S) Σ_s IG(x_b; x'_{s,b})``, and ``δ_b`` (with ``return_delta``) the mean of
    the per-baseline deltas, i.e. ``Σφ_b − (s_b(x_b) − (1/S) Σ_s s_b(x'_{s,b}))``. The
    baselines are vmapped when ``chunk_size`` is ``None`` and scanned one at a time
    otherwise (each then chunked along its path).

    Args:
        score_fn: ``score_fn(x [B, ...]) -> [B]``.
        x: Inputs ``[B, ...]``, floating point.
        baselines: ``[S, B, ...]`` (or ``[S, 1, ...]``, one per draw shared by the batch),
            e.g. other training images or noise.
        **kwargs: Keyword arguments of :func:`integrated_gradients` other than ``baseline``.

    Returns:
        ``φ`` shaped like ``x``, or ``(φ, δ [B])`` if ``return_delta``.

    References:
        Sturmfels, Lundberg, Lee, "Visualizing the impact of feature attribution baselines",
        Distill 2020; Erion et al., "Improving performance of deep learning models with
        axiomatic attribution priors and expected gradients", Nature Machine Intelligence 2021.
    """
    x = checks.array(x, image=True)
    if "baseline" in kwargs:
        raise TypeError("expected_integrated_gradients takes baselines [S, B, ...], not baseline")
    baselines = jnp.asarray(baselines, x.dtype)
    if baselines.ndim != x.ndim + 1 or baselines.shape[0] < 1:
        raise ValueError(
            f"baselines must be [S, B, ...] with x [B, ...] = {x.shape}, got {baselines.shape}"
        )
    _baseline(baselines[0], x)  # Validate the per-draw shape before tracing.

    def one(b: jax.Array) -> Any:
        return integrated_gradients(score_fn, x, baseline=b, **kwargs)

    if kwargs.get("chunk_size") is None:
        out = jax.vmap(one)(baselines)
    else:
        out = jax.lax.map(one, baselines)
    return jax.tree.map(lambda a: jnp.mean(a, axis=0), out)
