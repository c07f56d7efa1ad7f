"""Loading a trained model back from a ``jaxinterp train`` workdir."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from typing import Any

import jax
import ml_collections
import numpy as np

from jaxinterp import data, models, training
from jaxinterp.experiments.setup import model_from_config, optimizer_from_config, run_keys
from jaxinterp.training.errors import first_line, warn

__all__ = ["Trained", "load_trained", "read_config_json", "state_target"]


def read_config_json(path: str, *, hint: str = "") -> dict[str, Any]:
    """The config dict saved in a workdir's ``config.json`` at ``path``.

    Args:
      path: the file (it must exist).
      hint: appended to the error message (e.g. what to do instead).

    Raises:
      ValueError: the file does not read as a JSON object (truncated, not JSON, not UTF-8);
        the one-line message names the file.
    """
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except ValueError as e:  # json.JSONDecodeError and UnicodeDecodeError
        raise ValueError(
            f"{path} is unreadable, corrupt or not JSON ({first_line(e)}){hint}"
        ) from e
    if not isinstance(config, dict):
        raise ValueError(
            f"{path} is corrupt: it holds a {type(config).__name__}, not a config{hint}"
        )
    return config


@dataclasses.dataclass(frozen=True)
class Trained:
    """A trained model: ``model.apply_fn(params, x)`` gives its logits."""

    model: models.Model
    params: Any
    config: ml_collections.ConfigDict
    step: int


def state_target(config: ml_collections.ConfigDict) -> tuple[models.Model, Any]:
    """The model of a run's ``config`` and the shape of its train state (one device,
    replicated), the target a checkpoint of that run is restored into."""
    info = data.load_split(config.dataset, "test", data_dir=config.data_dir or None)
    model = model_from_config(config, info.num_classes)
    init_key, run_key = run_keys(config)
    params = jax.eval_shape(model.init, init_key, np.asarray(info.images[:1]))
    tx, _ = optimizer_from_config(config)
    target = jax.eval_shape(lambda p: training.create_train_state(p, tx, key=run_key), params)
    sharding = training.replicated_sharding(training.make_data_mesh(1))
    target = jax.tree.map(
        lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding), target
    )
    return model, target


def load_trained(
    workdir: str,
    *,
    step: int | None = None,
    report: Callable[[str], None] | None = warn,
) -> Trained:
    """Rebuilds the model of ``workdir/config.json`` and restores its checkpoint.

    Without ``step``, the newest checkpoint that reads back is used, as a resumed
    ``jaxinterp train`` does (see :meth:`jaxinterp.training.Checkpointer.restore_latest_good`),
    except that nothing in the workdir is changed: each newer checkpoint that does not read
    back is reported in one line to ``report`` and left in place (a later ``train`` moves it
    aside).

    Args:
      workdir: a directory written by ``jaxinterp train``.
      step: which checkpoint (default: the newest good one).
      report: called with one line per checkpoint passed over (default: a warning on stderr).

    Raises:
      FileNotFoundError: no config.json, no checkpoint, no checkpoint ``step``, or none that
        reads back (one line naming the directory).
      ValueError: config.json is corrupt, or checkpoint ``step`` does not read back.
    """
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{workdir} holds no config.json; is it a jaxinterp workdir?")
    config = ml_collections.ConfigDict(read_config_json(path))
    model, target = state_target(config)
    directory = os.path.join(workdir, "checkpoints")
    if not os.path.isdir(directory):  # (the Checkpointer would create it)
        raise FileNotFoundError(f"no checkpoint in {directory}")
    ckpt = training.Checkpointer(directory)
    try:
        if step is None:
            found, state = ckpt.restore_latest_good(target, report=report, move_aside=False)
            if found is None:
                raise FileNotFoundError(f"no checkpoint in {directory}")
            step = found
        elif step not in ckpt.all_steps():
            held = ", ".join(map(str, ckpt.all_steps())) or "none"
            raise FileNotFoundError(f"no checkpoint {step} in {directory} (steps held: {held})")
        else:
            try:
                state = ckpt.restore(target, step)
            except Exception as e:  # any read failure: orbax, tensorstore, json, OS errors
                raise ValueError(
                    f"checkpoint {step} in {directory} does not read back ({first_line(e)[:200]})"
                ) from e
    finally:
        ckpt.close()
    return Trained(model=model, params=state.params, config=config, step=int(step))
