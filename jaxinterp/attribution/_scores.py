"""What an attribution explains: a per-example scalar score of the input, and shared checks.

Every attribution method in this package takes a ``score_fn(x [B, ...]) -> [B]`` that gives
one scalar per example and never mixes examples, so the gradient of the summed score is the
stack of per-example gradients. :func:`class_score` builds one from the model boundary
``apply_fn(params, x) -> logits`` (like Captum's ``target`` or Xplique's operator).
"""

from __future__ import annotations

import math
import numbers
import operator
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

__all__ = [
    "KINDS",
    "AttributionFn",
    "ScoreFn",
    "check_chunk_size",
    "check_input",
    "check_nonnegative",
    "check_positive_int",
    "checked_score",
    "class_score",
]

ScoreFn = Callable[[jax.Array], jax.Array]
"""``score_fn(x [B, ...]) -> [B]``: one scalar per example, examples never interact."""

AttributionFn = Callable[[ScoreFn, jax.Array], jax.Array]
"""``attribution_fn(score_fn, x [B, ...]) -> [B, ...]``, shaped like ``x``."""

KINDS: tuple[str, ...] = ("logit", "log_softmax", "softmax")
"""Quantities of the target class that :func:`class_score` can return."""


def check_positive_int(name: str, value: Any, minimum: int = 1) -> int:
    """Returns ``value`` as a Python int, or raises ``ValueError`` naming ``name``."""
    try:
        out = None if isinstance(value, bool) else operator.index(value)
    except TypeError:
        out = None
    if out is None or out < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return out


def check_chunk_size(chunk_size: Any) -> int | None:
    """``None`` (everything at once) or an integer ``>= 1``."""
    return None if chunk_size is None else check_positive_int("chunk_size", chunk_size)


def check_nonnegative(name: str, value: Any) -> float:
    """Returns ``value`` as a finite Python float ``>= 0``, or raises ``ValueError``."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not (ok and math.isfinite(float(value)) and float(value) >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def check_input(x: Any, name: str = "x") -> jax.Array:
    """Validates a batched floating-point input ``[B, ...]`` and returns it as a JAX array.

    Raises:
        TypeError: ``x`` is not floating point (gradients need a real input).
        ValueError: ``x`` is a scalar (there is no batch axis).
    """
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"{name} must be a floating-point array [B, ...], got dtype {x.dtype}")
    if x.ndim < 1:
        raise ValueError(f"{name} must have a batch axis, shape [B, ...], got shape {x.shape}")
    return x


def checked_score(score_fn: ScoreFn, x: jax.Array) -> jax.Array:
    """``score_fn(x)``, checked to hold one score per example (shape ``[B]``)."""
    s = score_fn(x)
    if jnp.shape(s) != (x.shape[0],):
        raise ValueError(
            f"score_fn must return one score per example, shape [B] = ({x.shape[0]},), "
            f"got shape {jnp.shape(s)}"
        )
    return s


def _check_target(target: Any) -> int | jax.Array:
    if isinstance(target, numbers.Integral) and not isinstance(target, bool):
        if target < 0:
            raise ValueError(f"target must be a class index >= 0, got {target!r}")
        return int(target)
    target = jnp.asarray(target)
    if not jnp.issubdtype(target.dtype, jnp.integer) or target.ndim != 1:
        raise ValueError(
            f"target must be a Python int or an integer array [B], got dtype {target.dtype} "
            f"and shape {target.shape}"
        )
    return target


def class_score(
    apply_fn: Callable[[Any, jax.Array], jax.Array],
    params: Any,
    target: int | jax.Array,
    kind: str = "logit",
) -> ScoreFn:
    """Score of one class per example, from a classifier's logits.

    ``s_b(x) = z_{t_b}(x)`` (``logit``), ``log softmax(z(x))_{t_b}`` (``log_softmax``) or
    ``softmax(z(x))_{t_b}`` (``softmax``), with ``z = apply_fn(params, x)`` of shape
    ``[B, K]`` and ``t_b = target[b]``. The returned function is pure, jittable and
    differentiable in ``x`` and (through the closure) in ``params``.

    Args:
        apply_fn: ``apply_fn(params, x [B, ...]) -> logits [B, K]``.
        params: The model's parameters (any pytree).
        target: A class index for every example (Python int) or one per example (integer
            array ``[B]``; traced values are not range-checked).
        kind: One of :data:`KINDS`.

    Returns:
        ``score_fn(x [B, ...]) -> [B]``.

    Raises:
        ValueError: Unknown ``kind``, a bad ``target``; when called, logits not ``[B, K]``,
            a ``target`` array whose length is not ``B`` or an int target ``>= K``.

    References:
        Simonyan, Vedaldi, Zisserman, "Deep inside convolutional networks: visualising image
        classification models and saliency maps", ICLR Workshop 2014 (class-score saliency).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
    target = _check_target(target)

    def score_fn(x: jax.Array) -> jax.Array:
        logits = apply_fn(params, x)
        if logits.ndim != 2 or logits.shape[0] != x.shape[0]:
            raise ValueError(
                f"apply_fn must return logits [B, K] with B = {x.shape[0]}, "
                f"got shape {logits.shape}"
            )
        if kind == "log_softmax":
            logits = jax.nn.log_softmax(logits, axis=-1)
        elif kind == "softmax":
            logits = jax.nn.softmax(logits, axis=-1)
        if isinstance(target, int):
            if target >= logits.shape[1]:
                raise ValueError(f"target {target} out of range for K = {logits.shape[1]}")
            return logits[:, target]
        if target.shape[0] != x.shape[0]:
            raise ValueError(
                f"target must hold one class per example, shape [B] = ({x.shape[0]},), "
                f"got shape {target.shape}"
            )
        return jnp.take_along_axis(logits, target[:, None], axis=-1)[:, 0]

    return score_fn
