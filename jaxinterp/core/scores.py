"""What is explained or penalised: a per-example scalar score of one class, by name.

``score_fn(x [B, ...]) -> [B]`` gives one scalar per example and never mixes examples, so the
gradient of the summed score is the stack of per-example gradients. The names are shared by
the attributions (what a map explains) and the gradient penalties (what they differentiate):

* ``"logit"``: ``z_y(x)``;  ``"log_softmax"``: ``log softmax(z)_y``;
  ``"softmax"``: ``softmax(z)_y``;  ``"loss"``: the cross-entropy ``−log softmax(z)_y``.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from jaxinterp.core import checks
from jaxinterp.core.losses import ce_loss, label_logit

__all__ = [
    "SCORES",
    "ScoreFn",
    "check_target",
    "checked_score",
    "class_score",
    "per_example_score",
    "score_of_logits",
    "scores_of_copies",
    "target_labels",
]

ScoreFn = Callable[[jax.Array], jax.Array]
"""``score_fn(x [B, ...]) -> [B]``: one scalar per example, examples never interact."""

SCORES: tuple[str, ...] = ("logit", "log_softmax", "softmax", "loss")
"""Names of the per-example scores of one class (see the module docstring)."""


def score_of_logits(logits: jax.Array, y: jax.Array, kind: str) -> jax.Array:
    """The score ``kind`` of class ``y_b`` for each row of ``logits [B, K]``, ``[B]``.

    Concrete labels outside ``[0, K)`` raise ``ValueError``; traced ones (under ``jit``) give
    NaN for their example (:func:`~jaxinterp.core.losses.label_logit`), never a finite score.
    """
    if kind == "loss":
        return ce_loss(logits, y)
    if kind == "log_softmax":
        logits = jax.nn.log_softmax(logits, axis=-1)
    elif kind == "softmax":
        logits = jax.nn.softmax(logits, axis=-1)
    elif kind != "logit":
        checks.one_of("score", kind, SCORES)
    return label_logit(logits, y)


def per_example_score(
    apply_fn: Callable[[Any, jax.Array], jax.Array],
    params: Any,
    x: jax.Array,
    y: jax.Array,
    kind: str,
) -> jax.Array:
    """``s_b(x_b)`` of class ``y_b`` for each example, ``[B]`` (``kind`` in :data:`SCORES`);
    NaN for an example whose traced label lies outside ``[0, K)`` (see
    :func:`score_of_logits`)."""
    return score_of_logits(apply_fn(params, x), y, kind)


def checked_score(score_fn: ScoreFn, x: jax.Array) -> jax.Array:
    """``score_fn(x)``, checked to hold one score per example (shape ``[B]``)."""
    s = score_fn(x)
    if jnp.shape(s) != (x.shape[0],):
        raise ValueError(
            f"score_fn must return one score per example, shape [B] = ({x.shape[0]},), "
            f"got shape {jnp.shape(s)}"
        )
    return s


def check_target(target: Any) -> int | jax.Array:
    """A class target: a Python int ``>= 0`` (every example) or an integer array ``[B]``."""
    if isinstance(target, numbers.Integral) and not isinstance(target, bool):
        if target < 0:
            raise ValueError(f"target must be a class index >= 0, got {target!r}")
        return int(target)
    try:
        target = jnp.asarray(target)
    except (TypeError, ValueError):
        raise checks.ArgumentTypeError(
            f"target must be a Python int or an integer array [B], got {type(target).__name__}"
        ) from None
    if not jnp.issubdtype(target.dtype, jnp.integer) or target.ndim != 1:
        raise checks.ArgumentTypeError(
            f"target must be a Python int or an integer array [B], got dtype {target.dtype} "
            f"and shape {target.shape}"
        )
    return target


def target_labels(target: int | jax.Array, batch: int, num_classes: int) -> jax.Array:
    """A :func:`check_target` result as labels ``[B]``, each in ``[0, K)`` (checked on
    concrete values)."""
    if isinstance(target, int):  # Checked here: under a trace jnp.full is not concrete.
        if target >= num_classes:
            raise ValueError(
                f"target {target} out of range for K = {num_classes}: target must lie in "
                f"[0, {num_classes})"
            )
        return jnp.full((batch,), target, jnp.int32)
    if target.shape[0] != batch:
        raise ValueError(
            f"target must hold one class per example: target must be [B] = ({batch},), "
            f"got shape {target.shape}"
        )
    return checks.labels(target, batch, "target", num_classes=num_classes)


def class_score(
    apply_fn: Callable[[Any, jax.Array], jax.Array],
    params: Any,
    target: int | jax.Array,
    kind: str = "logit",
) -> ScoreFn:
    """Score of one class per example, from a classifier's logits.

    ``s_b(x) = score(z(x), t_b)`` with ``z = apply_fn(params, x)`` of shape ``[B, K]``,
    ``t_b = target[b]`` and the score one of :data:`SCORES`. The returned function is pure,
    jittable and differentiable in ``x`` and (through the closure) in ``params``.

    Args:
      apply_fn: ``apply_fn(params, x [B, ...]) -> logits [B, K]``.
      params: The model's parameters (any pytree).
      target: A class index for every example (Python int) or one per example (integer
        array ``[B]``; concrete arrays are range-checked, traced ones cannot be).
      kind: One of :data:`SCORES`.

    Returns:
      ``score_fn(x [B, ...]) -> [B]``. Under ``jit`` a traced ``target`` array cannot be
      range-checked: an example whose target lies outside ``[0, K)`` scores NaN, never the
      score of another class.

    Raises:
      ValueError: Unknown ``kind``, a bad ``target``; when called, logits not ``[B, K]``, a
        ``target`` array whose length is not ``B`` or (concrete) a target outside ``[0, K)``.

    References:
      Simonyan, Vedaldi, Zisserman, "Deep inside convolutional networks: visualising image
      classification models and saliency maps", ICLR Workshop 2014 (class-score saliency).
    """
    checks.one_of("kind", kind, SCORES)
    return _ClassScore(apply_fn, params, check_target(target), kind)


class _ClassScore:
    """The score function :func:`class_score` returns; it also scores stacked copies of a
    batch as one batch of the model (see :func:`scores_of_copies`)."""

    def __init__(
        self,
        apply_fn: Callable[[Any, jax.Array], jax.Array],
        params: Any,
        target: int | jax.Array,
        kind: str,
    ) -> None:
        self.apply_fn, self.params, self.target, self.kind = apply_fn, params, target, kind

    def _scores(self, x: jax.Array, copies: int) -> jax.Array:
        """Scores of ``x [copies·B, ...]``, copy-major; the target repeats per copy."""
        logits = self.apply_fn(self.params, x)
        if logits.ndim != 2 or logits.shape[0] != x.shape[0]:
            raise ValueError(
                f"apply_fn must return logits [B, K] with B = {x.shape[0]}, "
                f"got shape {logits.shape}"
            )
        t = target_labels(self.target, x.shape[0] // copies, logits.shape[1])
        return score_of_logits(logits, t if copies == 1 else jnp.tile(t, copies), self.kind)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self._scores(x, 1)

    def copies(self, z: jax.Array) -> jax.Array:
        n, b = z.shape[:2]
        return self._scores(z.reshape(n * b, *z.shape[2:]), n).reshape(n, b)


def scores_of_copies(score_fn: ScoreFn, z: jax.Array) -> jax.Array:
    """``score_fn`` of each copy of a batch: ``z [n, B, ...] -> [n, B]``, ``out[i] =
    score_fn(z[i])`` (each checked to be ``[B]``).

    A :func:`class_score` evaluates the ``n·B`` inputs as one batch of its model; any other
    score function is ``vmap``-ed over the copies. The values are the same (examples never
    interact); the folded batch is what the model was written for, and it can be much
    faster: XLA:CPU (jaxlib 0.10) runs the bundled CNN's forward pass on ``[n·B, H, W, C]``
    as one YNNPACK fusion about 2× faster than the vmapped ``[n, B, H, W, C]`` one.
    """
    if isinstance(score_fn, _ClassScore):
        return score_fn.copies(z)
    return jax.vmap(lambda zi: checked_score(score_fn, zi))(z)
