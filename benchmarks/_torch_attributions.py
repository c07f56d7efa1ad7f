"""Captum attributions and their jaxinterp counterparts, at equal settings.

A case is ``(name, settings)``; :func:`captum_fn` and :func:`jax_fn` build the two callables.
Captum's quadrature rules map to jaxinterp's Captum-exact ones (``gausslegendre`` ->
``gauss_legendre``, the ``riemann_*`` rules by the same name; jaxinterp's ``trapezoid`` has
no Captum counterpart). Captum's ``internal_batch_size`` counts examples, jaxinterp's
``chunk_size`` path points: ``internal_batch_size = chunk_size · B``. ``NoiseTunnel`` adds
``N(0, stdevs²)`` noise with torch's RNG, so its values cannot match jaxinterp's
(``jax.random``) draws; its value is compared in the σ → 0 limit only, where both equal
the gradient.

IG runs from a fixed random baseline image (:func:`baseline_for`), not from zeros: at the
all-zero image every 2×2 max-pool window of the CNN is an exact tie, where PyTorch sends the
gradient to one input and JAX shares it among the tied ones (both valid subgradients), so the
rules that evaluate the gradient at the baseline itself (``riemann_left``,
``riemann_trapezoid``) would differ there for a reason that has nothing to do with IG. The
cost of IG does not depend on the baseline's values.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import numpy as np
import torch
from captum.attr import IntegratedGradients, NoiseTunnel, Saliency

from jaxinterp import attribution

__all__ = ["CAPTUM_RULES", "baseline_for", "captum_fn", "cases", "jax_call", "jax_fn", "sigma_for"]

CAPTUM_RULES = {
    "riemann_left": "riemann_left",
    "riemann_right": "riemann_right",
    "riemann_middle": "riemann_middle",
    "riemann_trapezoid": "riemann_trapezoid",
    "gauss_legendre": "gausslegendre",
}
"""jaxinterp rule -> Captum ``method``."""

NOISE_LEVEL = 0.15
"""SmoothGrad σ as a fraction of the input range (PAIR's and jaxinterp's default)."""


def cases(steps: int, samples: int, chunk: int) -> list[tuple[str, dict[str, Any]]]:
    """Gradient, IG for every Captum rule at ``steps`` (and GL chunked), SmoothGrad."""
    out: list[tuple[str, dict[str, Any]]] = [("gradient", {"kind": "gradient"})]
    for rule in CAPTUM_RULES:
        out.append((f"ig_{rule}_{steps}", {"kind": "ig", "rule": rule, "steps": steps}))
    out.append(
        (
            f"ig_gauss_legendre_{steps}_c{chunk}",
            {"kind": "ig", "rule": "gauss_legendre", "steps": steps, "chunk": chunk},
        )
    )
    out.append((f"smoothgrad_{samples}", {"kind": "smoothgrad", "samples": samples}))
    return out


def baseline_for(x: np.ndarray) -> np.ndarray:
    """A fixed random baseline shaped like ``x``, uniform in ``[0, 0.2)`` (no max-pool ties)."""
    return np.random.default_rng(1).uniform(0.0, 0.2, size=x.shape).astype(x.dtype)


def captum_fn(
    cfg: dict[str, Any],
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    sigma: float,
    baseline: torch.Tensor,
) -> Callable[[], torch.Tensor]:
    """Captum's attribution of the target logit for NCHW ``x``.

    Args:
      sigma: SmoothGrad's absolute noise stdev.
      baseline: IG's baseline, NCHW like ``x``.
    """
    if cfg["kind"] == "gradient":
        sal = Saliency(model)
        return lambda: sal.attribute(x, target=y, abs=False)
    if cfg["kind"] == "ig":
        ig = IntegratedGradients(model)
        chunk = cfg.get("chunk")
        return lambda: ig.attribute(
            x,
            baselines=baseline,
            target=y,
            n_steps=cfg["steps"],
            method=CAPTUM_RULES[cfg["rule"]],
            internal_batch_size=None if chunk is None else chunk * x.shape[0],
        )
    nt = NoiseTunnel(Saliency(model))
    return lambda: nt.attribute(
        x, nt_type="smoothgrad", nt_samples=cfg["samples"], stdevs=sigma, target=y, abs=False
    )


def jax_fn(cfg: dict[str, Any], apply_fn: Callable, noise_level: float = NOISE_LEVEL) -> Callable:
    """jaxinterp's counterpart ``fn(params, x, y, baseline, key) -> attribution`` (NHWC)."""

    def score(params, y):
        return attribution.class_score(apply_fn, params, y)

    if cfg["kind"] == "gradient":
        return lambda params, x, y, baseline, key: attribution.gradient(score(params, y), x)
    if cfg["kind"] == "ig":
        return lambda params, x, y, baseline, key: attribution.integrated_gradients(
            score(params, y),
            x,
            baseline=baseline,
            num_steps=cfg["steps"],
            method=cfg["rule"],
            chunk_size=cfg.get("chunk"),
        )
    sg = attribution.smooth(
        attribution.gradient, num_samples=cfg["samples"], noise_level=noise_level
    )
    return lambda params, x, y, baseline, key: sg(score(params, y), x, key=key)


def sigma_for(x: np.ndarray) -> float:
    """Captum's absolute stdev matching jaxinterp's ``0.15 · (max − min)`` (batch-wide)."""
    return float(NOISE_LEVEL * (x.max() - x.min()))


def jax_call(cfg: dict[str, Any], apply_fn: Callable, params, x, y, noise_level: float):
    """One jitted call, for the value check."""
    fn = jax.jit(jax_fn(cfg, apply_fn, noise_level))
    return np.asarray(fn(params, x, y, baseline_for(np.asarray(x)), jax.random.PRNGKey(0)))
