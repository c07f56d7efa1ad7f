"""The pure train and eval steps.

``loss = w_ce · mean_b CE(f(x_b), y_b) + combine(...)(apply_fn, params, x, y, key=k_s)`` with
``k_s = fold_in(state.key, state.step)``. Steps are pure functions of ``(state, batch)``;
:func:`jit_train_step` compiles one with the state donated and its shardings fixed, so it
compiles once and runs unchanged on one device, N devices or N processes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from jaxinterp.core.protocols import SHARED_LOGITS
from jaxinterp.training import parallel
from jaxinterp.training.state import TrainState

__all__ = ["cross_entropy", "jit_eval_step", "jit_train_step", "make_eval_step", "make_train_step"]

Batch = dict[str, jax.Array]


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Per-example cross-entropy, ``[B, K], [B] -> [B]``."""
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def make_train_step(
    apply_fn: Callable[[Any, jax.Array], jax.Array],
    tx: optax.GradientTransformation,
    *,
    penalty: Callable[..., tuple[jax.Array, dict[str, jax.Array]]] | None = None,
    schedule: optax.Schedule | None = None,
    ce_weight: float = 1.0,
) -> Callable[[TrainState, Batch], tuple[TrainState, dict[str, jax.Array]]]:
    """Builds ``train_step(state, batch) -> (state, metrics)``.

    Args:
      apply_fn: ``(params, x [B, ...]) -> logits [B, K]``.
      tx: the optimizer.
      penalty: ``(apply_fn, params, x, y, *, key) -> (total, terms)``, e.g. from
        :func:`jaxinterp.regularizers.combine`; ``None`` trains on cross-entropy alone.
      schedule: if given, its value at the step is reported as ``lr``.
      ce_weight: weight of the clean cross-entropy (0 for pure adversarial training).

    Returns:
      A pure step; ``batch`` holds ``image [B, ...]`` and ``label [B]``. ``metrics`` holds
      scalars: ``loss``, ``ce``, ``penalty``, each penalty term, ``accuracy``, ``grad_norm``
      and ``lr``.
    """

    no_ce = isinstance(ce_weight, int | float) and ce_weight == 0

    def loss_fn(
        params: Any, batch: Batch, key: jax.Array
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        x, y = batch["image"], batch["label"]
        reg, terms = (None, {}) if penalty is None else penalty(apply_fn, params, x, y, key=key)
        # The logits at x from the penalty's own forward pass (SHARED_LOGITS): the same
        # values, and the loss's cotangent then joins the penalty's backward pass through the
        # model. Without a cross-entropy to train (ce_weight 0), no backward pass at all.
        terms = dict(terms)
        logits = terms.pop(SHARED_LOGITS, None)
        if logits is None:
            logits = apply_fn(jax.lax.stop_gradient(params) if no_ce else params, x)
            accuracy = jnp.mean(jnp.argmax(logits, -1) == y)
        else:
            # The same values from a forward pass of the step's own, params held constant:
            # XLA merges it with the penalty's, and on CPU it then also merged the penalty's
            # duplicated forward computations (the input-gradient norm and CURE steps of the
            # CNN compiled 3 convolutions fewer with it than with accuracy from `logits`).
            accuracy = jnp.mean(jnp.argmax(apply_fn(jax.lax.stop_gradient(params), x), -1) == y)
        ce = jnp.mean(cross_entropy(logits, y))
        reg = jnp.zeros((), ce.dtype) if reg is None else reg
        return ce_weight * ce + reg, {"ce": ce, "penalty": reg, "accuracy": accuracy, **terms}

    def train_step(state: TrainState, batch: Batch) -> tuple[TrainState, dict[str, jax.Array]]:
        key = jax.random.fold_in(state.key, state.step)
        (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, batch, key)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads), **aux}
        if schedule is not None:
            metrics["lr"] = schedule(state.step)
        new_state = dataclasses.replace(
            state, step=state.step + 1, params=params, opt_state=opt_state
        )
        return new_state, metrics

    return train_step


def make_eval_step(
    apply_fn: Callable[[Any, jax.Array], jax.Array],
) -> Callable[[Any, Batch], dict[str, jax.Array]]:
    """Builds ``eval_step(params, batch) -> sums``; ``batch["mask"]`` marks real examples.

    Returns sums (``count``, ``correct``, ``loss``) so batches merge by addition.
    """

    def eval_step(params: Any, batch: Batch) -> dict[str, jax.Array]:
        logits = apply_fn(params, batch["image"])
        mask = batch["mask"].astype(logits.dtype)
        correct = (jnp.argmax(logits, -1) == batch["label"]).astype(logits.dtype)
        loss = cross_entropy(logits, batch["label"])
        return {
            "count": jnp.sum(mask),
            "correct": jnp.sum(mask * correct),
            "loss": jnp.sum(mask * loss),
        }

    return eval_step


def jit_train_step(step_fn: Callable, mesh: Mesh) -> Callable:
    """Jits a train step: state replicated and donated, batch sharded on ``data``."""
    rep, data = parallel.replicated_sharding(mesh), parallel.batch_sharding(mesh)
    return jax.jit(step_fn, in_shardings=(rep, data), out_shardings=(rep, rep), donate_argnums=0)


def jit_eval_step(eval_fn: Callable, mesh: Mesh) -> Callable:
    """Jits an eval step: params replicated, batch sharded on ``data``."""
    rep, data = parallel.replicated_sharding(mesh), parallel.batch_sharding(mesh)
    return jax.jit(eval_fn, in_shardings=(rep, data), out_shardings=rep)
