"""Argument checks shared by every subpackage, under one policy.

* A value of the wrong *type* (a string for a number, a float for an integer, a non-float
  input array) raises :class:`ArgumentTypeError`, a ``TypeError``.
* A value of the right type but outside its range or of the wrong shape raises
  ``ValueError``.

Batched arrays are ``[B, ...]`` with ``B >= 1``; model inputs are floats (raw ``uint8``
images are refused with the ``x.astype(jnp.float32) / 255`` hint) and images are channels
last ``[B, H, W, C]``.

Every message names the argument and what was expected (range, shape, dtype). The checks
run at the Python boundary: shape and dtype checks also hold under ``jit`` (shapes are
static), value checks (label ranges, input bounds) run only on concrete arrays.

:class:`ArgumentTypeError` also derives from ``ValueError``: jaxinterp 0.1 raised
``ValueError`` for every bad hyperparameter, and code that catches that keeps working.
"""

from __future__ import annotations

import math
import numbers
import operator
from collections.abc import Callable, Sequence
from typing import Any, Literal, cast, overload

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "ArgumentTypeError",
    "array",
    "baseline",
    "bounds",
    "box",
    "channels_last",
    "chunk_size",
    "epsilon_in_bounds",
    "function",
    "in_bounds",
    "integer",
    "is_concrete",
    "key",
    "labels",
    "like",
    "nonnegative",
    "num_classes",
    "one_of",
    "positive",
    "real",
    "sequence",
    "step_size",
]


class ArgumentTypeError(TypeError, ValueError):
    """An argument of the wrong type (a ``TypeError``; also a ``ValueError``, see above)."""


def is_concrete(v: Any) -> bool:
    """Whether ``v`` holds values (it is not a tracer), so value checks can run."""
    return not isinstance(v, jax.core.Tracer)


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        if isinstance(value, np.ndarray | jax.Array) and np.ndim(value) == 0:
            return _number(name, np.asarray(value).item())
        raise ArgumentTypeError(f"{name} must be a real number, got {value!r}")
    return float(value)


def real(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """``value`` as a finite Python float in the given range.

    Args:
      name: The argument's name, for the message.
      value: A real number (``bool`` is refused).
      low, high: Bounds, ``None`` for none.
      low_open, high_open: Whether the bound itself is excluded.

    Raises:
      ArgumentTypeError: ``value`` is not a real number.
      ValueError: ``value`` is not finite or out of range.
    """
    parts = [f"{'>' if low_open else '>='} {low:g}"] if low is not None else []
    parts += [f"{'<' if high_open else '<='} {high:g}"] if high is not None else []
    want = f"{name} must be a finite number{''.join(' ' + p for p in [' and '.join(parts)] if p)}"
    try:
        v = _number(name, value)
    except ArgumentTypeError:
        raise ArgumentTypeError(f"{want}, got {value!r}") from None
    bad = not math.isfinite(v)
    bad |= low is not None and (v < low or (low_open and v == low))
    bad |= high is not None and (v > high or (high_open and v == high))
    if bad:
        raise ValueError(f"{want}, got {value!r}")
    return v


def positive(name: str, value: Any) -> float:
    """``value`` as a finite float ``> 0`` (see :func:`real`)."""
    return real(name, value, low=0.0, low_open=True)


def nonnegative(name: str, value: Any) -> float:
    """``value`` as a finite float ``>= 0`` (see :func:`real`)."""
    return real(name, value, low=0.0)


def integer(name: str, value: Any, minimum: int | None = 1, maximum: int | None = None) -> int:
    """``value`` as a Python int in ``[minimum, maximum]`` (``None``: unbounded).

    Raises:
      ArgumentTypeError: ``value`` is not an integer (``bool`` and ``1.0`` are refused).
      ValueError: ``value`` is out of range.
    """
    try:
        out = None if isinstance(value, bool) else operator.index(value)
    except TypeError:
        out = None
    parts = [f">= {minimum}"] if minimum is not None else []
    parts += [f"<= {maximum}"] if maximum is not None else []
    rng = "".join(" " + p for p in [" and ".join(parts)] if p)
    if out is None:
        raise ArgumentTypeError(f"{name} must be an integer{rng}, got {value!r}")
    if (minimum is not None and out < minimum) or (maximum is not None and out > maximum):
        raise ValueError(f"{name} must be an integer{rng}, got {value!r}")
    return out


def sequence(
    name: str,
    value: Any,
    of: Callable[[str, Any], Any] | type | None = None,
    *,
    min_length: int = 1,
    length: int | None = None,
    distinct: bool = False,
) -> tuple[Any, ...]:
    """``value`` as a tuple: a list, tuple, other sequence or 1-D array (a string is refused),
    each item checked.

    Args:
      name: The argument's name, for the message; item ``i`` is named ``name[i]``.
      value: The sequence (e.g. layer widths, per-channel values, layer names).
      of: How each item is checked: a check called as ``of(f"{name}[{i}]", item)`` whose
        result replaces the item (e.g. :func:`positive`, :func:`integer`), or a type the
        items must be instances of (e.g. ``str``); ``None``: items are kept as they are.
      min_length: The fewest items allowed (``1``: non-empty).
      length: The exact number of items, or ``None``.
      distinct: Refuse repeated items.

    Raises:
      ArgumentTypeError: ``value`` is not a sequence (or is a string), or an item is not of
        the type ``of``.
      ValueError: The wrong number of items, a repeated item with ``distinct``, or an item
        that ``of`` refuses.
    """
    if length is not None:
        want = f"{name} must be a sequence (list or tuple) of {length} items"
    elif min_length > 1:
        want = f"{name} must be a sequence (list or tuple) of >= {min_length} items"
    else:
        want = f"{name} must be a {'non-empty ' if min_length else ''}sequence (list or tuple)"
    is_vector = isinstance(value, np.ndarray | jax.Array) and np.ndim(value) == 1
    if isinstance(value, str | bytes) or not (isinstance(value, Sequence) or is_vector):
        raise ArgumentTypeError(f"{want}, got {value!r}")
    items = tuple(value)
    n = len(items)
    if (length is not None and n != length) or n < min_length:
        raise ValueError(f"{want}, got {n} items: {value!r}")
    if isinstance(of, type):
        for i, item in enumerate(items):
            if not isinstance(item, of):
                raise ArgumentTypeError(
                    f"{name}[{i}] must be a {of.__name__}, got {item!r} in {name}={value!r}"
                )
    elif of is not None:
        items = tuple(of(f"{name}[{i}]", item) for i, item in enumerate(items))
    if distinct and len(set(items)) != n:
        raise ValueError(f"{name} must hold distinct items, got {value!r}")
    return items


def chunk_size(value: Any, name: str = "chunk_size") -> int | None:
    """``None`` (everything at once) or an integer ``>= 1``."""
    return None if value is None else integer(name, value)


def step_size(value: Any, epsilon: float, num_steps: int) -> float:
    """``value`` checked ``> 0``, or the default ``2.5 · ε / num_steps`` when ``None``.

    References:
      Madry et al., "Towards Deep Learning Models Resistant to Adversarial Attacks",
      ICLR 2018 (the 2.5ε/T step).
    """
    return 2.5 * epsilon / num_steps if value is None else positive("step_size", value)


def one_of(name: str, value: Any, choices: Sequence[str]) -> str:
    """``value`` if it is one of ``choices``, else ``ValueError`` listing them."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return value


@overload
def function(name: str, value: Any, *, optional: Literal[False] = False) -> Callable[..., Any]: ...
@overload
def function(name: str, value: Any, *, optional: bool) -> Callable[..., Any] | None: ...
def function(name: str, value: Any, *, optional: bool = False) -> Callable[..., Any] | None:
    """``value`` if it is callable (or ``None`` with ``optional``), else ``ArgumentTypeError``."""
    if value is None and optional:
        return None
    if not callable(value):
        raise ArgumentTypeError(f"{name} must be callable, got {value!r}")
    return value


def bounds(value: Any, name: str = "bounds") -> tuple[float, float] | None:
    """``None`` or a finite pair ``(lo, hi)`` with ``lo < hi``."""
    if value is None:
        return None
    try:
        lo, hi = (float(b) for b in value)
    except (TypeError, ValueError):
        raise ArgumentTypeError(f"{name} must be None or a pair (lo, hi), got {value!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"{name} must be finite with lo < hi, got {value!r}")
    return lo, hi


def box(value: Any, needed_by: str, name: str = "bounds") -> tuple[float, float]:
    """A finite pair ``(lo, hi)`` that ``needed_by`` requires (``None`` is refused)."""
    if value is None:
        raise ValueError(f"{name} must be a finite pair (lo, hi): {needed_by} needs one")
    out = bounds(value, name)
    assert out is not None
    return out


def epsilon_in_bounds(epsilon: float, box: tuple[float, float] | None) -> None:
    """``ValueError`` if an L∞ radius exceeds the input range ``hi − lo``."""
    if box is not None and epsilon > box[1] - box[0]:
        raise ValueError(
            f"epsilon={epsilon} is outside the input range: it exceeds bounds[1] - bounds[0] = "
            f"{box[1] - box[0]} (epsilon is in input units, e.g. 8/255 not 8)"
        )


_RANKS = {1: "[B]", 2: "[B, D]", 3: "[B, H, W]", 4: "[B, H, W, C]"}


def _dtype_hint(name: str, dtype: Any) -> str:
    """How to turn a non-float input into the ``[0, 1]`` floats an input must be."""
    if dtype == jnp.uint8:
        return (
            f": raw 8-bit images? Inputs are floats in [0, 1], e.g. "
            f"{name}.astype(jnp.float32) / 255"
        )
    if jnp.issubdtype(dtype, jnp.integer):
        return (
            f": convert it, e.g. {name}.astype(jnp.float32) (divided by 255 for 8-bit pixel "
            "values, since inputs are floats in [0, 1])"
        )
    return ""


def channels_last(x: jax.Array, name: str = "x") -> jax.Array:
    """``x`` unless it is a 4-D image batch that looks channels-first ``[B, C, H, W]``.

    Such a batch has ``C = x.shape[1]`` in ``(1, 3)`` and ``x.shape[2], x.shape[3] > 4``:
    channels-last images ``[B, H, W, C]`` that small in ``H`` and that wide in ``C`` are
    rare, while NCHW batches from PyTorch pipelines are common.

    Raises:
      ValueError: ``x`` looks channels-first; the message shows the transpose.
    """
    shape = tuple(x.shape)
    if len(shape) == 4 and shape[1] in (1, 3) and shape[2] > 4 and shape[3] > 4:
        raise ValueError(
            f"{name} looks channels-first [B, C, H, W] (shape {shape}), but jaxinterp expects "
            f"channels last [B, H, W, C]: pass jnp.transpose({name}, (0, 2, 3, 1))"
        )
    return x


def array(
    x: Any,
    name: str = "x",
    *,
    ndims: Sequence[int] | None = None,
    min_ndim: int = 1,
    cast: bool = False,
    image: bool = False,
    allow_empty: bool = False,
) -> jax.Array:
    """``x`` as a floating-point JAX array ``[B, ...]`` (rank in ``ndims`` if given).

    Args:
      x: The array.
      name: Its name, for the message.
      ndims: Allowed ranks, or ``None`` for any rank ``>= min_ndim``.
      min_ndim: The least rank without ``ndims`` (``2``: a batch of vectors or images).
      cast: Convert bool/integer arrays to float32 (maps and masks); otherwise they are
        refused (an input that is differentiated must be floating point), with a hint for
        raw ``uint8`` images (``x.astype(jnp.float32) / 255``).
      image: ``x`` is a model input: a 4-D ``x`` must be channels last ``[B, H, W, C]``
        (:func:`channels_last` refuses one that looks ``[B, C, H, W]``).
      allow_empty: Accept ``B = 0`` (e.g. per-example values of an empty batch).

    Raises:
      ArgumentTypeError: Not an array, complex, or (without ``cast``) not floating point.
      ValueError: No batch axis, a rank outside ``ndims``, an empty batch ``B = 0`` (without
        ``allow_empty``), or (``image``) a channels-first layout.
    """
    try:
        x = jnp.asarray(x)
    except (TypeError, ValueError):
        raise ArgumentTypeError(
            f"{name} must be an array [B, ...], got {type(x).__name__}"
        ) from None
    if jnp.issubdtype(x.dtype, jnp.complexfloating):
        raise ArgumentTypeError(f"{name} must be real, got dtype {x.dtype}")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        if not cast:
            raise ArgumentTypeError(
                f"{name} must be a float array [B, ...] (a floating-point dtype), "
                f"got dtype {x.dtype}{_dtype_hint(name, x.dtype)}"
            )
        x = x.astype(jnp.float32)
    if (x.ndim < min_ndim) if ndims is None else (x.ndim not in ndims):
        if ndims is None:
            want = "a float array [B, ...]" + (f" with >= {min_ndim} axes" if min_ndim > 1 else "")
        else:
            want = " or ".join(_RANKS.get(n, f"{n}-D") for n in ndims)
        raise ValueError(f"{name} must be {want}, got shape {tuple(x.shape)}")
    if x.ndim and x.shape[0] == 0 and not allow_empty:
        raise ValueError(
            f"{name} has an empty batch (B = 0): {name} must hold at least one example, "
            f"got shape {tuple(x.shape)}"
        )
    return channels_last(x, name) if image else x


def like(a: Any, x: jax.Array, name: str, like: str = "x") -> jax.Array:
    """``a`` as a float array of exactly ``x.shape`` (integers cast), else ``ValueError``."""
    a = array(a, name, cast=True)
    if a.shape != x.shape:
        raise ValueError(
            f"{name} must have the shape of {like}, {tuple(x.shape)}, got {tuple(a.shape)}"
        )
    return a


def baseline(value: Any, x: jax.Array, name: str = "baseline") -> jax.Array:
    """A reference input ``x'`` for ``x [B, ...]``, broadcast to ``x.shape`` in ``x``'s dtype.

    ``None`` gives zeros; a real number, that constant everywhere; an array must broadcast
    to ``x.shape`` or to one example's shape ``x.shape[1:]`` (then shared by the batch). The
    broadcast is explicit, so it also holds under ``jax_numpy_rank_promotion="raise"``.

    Raises:
      ValueError: An array that broadcasts to neither shape.
    """
    if value is None:
        return jnp.zeros_like(x)
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return jnp.full_like(x, cast(float, value))  # numbers.Real is not in jax's ArrayLike.
    shape = jnp.shape(value)
    target = x.shape if len(shape) == x.ndim else x.shape[1:]
    try:
        ok = len(shape) in (0, x.ndim - 1, x.ndim) and np.broadcast_shapes(shape, target) == target
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(
            f"{name} must broadcast to x.shape = {x.shape} or one example's shape "
            f"{x.shape[1:]}, got shape {shape}"
        )
    return jnp.broadcast_to(jnp.asarray(value, x.dtype), x.shape)


def labels(y: Any, batch: int, name: str = "y", *, num_classes: int | None = None) -> jax.Array:
    """Integer labels ``[B]`` as a JAX array.

    Args:
      y: The labels.
      batch: The batch size ``B`` they must match (no broadcasting of a ``[1]`` array).
      name: Their name, for the message.
      num_classes: ``K``; with concrete labels, each must lie in ``[0, K)``.

    Raises:
      ArgumentTypeError: ``y`` is not an integer array.
      ValueError: ``y`` is not ``[B]``, the batch is empty (``B = 0``), or (concrete) a label
        is outside ``[0, K)``. Traced labels cannot be range-checked: the losses and scores of
        :mod:`jaxinterp.core` give NaN for an example whose label is outside ``[0, K)``.
    """
    try:
        y = jnp.asarray(y)
    except (TypeError, ValueError):
        raise ArgumentTypeError(
            f"{name} must hold integer labels [B] = ({batch},), got {type(y).__name__}"
        ) from None
    if not jnp.issubdtype(y.dtype, jnp.integer):
        raise ArgumentTypeError(
            f"{name} must hold integer labels [B] = ({batch},), got dtype {y.dtype} (an integer "
            "dtype is needed)"
        )
    if y.shape != (batch,):
        raise ValueError(
            f"{name} must be [B] with the batch size of x, ({batch},), integer labels; "
            f"got shape {tuple(y.shape)}"
        )
    if batch == 0:
        raise ValueError(f"{name} has an empty batch (B = 0): labels of at least one example")
    if num_classes is not None and is_concrete(y) and y.size:
        y_np = np.asarray(y)
        if y_np.min() < 0 or y_np.max() >= num_classes:
            raise ValueError(
                f"{name} must lie in [0, {num_classes}), got labels in {y_np.min()}..{y_np.max()}"
            )
    return y


def num_classes(apply_fn: Callable[..., Any], params: Any, x: jax.Array) -> int:
    """``K`` of ``apply_fn(params, x) -> logits [B, K>=2]``, from shapes alone.

    Raises:
      ValueError: The output is not ``[B, K]`` with ``B = x.shape[0]`` and ``K >= 2``.
    """
    out = jax.eval_shape(apply_fn, params, x)
    shape = getattr(out, "shape", None)
    if shape is None or len(shape) != 2 or shape[0] != x.shape[0] or shape[1] < 2:
        got = tuple(shape) if shape is not None else type(out).__name__
        raise ValueError(f"apply_fn must return logits [B={x.shape[0]}, K>=2], got {got}")
    return int(shape[1])


def in_bounds(x: jax.Array, box: tuple[float, float] | None, name: str = "x") -> None:
    """For concrete ``x``: ``ValueError`` if any entry lies outside ``box``."""
    if box is None or not is_concrete(x) or not x.size:
        return
    x_np = np.asarray(x)
    if x_np.min() < box[0] or x_np.max() > box[1]:
        raise ValueError(
            f"{name} lies outside bounds={box} (range {x_np.min():.4g}..{x_np.max():.4g}); "
            "pass the input range as bounds, or bounds=None"
        )


def key(value: Any, name: str = "key", *, required_by: str | None = None) -> jax.Array:
    """``value`` if it is a PRNG key (typed, or raw ``uint32 [2]``/``[4]``).

    Args:
      value: The key.
      name: Its name.
      required_by: Why it is needed, for the message when ``value`` is ``None``.

    Raises:
      ArgumentTypeError: ``value`` is ``None`` (a key is required) or not a PRNG key.
    """
    if value is None:
        why = f" with {required_by}" if required_by else ""
        raise ArgumentTypeError(
            f"{name} is required{why}: {name} must be a PRNG key, e.g. {name}=jax.random.key(0)"
        )
    k = value if isinstance(value, jax.Array) else None
    typed = k is not None and jnp.issubdtype(k.dtype, jax.dtypes.prng_key)
    raw = k is not None and k.dtype == jnp.uint32 and k.ndim == 1
    if not (typed or raw):
        raise ArgumentTypeError(f"{name} must be a PRNG key, e.g. jax.random.key(0), got {value!r}")
    return value
