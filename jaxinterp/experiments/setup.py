"""Building a run's model, optimizer and jitted train and eval steps from its config (shared
by train, restore and claim 2's timing of the train step)."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable

import jax
import ml_collections
import optax
from jax.sharding import Mesh

from jaxinterp import models, training
from jaxinterp.experiments.config_io import config_to_dict
from jaxinterp.experiments.penalties import build_penalty

__all__ = [
    "eval_step_for",
    "model_from_config",
    "optimizer_from_config",
    "run_keys",
    "train_step_from_config",
]


def model_from_config(config: ml_collections.ConfigDict, num_classes: int) -> models.Model:
    """The model named by ``config.model`` with the config's activation and kwargs.

    Configs with the same architecture get the same :class:`~jaxinterp.models.Model` object,
    so functions jitted with its ``apply_fn`` as a static argument compile once for all of
    them (e.g. the models of one ``reproduce`` study).
    """
    kwargs = tuple(
        sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in config.model_kwargs.items())
    )
    return _model(config.model, num_classes, config.activation, float(config.beta), kwargs)


@functools.lru_cache(maxsize=64)
def _model(
    name: str, num_classes: int, activation: str, beta: float, kwargs: tuple
) -> models.Model:
    return models.get_model(
        name, num_classes=num_classes, activation=activation, beta=beta, **dict(kwargs)
    )


def optimizer_from_config(
    config: ml_collections.ConfigDict,
) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """``(tx, schedule)`` from the config's optimizer, schedule and clipping fields."""
    schedule = training.make_schedule(
        config.schedule,
        learning_rate=config.learning_rate,
        num_steps=config.num_steps,
        warmup_steps=config.warmup_steps,
    )
    tx = training.make_optimizer(
        config.optimizer,
        schedule,
        weight_decay=config.weight_decay,
        momentum=config.momentum,
        grad_clip_norm=config.grad_clip_norm or None,
    )
    return tx, schedule


def run_keys(config: ml_collections.ConfigDict) -> tuple[jax.Array, jax.Array]:
    """``(init_key, run_key)`` of a run: params init and the train state's base key."""
    init_key, run_key = jax.random.split(jax.random.PRNGKey(config.seed))
    return init_key, run_key


_MAX_STEPS = 32
_steps: dict[tuple, tuple[Callable, optax.GradientTransformation]] = {}


def train_step_from_config(
    config: ml_collections.ConfigDict,
    mesh: Mesh,
    *,
    apply_fn: Callable,
    features_fn: Callable,
    layer_fn: Callable | None = None,
) -> tuple[Callable, optax.GradientTransformation]:
    """``(step, tx)``: the jitted train step of ``config`` for a model's functions on ``mesh``
    (:func:`jaxinterp.training.jit_train_step`: ``step(state, batch) -> (state, metrics)``,
    the state donated) and its optimizer.

    The same function is returned for the same model functions, mesh and config up to its
    seed (which the step does not read), so a second caller in the process, such as claim
    2's timing of the step a model was trained with, reuses the compiled code (the last 32
    kept). Any other difference in the config gets a step of its own.
    """
    fields = {k: v for k, v in config_to_dict(config).items() if k != "seed"}
    key = (apply_fn, features_fn, layer_fn, mesh, json.dumps(fields, sort_keys=True))
    if key not in _steps:
        tx, schedule = optimizer_from_config(config)
        penalty = build_penalty(
            config.penalties, context={"features_fn": features_fn, "layer_fn": layer_fn}
        )
        step = training.make_train_step(
            apply_fn, tx, penalty=penalty, schedule=schedule, ce_weight=config.ce_weight
        )
        while len(_steps) >= _MAX_STEPS:
            del _steps[next(iter(_steps))]
        _steps[key] = (training.jit_train_step(step, mesh), tx)
    return _steps[key]


@functools.lru_cache(maxsize=_MAX_STEPS)
def eval_step_for(apply_fn: Callable, mesh: Mesh) -> Callable:
    """The jitted eval step of a model function on ``mesh``
    (:func:`jaxinterp.training.jit_eval_step`: ``eval_step(params, batch) -> sums``), one per
    function and mesh, so that the models of one architecture (the study's six) compile it once
    rather than once each."""
    return training.jit_eval_step(training.make_eval_step(apply_fn), mesh)
