"""Boundary attributions: saliency, integrated gradients and SmoothGrad at the nearest boundary.

An attribution at ``x`` explains the score locally; a *boundary* attribution explains it from
the nearest point ``x'`` across the decision boundary, found by
:func:`jaxinterp.attacks._boundary.boundary_search`. Every function takes the true-class
score ``score_fn`` (``class_score(apply_fn, params, y, "logit")`` with ``y`` the labels of
``x``, *not* the class predicted at ``x'``) and the boundary points ``x' [B, ...]``.

Example::

    res = jax.jit(boundary_search(), static_argnums=0)(apply_fn, params, x, y, key=key)
    score_fn = class_score(apply_fn, params, y, "logit")
    phi = big(score_fn, x, res.point)  # check res.found: elsewhere res.point is x

References:
    Wang, Fredrikson & Datta, "Robust Models Are More Interpretable Because Attributions Look
    Normal", ICML 2022 (reference code github.com/zifanw/boundary).
"""

from __future__ import annotations

from typing import Any

import jax

from jaxinterp.core import checks
from jaxinterp.core.protocols import ScoreFn

from ._gradient import gradient
from ._integrated_gradients import integrated_gradients
from ._smooth import smooth

__all__ = ["big", "bsg", "bsm"]


def bsm(score_fn: ScoreFn, boundary_point: jax.Array) -> jax.Array:
    """Boundary-based saliency map (BSM): the score's gradient at the boundary point.

    ``BSM_b = ∇s_b(x'_b)`` with ``s_b = f_{y_b}`` the true-class logit and ``x'_b`` the
    nearest boundary point of ``x_b``. For a piecewise-linear ``f``, ``∇f_y(x') - ∇f_c(x')``
    (``c`` the class across the boundary) is normal to the boundary at ``x'``; BSM is its
    true-class half, i.e. :func:`gradient` evaluated at ``x'`` instead of ``x``.

    Args:
        score_fn: ``score_fn(x [B, ...]) -> [B]``, the true-class logit
            ``class_score(apply_fn, params, y, "logit")``.
        boundary_point: ``x' [B, ...]``, e.g. ``boundary_search(...)(...).point``, floating.

    Returns:
        ``[B, ...]``, shaped like ``boundary_point``.

    Raises:
        TypeError: ``boundary_point`` is not floating point.
        ValueError: ``score_fn`` does not return ``[B]``, an empty batch, or a channels-first
            ``boundary_point``.

    References:
        Wang, Fredrikson & Datta, "Robust Models Are More Interpretable Because Attributions
        Look Normal", ICML 2022 (boundary-based saliency map, BSM).
    """
    return gradient(score_fn, checks.array(boundary_point, "boundary_point", image=True))


def big(
    score_fn: ScoreFn,
    x: jax.Array,
    boundary_point: jax.Array,
    *,
    num_steps: int = 50,
    method: str = "trapezoid",
    **ig_kwargs: Any,
) -> jax.Array | tuple[jax.Array, jax.Array]:
    """Boundary-based integrated gradients (BIG): IG from the boundary point to the input.

    ``BIG_b = (x_b - x'_b) ⊙ ∫₀¹ ∇s_b(x'_b + α (x_b - x'_b)) dα``, i.e.
    :func:`integrated_gradients` with ``baseline = x'`` (the nearest boundary point) instead
    of a fixed reference such as black. By completeness ``Σ BIG_b ≈ f_y(x_b) - f_y(x'_b)``,
    which attributes the true-class logit's drop to the boundary. The default quadrature is
    the trapezoid rule over ``num_steps`` points; the reference code calls Captum's
    ``riemann_trapezoid``, whose weights sum to ``(n-1)/n``: ``method="riemann_trapezoid"``
    reproduces it, the default ``trapezoid`` keeps completeness (see :func:`quadrature`).

    Args:
        score_fn: ``score_fn(x [B, ...]) -> [B]``, the true-class logit.
        x: Inputs ``[B, ...]``, floating point.
        boundary_point: ``x'``, shaped like ``x``.
        num_steps: Quadrature points ``n`` (``>= 2`` for the trapezoid), a Python int.
        method: A rule of :data:`METHODS` (``riemann_trapezoid``: the reference's).
        **ig_kwargs: Further keywords of :func:`integrated_gradients` (``chunk_size``,
            ``return_delta``), not ``baseline``.

    Returns:
        ``φ`` shaped like ``x``, or ``(φ, δ [B])`` with ``return_delta=True``.

    Raises:
        ValueError: ``boundary_point`` not shaped like ``x``, or as
            :func:`integrated_gradients`.
        TypeError: ``baseline`` passed in ``ig_kwargs``.

    References:
        Wang, Fredrikson & Datta, "Robust Models Are More Interpretable Because Attributions
        Look Normal", ICML 2022 (boundary-based integrated gradient, BIG);
        Sundararajan, Taly & Yan, "Axiomatic Attribution for Deep Networks", ICML 2017.
    """
    if "baseline" in ig_kwargs:
        raise TypeError("big takes the baseline as boundary_point, not baseline=")
    x = checks.array(x, image=True)
    point = checks.array(boundary_point, "boundary_point", image=True)
    baseline = checks.like(point, x, "boundary_point").astype(x.dtype)
    return integrated_gradients(
        score_fn, x, baseline=baseline, num_steps=num_steps, method=method, **ig_kwargs
    )


def bsg(
    score_fn: ScoreFn,
    boundary_point: jax.Array,
    *,
    key: jax.Array,
    num_samples: int = 25,
    noise_level: float = 0.15,
    chunk_size: int | None = None,
) -> jax.Array:
    """Boundary-based SmoothGrad (BSG): SmoothGrad evaluated at the boundary point.

    ``BSG_b = (1/S) Σ_s ∇s_b(x'_b + σ_b ε_s)``, ``ε_s ~ N(0, I)``, with
    ``σ_b = noise_level · (max x'_b - min x'_b)`` as in :func:`smooth` (``kind="smoothgrad"``
    over :func:`gradient`). The reference code adds Gaussian noise of absolute standard
    deviation 0.15 (Captum's ``NoiseTunnel``); for a boundary point spanning ``[0, 1]`` the
    two agree.

    Args:
        score_fn: ``score_fn(x [B, ...]) -> [B]``, the true-class logit.
        boundary_point: ``x' [B, ...]``, floating point.
        key: PRNG key of the noise (``jax.random.split(key, S)[s]`` draws ``ε_s``).
        num_samples: ``S >= 1`` noisy copies, a Python int.
        noise_level: ``σ`` as a fraction of each example's value range, ``>= 0``.
        chunk_size: ``None`` (all copies at once; on CPU at most
            :data:`~jaxinterp.core.ops.AUTO_CHUNK_EXAMPLES` examples a pass) or ``c`` copies
            at a time.

    Returns:
        ``[B, ...]``, shaped like ``boundary_point``.

    Raises:
        ValueError: As :func:`smooth` on bad ``num_samples``/``noise_level``/``chunk_size``.

    References:
        Wang, Fredrikson & Datta, "Robust Models Are More Interpretable Because Attributions
        Look Normal", ICML 2022 (boundary-based SmoothGrad); Smilkov et al., "SmoothGrad:
        removing noise by adding noise", arXiv:1706.03825, 2017.
    """
    smoothed = smooth(
        gradient,
        num_samples=num_samples,
        noise_level=noise_level,
        kind="smoothgrad",
        chunk_size=chunk_size,
    )
    return smoothed(score_fn, checks.array(boundary_point, "boundary_point", image=True), key=key)
