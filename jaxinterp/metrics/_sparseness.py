"""Sparseness and structure of an attribution: the Gini index, the spatial coherence."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from jaxinterp.core import checks
from jaxinterp.core.ops import flat, safe_div

from ._common import nan_where_invalid

__all__ = ["gini", "spatial_coherence"]


def gini(attribution: jax.Array) -> jax.Array:
    """Gini index of ``|a|`` per example, ``[B, ...] -> [B]`` in ``[0, 1 − 1/n]``.

    With ``v_1 <= … <= v_n`` the sorted magnitudes of all ``n`` entries of an example
    (channels included, not summed)::

        G = 1 − 2 Σ_k (v_k / ‖v‖₁) · (n − k + ½) / n

    ``G = 0`` for a uniform map (``Σ_k (n − k + ½) = n²/2``) and ``(n − 1)/n`` for a one-hot
    map (only ``k = n`` counts); an all-zero map gets 0, one holding a NaN or an infinity
    NaN. Higher is sparser.

    References:
      Hurley, Rickard, "Comparing measures of sparsity", IEEE Trans. Inf. Theory 2009;
      Chalasani, Chen, Chowdhury, Wu, Jha, "Concise explanations of neural networks using
      adversarial training", ICML 2020.
    """
    a = checks.array(attribution, "attribution", cast=True)
    return nan_where_invalid(a, _gini(a))


@jax.jit
def _gini(a: jax.Array) -> jax.Array:
    v = jnp.sort(jnp.abs(flat(a)).astype(jnp.float32), axis=1)
    n = v.shape[1]
    total = jnp.sum(v, axis=1)
    weights = (n - jnp.arange(1, n + 1, dtype=jnp.float32) + 0.5) / n  # [n]
    weighted = jnp.sum(v * weights[None, :], axis=1)
    return jnp.where(total > 0, 1.0 - 2.0 * safe_div(weighted, total), 0.0)


def spatial_coherence(
    attribution: jax.Array, *, key: jax.Array, num_permutations: int = 8
) -> jax.Array:
    """How much smoother a map is than its own pixels shuffled, ``[B, H, W, C] -> [B]``.

    With ``h = Σ_c |a|`` per pixel and ``TV(h) = Σ |h_{i+1,j} − h_{i,j}| + |h_{i,j+1} − h_{i,j}|``
    (anisotropic total variation)::

        coherence = 1 − TV(h) / E_π TV(π h)

    ``π`` a uniformly random permutation of the pixels, the expectation estimated with
    ``num_permutations`` draws (the same draws for every example, so an example's value does
    not depend on its batch). The ratio does not depend on the map's scale, so unlike the TV
    of a sum-normalised map it does not reward flat maps: i.i.d. noise scores about 0, a
    smooth blob close to 1, a checkerboard below 0; a constant map (no structure to shuffle)
    scores 0, a map holding a NaN or an infinity NaN.

    Args:
      attribution: ``[B, H, W, C]`` (channels last) or a map ``[B, H, W]``.
      key: PRNG key of the permutations.
      num_permutations: Draws of ``π``, a Python int ``>= 1``.

    References:
      The library's (METHODS §4), replacing the TV of Shoshan & Ratner's comparison
      (arXiv:1811.07311) by its permutation-normalised form.
    """
    a = checks.array(attribution, "attribution", ndims=(3, 4), cast=True)
    n = checks.integer("num_permutations", num_permutations)
    return nan_where_invalid(a, _coherence(a, checks.key(key), n))


def _tv2(h: jax.Array) -> jax.Array:
    """Anisotropic TV of maps ``[..., H, W]`` -> ``[...]``."""
    dh = jnp.sum(jnp.abs(jnp.diff(h, axis=-2)), axis=(-2, -1))
    dw = jnp.sum(jnp.abs(jnp.diff(h, axis=-1)), axis=(-2, -1))
    return dh + dw


@functools.partial(jax.jit, static_argnums=2)
def _coherence(a: jax.Array, key: jax.Array, n: int) -> jax.Array:
    h = jnp.sum(jnp.abs(a), axis=-1) if a.ndim == 4 else jnp.abs(a)
    b, hh, ww = h.shape
    perms = jax.vmap(lambda k: jax.random.permutation(k, hh * ww))(jax.random.split(key, n))
    shuffled = flat(h)[:, perms].reshape(b, n, hh, ww)  # [B, n, H, W]
    expected = jnp.mean(_tv2(shuffled), axis=1)
    return jnp.where(expected > 0, 1.0 - safe_div(_tv2(h), expected), 0.0).astype(jnp.float32)
