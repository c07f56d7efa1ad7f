"""The call shapes every subpackage shares (``typing.Protocol``s, checked statically).

=============  =======================================================================
``ApplyFn``    ``apply_fn(params, x [B, ...]) -> logits [B, K]``, examples independent
``ScoreFn``    ``score_fn(x [B, ...]) -> [B]``: one scalar per example
``Explainer``  ``explain(apply_fn, params, x, y, *, key=None) -> attribution like x``
``Attack``     ``attack(apply_fn, params, x, y, *, key=None) -> x_adv`` (a search-type
               attack returns a NamedTuple whose first field is ``x_adv``)
``Penalty``    ``penalty(apply_fn, params, x, y, *, key) -> (value, diagnostics)``
=============  =======================================================================

Factories in the optax style close over hyperparameters and return one of these; ``y`` is
``[B]`` integer labels (the class explained, attacked or scored).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import jax

__all__ = ["ApplyFn", "Attack", "AttributionFn", "Explainer", "Penalty", "ScoreFn"]

ScoreFn = Callable[[jax.Array], jax.Array]
"""``score_fn(x [B, ...]) -> [B]``: one scalar per example, examples never interact."""

AttributionFn = Callable[[ScoreFn, jax.Array], jax.Array]
"""A score-function building block: ``method(score_fn, x [B, ...]) -> [B, ...]``."""


class ApplyFn(Protocol):
    """``apply_fn(params, x [B, ...]) -> logits [B, K]``."""

    def __call__(self, params: Any, x: jax.Array, /) -> jax.Array: ...


class Explainer(Protocol):
    """``explain(apply_fn, params, x [B, ...], y [B], *, key=None) -> [B, ...]`` like ``x``."""

    def __call__(
        self,
        apply_fn: ApplyFn,
        params: Any,
        x: jax.Array,
        y: jax.Array,
        /,
        *,
        key: jax.Array | None = None,
    ) -> jax.Array: ...


class Attack(Protocol):
    """``attack(apply_fn, params, x [B, ...], y [B], *, key=None) -> x_adv`` (or a
    NamedTuple whose first field is ``x_adv``)."""

    def __call__(
        self,
        apply_fn: ApplyFn,
        params: Any,
        x: jax.Array,
        y: jax.Array,
        /,
        *,
        key: jax.Array | None = None,
    ) -> Any: ...


class Penalty(Protocol):
    """``penalty(apply_fn, params, x [B, ...], y [B], *, key) -> (scalar, {name: scalar})``."""

    def __call__(
        self, apply_fn: ApplyFn, params: Any, x: jax.Array, y: jax.Array, /, *, key: jax.Array
    ) -> tuple[jax.Array, dict[str, jax.Array]]: ...
