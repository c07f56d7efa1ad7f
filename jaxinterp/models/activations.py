"""Elementwise activations for explanation-friendly models.

Gradient-based explanation regularisers differentiate the model twice or more with respect to
its input. A ReLU network is piecewise linear, so its input Hessian is zero almost everywhere
and curvature penalties see nothing. The β-softplus

    softplus_β(x) = log(1 + exp(β x)) / β

is a smooth stand-in: it is infinitely differentiable for every β > 0, and it converges
uniformly to ReLU as β → ∞, with ``0 <= softplus_β(x) - relu(x) <= log(2) / β``.

References:
    Dombrowski et al., "Explanations can be manipulated and geometry is to blame",
    NeurIPS 2019 (β-softplus smoothing of ReLU networks).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxinterp.core import checks

Activation = Callable[[jax.Array], jax.Array]

ACTIVATIONS: tuple[str, ...] = ("relu", "softplus")
"""Names accepted by :func:`get_activation`."""


def check_beta(beta: float) -> float:
    """Validates a softplus sharpness.

    Args:
        beta: Sharpness β of the softplus.

    Returns:
        ``beta`` as a Python float.

    Raises:
        ArgumentTypeError: If ``beta`` is not a real number (e.g. a string).
        ValueError: If ``beta`` is not a finite number > 0.
    """
    return checks.positive("beta", beta)


def _log1p_unit(e: jax.Array) -> jax.Array:
    """``log1p(e)`` for ``e`` in ``[0, 1]``, as ``2 atanh(s)``, ``s = e / (2 + e)`` in
    ``[0, 1/3]``: the odd series ``2 (s + s^3/3 + ... + s^15/15)``, whose first omitted term
    is below 2e-8 of the result, so it is exact to float32 round-off (a few ulps; tested on a
    dense grid against float64). One division and eight multiply-adds: XLA:CPU fuses
    ``log1p(exp(.))`` into a loop about twice as slow as this one with ``exp``. Float64 and
    wider keep ``jnp.log1p``. Formula: the series of ``atanh`` (Abramowitz & Stegun 4.6.22
    with ``log1p(e) = 2 atanh(e / (2 + e))``).
    """
    if jnp.finfo(e.dtype).bits > 32:
        return jnp.log1p(e)
    s = e / (2 + e)
    s2 = s * s
    poly = s2 * (1.0 / 15) + 1.0 / 13
    for k in (11, 9, 7, 5, 3, 1):
        poly = poly * s2 + 1.0 / k
    return 2 * s * poly


@jax.custom_jvp
def _softplus(z: jax.Array) -> jax.Array:
    """``log(1 + e^z) = max(z, 0) + log1p(e^{-|z|})``, with the derivative ``σ(z)``."""
    return jnp.maximum(z, 0) + _log1p_unit(jnp.exp(-jnp.abs(z)))


# σ(z) = 1 − e^{−softplus(z)}, written from the output so that reverse mode keeps one array
# (the output, which the next layer needs anyway) and evaluates one expm1. The rule is
# differentiated again by JAX, so every higher derivative is exact too (no kink of |z| or
# max at z = 0 leaks into them).
_softplus.defjvps(lambda t, ans, z: t * -jnp.expm1(-ans))


def softplus_beta(x: jax.Array, beta: float = 1.0) -> jax.Array:
    """β-softplus, ``log(1 + exp(β x)) / β``, in a numerically stable form.

    Computed as ``max(βx, 0) + log1p(exp(−|βx|))``, divided by β: it neither overflows for
    large ``β x`` nor loses precision for very negative ``β x``, and equals
    ``jax.nn.softplus(β x) / β`` to float32 round-off. Its derivative ``σ(βx)`` is a custom
    JVP computed from the output, ``−expm1(−βy)`` for ``y = softplus_β(x)``, which is
    cheaper than differentiating ``logaddexp`` and exact at every order.

    Args:
        x: Input of any shape.
        beta: Sharpness β > 0 (not validated here; see :func:`get_activation`).

    Returns:
        Array with the same shape and dtype as ``x``.
    """
    if beta == 1.0:
        return _softplus(x)
    return _softplus(beta * x) / beta


def get_activation(name: str, *, beta: float = 1.0) -> Activation:
    """Returns the elementwise activation called ``name``.

    Args:
        name: One of :data:`ACTIVATIONS` (``"relu"`` or ``"softplus"``), case-insensitive.
        beta: Softplus sharpness β > 0. Validated for every name so that a bad config fails
            early, but only used by ``"softplus"``.

    Returns:
        A function mapping an array of any shape to an array of the same shape.

    Raises:
        ArgumentTypeError: If ``name`` is not a string or ``beta`` not a real number.
        ValueError: If ``name`` is unknown (the message lists the known names) or if ``beta``
            is not a finite number > 0.

    Example:
        >>> act = get_activation("softplus", beta=10.0)
        >>> y = act(jnp.linspace(-1.0, 1.0, 5))  # ~relu, but smooth
    """
    beta = check_beta(beta)
    if not isinstance(name, str):
        raise checks.ArgumentTypeError(
            f"activation must be a string, one of {', '.join(ACTIVATIONS)}; got {name!r}"
        )
    key = name.lower()
    if key == "relu":
        return jax.nn.relu
    if key == "softplus":
        return functools.partial(softplus_beta, beta=beta)
    raise ValueError(f"Unknown activation {name!r}; known activations: {', '.join(ACTIVATIONS)}")


def check_model_config(num_classes: int, activation: str, beta: float) -> None:
    """Validates the arguments shared by every classifier in :mod:`jaxinterp.models`.

    Args:
        num_classes: Number of output logits; must be an integer >= 2.
        activation: Activation name, see :func:`get_activation`.
        beta: Softplus sharpness, see :func:`check_beta`.

    Raises:
        ArgumentTypeError: If ``num_classes`` is not an integer, ``activation`` not a string
            or ``beta`` not a number.
        ValueError: If any argument is invalid.
    """
    checks.integer("num_classes", num_classes, minimum=2)
    get_activation(activation, beta=beta)
