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
from typing import Any, Protocol, TypeVar

import jax

__all__ = [
    "SHARED_LOGITS",
    "ApplyFn",
    "Attack",
    "AttributionFn",
    "Explainer",
    "ModelCall",
    "Penalty",
    "ScoreFn",
]

T_co = TypeVar("T_co", covariant=True)

ScoreFn = Callable[[jax.Array], jax.Array]
"""``score_fn(x [B, ...]) -> [B]``: one scalar per example, examples never interact."""

AttributionFn = Callable[[ScoreFn, jax.Array], jax.Array]
"""A score-function building block: ``method(score_fn, x [B, ...]) -> [B, ...]``."""


class ApplyFn(Protocol):
    """``apply_fn(params, x [B, ...]) -> logits [B, K]``."""

    def __call__(self, params: Any, x: jax.Array, /) -> jax.Array: ...


class ModelCall(Protocol[T_co]):
    """``fn(apply_fn, params, x [B, ...], y [B], *, key=None) -> T``: the call shared by
    explainers and attacks."""

    def __call__(
        self,
        apply_fn: ApplyFn,
        params: Any,
        x: jax.Array,
        y: jax.Array,
        /,
        *,
        key: jax.Array | None = None,
    ) -> T_co: ...


Explainer = ModelCall[jax.Array]
"""``explain(apply_fn, params, x [B, ...], y [B], *, key=None) -> [B, ...]`` like ``x``."""

Attack = ModelCall[Any]
"""``attack(apply_fn, params, x [B, ...], y [B], *, key=None) -> x_adv`` (or a NamedTuple
whose first field is ``x_adv``)."""


class Penalty(Protocol):
    """``penalty(apply_fn, params, x [B, ...], y [B], *, key) -> (scalar, {name: scalar})``.

    A diagnostic named :data:`SHARED_LOGITS` is not a metric: it is the logits ``[B, K]`` at
    ``x`` from the penalty's own forward pass, params attached, from which the train step
    computes its cross-entropy instead of running a forward pass of its own.
    """

    def __call__(
        self, apply_fn: ApplyFn, params: Any, x: jax.Array, y: jax.Array, /, *, key: jax.Array
    ) -> tuple[jax.Array, dict[str, jax.Array]]: ...


SHARED_LOGITS = "shared_logits"
"""The diagnostic under which a penalty returns the logits ``[B, K]`` at the batch ``x``
from its own forward pass, params attached (not a metric: an array, not a scalar).

Penalties that run the model at ``x`` with params attached offer them: the input-gradient
penalties (the point ``x`` itself, unless detached in ``fast`` mode), the Hessian norm
(``autodiff``), activation sensitivity given ``layer_fn``, and TRADES.
:func:`~jaxinterp.regularizers.combine` passes the first penalty's on unprefixed and
:func:`~jaxinterp.training.make_train_step` computes its cross-entropy from them instead of
a forward pass of its own: reverse mode then accumulates the loss's cotangent into the
penalty's backward pass through the model, so one backward pass serves both (same values
and gradients; on the CNN, batch 128, 2-core Zen 4: the input-gradient norm step 443 ->
328 ms, the Hessian norm's 712-725 -> 653-699 ms, activation sensitivity's 414-422 ->
339-349 ms)."""
