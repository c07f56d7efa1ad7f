"""Optimizers and learning-rate schedules from a config."""

from __future__ import annotations

import optax

__all__ = ["OPTIMIZERS", "SCHEDULES", "make_optimizer", "make_schedule"]

OPTIMIZERS = ("sgd", "momentum", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "warmup_cosine")


def make_schedule(
    name: str, *, learning_rate: float, num_steps: int, warmup_steps: int = 0
) -> optax.Schedule:
    """A learning-rate schedule by name (``constant``, ``cosine``, ``warmup_cosine``)."""
    if not learning_rate > 0:
        raise ValueError(f"learning_rate must be > 0, got {learning_rate}")
    if name == "constant":
        return optax.constant_schedule(learning_rate)
    if name == "cosine":
        return optax.cosine_decay_schedule(learning_rate, decay_steps=max(num_steps, 1))
    if name == "warmup_cosine":
        if not 0 <= warmup_steps < num_steps:
            raise ValueError(f"warmup_steps must be in [0, num_steps), got {warmup_steps}")
        return optax.warmup_cosine_decay_schedule(
            0.0, learning_rate, warmup_steps=warmup_steps, decay_steps=num_steps
        )
    raise ValueError(f"unknown schedule {name!r}; expected one of {', '.join(SCHEDULES)}")


def make_optimizer(
    name: str,
    schedule: optax.Schedule,
    *,
    weight_decay: float = 0.0,
    momentum: float = 0.9,
    grad_clip_norm: float | None = None,
) -> optax.GradientTransformation:
    """An optax chain: optional global-norm clipping, then the named optimizer.

    ``weight_decay`` is decoupled for ``adamw`` and added to the gradient (L2) otherwise.
    """
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
    if grad_clip_norm is not None and not grad_clip_norm > 0:
        raise ValueError(f"grad_clip_norm must be > 0 or None, got {grad_clip_norm}")
    if name == "sgd":
        opt = optax.sgd(schedule)
    elif name == "momentum":
        opt = optax.sgd(schedule, momentum=momentum)
    elif name == "adam":
        opt = optax.adam(schedule)
    elif name == "adamw":
        opt = optax.adamw(schedule, weight_decay=weight_decay)
    else:
        raise ValueError(f"unknown optimizer {name!r}; expected one of {', '.join(OPTIMIZERS)}")
    parts = []
    if grad_clip_norm is not None:
        parts.append(optax.clip_by_global_norm(grad_clip_norm))
    if weight_decay and name != "adamw":
        parts.append(optax.add_decayed_weights(weight_decay))
    return optax.chain(*parts, opt)
