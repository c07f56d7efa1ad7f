"""Loading a trained model back from a ``jaxinterp train`` workdir."""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import jax
import ml_collections
import numpy as np

from jaxinterp import data, models, training
from jaxinterp.experiments.setup import model_from_config, optimizer_from_config, run_keys

__all__ = ["Trained", "load_trained"]


@dataclasses.dataclass(frozen=True)
class Trained:
    """A trained model: ``model.apply_fn(params, x)`` gives its logits."""

    model: models.Model
    params: Any
    config: ml_collections.ConfigDict
    step: int


def load_trained(workdir: str, *, step: int | None = None) -> Trained:
    """Rebuilds the model of ``workdir/config.json`` and restores its checkpoint.

    Args:
      workdir: a directory written by ``jaxinterp train``.
      step: which checkpoint (default: the latest).
    """
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{workdir} holds no config.json; is it a jaxinterp workdir?")
    with open(path) as f:
        config = ml_collections.ConfigDict(json.load(f))
    info = data.load_split(config.dataset, "test", data_dir=config.data_dir or None)
    model = model_from_config(config, info.num_classes)
    init_key, run_key = run_keys(config)
    params = jax.eval_shape(model.init, init_key, np.asarray(info.images[:1]))
    tx, schedule = optimizer_from_config(config)
    target = jax.eval_shape(lambda p: training.create_train_state(p, tx, key=run_key), params)
    mesh = training.make_data_mesh(1)
    sharding = training.replicated_sharding(mesh)
    target = jax.tree.map(
        lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding), target
    )
    ckpt = training.Checkpointer(os.path.join(workdir, "checkpoints"))
    try:
        step = ckpt.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {workdir}/checkpoints")
        state = ckpt.restore(target, step)
    finally:
        ckpt.close()
    return Trained(model=model, params=state.params, config=config, step=int(step))
