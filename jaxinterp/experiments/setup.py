"""Building a run's model and optimizer from its config (shared by train and restore)."""

from __future__ import annotations

import functools

import jax
import ml_collections
import optax

from jaxinterp import models, training

__all__ = ["model_from_config", "optimizer_from_config", "run_keys"]


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
