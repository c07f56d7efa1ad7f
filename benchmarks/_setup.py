"""Shared set-up: the benchmarked models, random batches and the command-line basics."""

from __future__ import annotations

import argparse
from typing import Any

import jax
import numpy as np
import optax

from jaxinterp import models, training

__all__ = [
    "BETA",
    "NUM_CLASSES",
    "Setup",
    "add_common_args",
    "parse_shape",
    "random_batch",
    "resolve",
]

BETA = 3.0
"""Softplus sharpness of every benchmarked model (Joo et al.'s reference setting)."""

NUM_CLASSES = 10


def parse_shape(text: str) -> tuple[int, ...]:
    """``"32,32,3"`` -> ``(32, 32, 3)``."""
    return tuple(int(s) for s in text.split(","))


def random_batch(batch_size: int, input_shape: tuple[int, ...], seed: int = 0) -> dict:
    """``image`` uniform in ``[0, 1)`` (float32 ``[B, *input_shape]``), ``label`` int32 ``[B]``."""
    rng = np.random.default_rng(seed)
    return {
        "image": rng.uniform(size=(batch_size, *input_shape)).astype(np.float32),
        "label": rng.integers(0, NUM_CLASSES, size=batch_size).astype(np.int32),
    }


class Setup:
    """A model (softplus unless told), its params, an Adam optimizer, a train state and a
    random batch."""

    def __init__(
        self,
        model_name: str,
        batch_size: int,
        input_shape: tuple[int, ...],
        activation: str = "softplus",
    ):
        self.model_name = model_name
        self.activation = activation
        self.model = models.get_model(
            model_name, num_classes=NUM_CLASSES, activation=activation, beta=BETA
        )
        self.batch = random_batch(batch_size, input_shape)
        self.params = jax.jit(self.model.init)(jax.random.PRNGKey(0), self.batch["image"][:1])
        self.tx = optax.adam(1e-3)
        self.state = training.create_train_state(self.params, self.tx, key=jax.random.PRNGKey(1))

    def describe(self) -> dict[str, Any]:
        """The fields every result row carries."""
        image = self.batch["image"]
        return {
            "model": self.model_name,
            "activation": self.activation,
            "batch_size": int(image.shape[0]),
            "input_shape": list(image.shape[1:]),
        }


def add_common_args(p: argparse.ArgumentParser) -> None:
    """``--input-shape``, ``--repeats``, ``--warmup``, ``--quick`` and ``--json``.

    Defaults are ``None`` so that ``--quick`` can fill in tiny ones; explicit flags win.
    """
    p.add_argument("--input-shape", default=None, help="H,W,C of one example (default 32,32,3)")
    p.add_argument("--repeats", type=int, default=None, help="timed calls (median reported)")
    p.add_argument("--warmup", type=int, default=None, help="untimed calls after compiling")
    p.add_argument(
        "--quick", action="store_true", help="tiny shapes, 1 repeat: checks the code, not a timing"
    )
    p.add_argument("--json", default=None, help="write the machine and the results here")


def resolve(value: Any, normal: Any, quick: Any, is_quick: bool) -> Any:
    """An explicit flag, else the quick default under ``--quick``, else the normal default."""
    if value is not None:
        return value
    return quick if is_quick else normal
