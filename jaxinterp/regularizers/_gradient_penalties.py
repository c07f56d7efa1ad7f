"""Penalties on input gradients: norm (double backprop), local alignment, curvature (CURE)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from jaxinterp.core import checks
from jaxinterp.core.ops import flat
from jaxinterp.core.protocols import ApplyFn

from ._engine import (
    check_batch,
    check_impl,
    check_score,
    penalize_input_gradients,
)

__all__ = ["curvature", "gradient_alignment", "input_gradient_norm"]

NOISES = ("uniform", "gaussian")
"""Distributions of the perturbation ``δ`` of :func:`gradient_alignment`."""


def input_gradient_norm(*, score: str = "loss", impl: str = "fast") -> Callable:
    """Input-gradient norm (double backpropagation).

    ``R = mean_b ‖∇ₓ s(x_b, y_b)‖²``, with ``s`` the cross-entropy by default.

    Args:
      score: ``loss``, ``logit`` (true class) or ``log_softmax``.
      impl: ``fast`` (reverse-over-forward, METHODS §1.7) or ``autodiff`` (double backprop);
        ``fast`` measured 2.15× a plain step vs 2.31× (XLA on CPU, LeNet CNN, batch 128).

    Returns:
      ``penalty(apply_fn, params, x [B, ...], y [B], *, key) -> (R, {})``; ``key`` unused.

    References:
      Drucker & LeCun, "Improving generalization performance using double backpropagation",
      IEEE TNN 1992; Ross & Doshi-Velez, "Improving the adversarial robustness and
      interpretability of deep neural networks by regularizing their input gradients", AAAI 2018.
    """
    check_score(score)
    check_impl(impl)

    def functional(g: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
        return jnp.mean(jnp.sum(flat(g) ** 2, axis=1)), {}

    def penalty(
        apply_fn: ApplyFn, params: Any, x: jax.Array, y: jax.Array, *, key: jax.Array | None = None
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        x, y = check_batch(apply_fn, params, x, y)
        return penalize_input_gradients(functional, apply_fn, params, [x], y, score, impl)

    return penalty


def gradient_alignment(
    *,
    lambda_l2: float = 0.01,
    lambda_cos: float = 1.0,
    epsilon: float = 4 / 255,
    std: Sequence[float] | None = None,
    noise: str = "uniform",
    detach_source: bool = True,
    score: str = "logit",
    impl: str = "autodiff",
) -> Callable:
    """Local gradient alignment, ℓ2 + cosine.

    With ``g = ∇ₓ f_y(x)``, ``g' = ∇ₓ f_y(x + δ)``, ``cosd(a, b) = (1 − cos(a, b)) / 2``:
    ``R = λ_l2 · mean_b ‖g − g'‖² + λ_cos · mean_b cosd(g, g')``, one δ per example and step:
    ``δ ~ U[−ε', ε']^d`` (``noise="uniform"``) or ``N(0, ε'²)`` (``"gaussian"``), where
    ``ε' = ε / std_c`` converts the pixel-unit radius to the model's normalised input space
    per channel (the last axis of ``x``; ``std=None`` means inputs are pixels).

    Args:
      lambda_l2, lambda_cos: the two weights (reference: 0.01 and 1.0 for the CIFAR-10 LeNet).
      epsilon: radius in pixel units of inputs in [0, 1] (reference 4/255).
      std: per-channel standard deviation of the input normalisation, or ``None``.
      noise: ``uniform`` or ``gaussian``.
      detach_source: stop the gradient through ``g(x)`` (the reference default).
      score: what ``g`` differentiates (reference: the true-class ``logit``).
      impl: ``fast`` (reverse over one jvp at ``x + δ``) or ``autodiff``. The default is
        ``autodiff``: with XLA on CPU it measured faster (train step 3.09× a plain step vs
        3.44× for ``fast``; LeNet CNN, 32×32×3, batch 128), as reverse-over-reverse reuses
        the forward residuals that the jvp recomputes.

    Returns:
      ``penalty(apply_fn, params, x, y, *, key) -> (R, {"l2", "cosd"})`` (unweighted terms).

    References:
      Joo, Jeong, Heo, Weller, Moon, "Towards more robust interpretation via local gradient
      alignment", AAAI 2023.
    """
    lambda_l2 = checks.nonnegative("lambda_l2", lambda_l2)
    lambda_cos = checks.nonnegative("lambda_cos", lambda_cos)
    epsilon = checks.real("epsilon", epsilon, low=0.0, low_open=True, high=1.0)  # pixel units
    checks.one_of("noise", noise, NOISES)
    std = None if std is None else checks.sequence("std", std, checks.positive)
    check_score(score)
    check_impl(impl)
    scale = jnp.asarray([epsilon] if std is None else [epsilon / s for s in std], jnp.float32)

    def functional(g: jax.Array, g_near: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
        if detach_source:
            g = jax.lax.stop_gradient(g)
        a, b = flat(g), flat(g_near)
        l2 = jnp.mean(jnp.sum((a - b) ** 2, axis=1))
        norms = jnp.linalg.norm(a, axis=1) * jnp.linalg.norm(b, axis=1)
        cos = jnp.sum(a * b, axis=1) / jnp.maximum(norms, 1e-12)
        cosd = jnp.mean((1.0 - cos) / 2.0)
        return lambda_l2 * l2 + lambda_cos * cosd, {"l2": l2, "cosd": cosd}

    def penalty(
        apply_fn: ApplyFn, params: Any, x: jax.Array, y: jax.Array, *, key: jax.Array
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        x, y = check_batch(apply_fn, params, x, y)
        if std is not None and x.shape[-1] != len(std):
            raise ValueError(f"std has {len(std)} channels but x has {x.shape[-1]}")
        eps = scale.astype(x.dtype).reshape((1,) * (x.ndim - 1) + (-1,))
        if noise == "uniform":
            delta = jax.random.uniform(key, x.shape, x.dtype, -1.0, 1.0) * eps
        else:
            delta = jax.random.normal(key, x.shape, x.dtype) * eps
        return penalize_input_gradients(
            functional, apply_fn, params, [x, x + delta], y, score, impl,
            detached=(0,) if detach_source else (),
        )  # fmt: skip

    return penalty


def curvature(*, h: float = 1.5 / 255, score: str = "loss", impl: str = "autodiff") -> Callable:
    """Curvature regularization by finite differences (CURE).

    ``g = ∇ₓ L(x)``, ``z = h · sign(g) / ‖sign(g)‖`` (a constant direction),
    ``R = mean_b ‖∇ₓL(x + z) − ∇ₓL(x)‖²``: a cheap proxy of the curvature along the most
    loss-increasing direction. ``‖sign(g)‖ = √d`` except where ``g`` has zeros.

    Args:
      h: finite-difference step in pixel units (the reference anneals to 1.5 / 255 on CIFAR).
      score: what is differentiated (reference: the ``loss``).
      impl: ``fast`` or ``autodiff`` (default: measured faster with XLA on CPU, 3.90× a
        plain step vs 6.80× for ``fast``; LeNet CNN, 32×32×3, batch 128).

    Returns:
      ``penalty(apply_fn, params, x, y, *, key) -> (R, {})``; ``key`` unused.

    References:
      Moosavi-Dezfooli, Fawzi, Uesato, Frossard, "Robustness via curvature regularization, and
      vice versa", CVPR 2019.
    """
    h = checks.real("h", h, low=0.0, low_open=True, high=1.0)  # pixel units
    check_score(score)
    check_impl(impl)

    def functional(g: jax.Array, g_near: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
        return jnp.mean(jnp.sum((flat(g_near) - flat(g)) ** 2, axis=1)), {}

    def penalty(
        apply_fn: ApplyFn, params: Any, x: jax.Array, y: jax.Array, *, key: jax.Array | None = None
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        x, y = check_batch(apply_fn, params, x, y)

        def near(g: jax.Array) -> jax.Array:  # x + z, from the gradient at x (constant)
            s = jnp.sign(g)
            norm = jnp.maximum(jnp.linalg.norm(flat(s), axis=1), 1e-12)
            return x + h * s / norm.reshape((-1,) + (1,) * (x.ndim - 1))

        return penalize_input_gradients(functional, apply_fn, params, [x, near], y, score, impl)

    return penalty
