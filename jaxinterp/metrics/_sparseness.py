"""Sparseness of an attribution: the Gini index of its magnitudes."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxinterp.core import checks
from jaxinterp.core.ops import flat, safe_div

__all__ = ["gini"]


def gini(attribution: jax.Array) -> jax.Array:
    """Gini index of ``|a|`` per example, ``[B, ...] -> [B]`` in ``[0, 1 − 1/n]``.

    With ``v_1 <= … <= v_n`` the sorted magnitudes of all ``n`` entries of an example
    (channels included, not summed)::

        G = 1 − 2 Σ_k (v_k / ‖v‖₁) · (n − k + ½) / n

    ``G = 0`` for a uniform map (``Σ_k (n − k + ½) = n²/2``) and ``(n − 1)/n`` for a one-hot
    map (only ``k = n`` counts); an all-zero map gets 0. Higher is sparser.

    References:
      Hurley, Rickard, "Comparing measures of sparsity", IEEE Trans. Inf. Theory 2009;
      Chalasani, Chen, Chowdhury, Wu, Jha, "Concise explanations of neural networks using
      adversarial training", ICML 2020.
    """
    return _gini(checks.array(attribution, "attribution", cast=True))


@jax.jit
def _gini(a: jax.Array) -> jax.Array:
    v = jnp.sort(jnp.abs(flat(a)).astype(jnp.float32), axis=1)
    n = v.shape[1]
    total = jnp.sum(v, axis=1)
    weights = (n - jnp.arange(1, n + 1, dtype=jnp.float32) + 0.5) / n  # [n]
    weighted = jnp.sum(v * weights[None, :], axis=1)
    return jnp.where(total > 0, 1.0 - 2.0 * safe_div(weighted, total), 0.0)
