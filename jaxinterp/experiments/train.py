"""The training job behind ``jaxinterp train``: data, model, penalties, loop, checkpoints."""

from __future__ import annotations

import functools
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh

from jaxinterp import data, training
from jaxinterp.core import checks
from jaxinterp.data import batching
from jaxinterp.experiments import defaults
from jaxinterp.experiments.config_io import config_to_dict
from jaxinterp.experiments.jitting import jit_few_runs
from jaxinterp.experiments.restore import read_config_json
from jaxinterp.experiments.setup import (
    eval_step_for,
    model_from_config,
    run_keys,
    train_step_from_config,
)
from jaxinterp.training import parallel
from jaxinterp.training.errors import warn

__all__ = ["RESUMABLE_FIELDS", "evaluate", "train_and_evaluate"]

# Fields a restarted run may change without invalidating the checkpoints of the workdir.
# ``num_steps`` is checked on its own (see _check_num_steps).
RESUMABLE_FIELDS = (
    "num_steps",
    "log_every",
    "eval_every",
    "checkpoint_every",
    "keep_checkpoints",
    "tensorboard",
    "data_dir",
    "num_devices",
    "distributed",
)


@functools.lru_cache(maxsize=16)
def _init_fn(init: Callable) -> Callable:
    """``init`` jitted once per model function: configs of one architecture share the
    :class:`~jaxinterp.models.Model` (:func:`model_from_config`), so the models of a study
    compile their initialisation once, not once each (about 0.9 s each on the study's CNN)."""
    return jit_few_runs(init)  # run once per model: compiled lighter


def _check_config(c: ml_collections.ConfigDict) -> None:
    defaults.check_config(c)  # seed, keep_checkpoints, the loss weights
    for name in ("batch_size", "eval_batch_size", "num_steps", "log_every", "checkpoint_every"):
        if not (isinstance(c[name], int) and c[name] > 0):
            raise ValueError(f"config.{name} must be a positive integer, got {c[name]!r}")
    if c.eval_every < 0:
        raise ValueError(f"config.eval_every must be >= 0 (0: only at the end), got {c.eval_every}")
    # Non-finite hyperparameters would train to a non-finite state: refuse them up front.
    checks.positive("config.learning_rate", c.learning_rate)
    for name in ("weight_decay", "momentum", "grad_clip_norm", "beta"):
        if name in c:
            checks.real(f"config.{name}", c[name])
    for name, spec in c.penalties.items():
        if isinstance(spec, ml_collections.ConfigDict) and "weight" in spec:
            checks.real(f"config.penalties.{name}.weight", spec.weight)
    tensorboard = c.get("tensorboard", False)
    if not isinstance(tensorboard, bool):
        raise TypeError(f"config.tensorboard must be True or False, got {tensorboard!r}")
    if tensorboard:  # the optional extra, checked before anything is written
        training.tensorboard_summary_writer("config.tensorboard=True")


def _check_resume(workdir: str, config: dict[str, Any]) -> dict[str, Any] | None:
    """The saved config of ``workdir`` (``None`` if new), refusing fields a resume can't change."""
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        return None
    saved = read_config_json(path, hint="; restore it or use a new --workdir")
    changed = [
        k
        for k in sorted(set(saved) | set(config))
        if k not in RESUMABLE_FIELDS and saved.get(k) != config.get(k)
    ]
    if changed:
        diffs = ", ".join(f"{k}: {saved.get(k)!r} -> {config.get(k)!r}" for k in changed)
        raise ValueError(
            f"workdir {workdir} holds a run with another config ({diffs}); use a new --workdir"
        )
    return saved


def _check_num_steps(
    workdir: str, config: ml_collections.ConfigDict, saved: dict[str, Any] | None, latest: int
) -> str | None:
    """Whether a resume may change ``num_steps``; a message when there is nothing to do.

    The cosine schedules depend on ``num_steps``, so an interrupted run resumed with another
    one would not continue the run it was: refused. A finished run may be extended (with a
    warning), and a run already at or past the new ``num_steps`` is left as it is.
    """
    before = saved.get("num_steps") if saved else None
    if before is None or before == config.num_steps or not latest:
        return None
    if latest >= config.num_steps:
        return (
            f"workdir {workdir} already reached step {latest}, past --config.num_steps="
            f"{config.num_steps}; nothing changed"
        )
    if config.schedule == "constant":
        return None
    if latest < before:
        raise ValueError(
            f"workdir {workdir} holds an unfinished run of num_steps={before} (at step "
            f"{latest}); its {config.schedule} schedule depends on num_steps, so resume it "
            f"with --config.num_steps={before} or use a new --workdir"
        )
    warn(
        f"extending the finished {before}-step run in {workdir} to "
        f"{config.num_steps} steps; the {config.schedule} schedule is recomputed for "
        f"{config.num_steps} steps, so this is not a straight {config.num_steps}-step run"
    )
    return None


def _final_eval(path: str, num_steps: int) -> dict[str, float] | None:
    """The final eval of a ``num_steps`` run from ``metrics.jsonl`` at ``path`` (a whole line
    of step ``num_steps`` with ``eval/`` metrics: the job's last write), as ``{"accuracy":
    ..., "loss": ...}``; ``None`` if there is none."""
    if not os.path.exists(path):
        return None
    with open(path, errors="replace") as f:
        for line in f:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if (
                line.endswith("\n")
                and isinstance(record, dict)
                and record.get("step") == num_steps
                and any(str(k).startswith("eval/") for k in record)
            ):
                return {k[5:]: v for k, v in record.items() if str(k).startswith("eval/")}
    return None


def _local_batch(split: data.Split, indices: np.ndarray) -> dict[str, np.ndarray]:
    local = batching.local_slice(
        indices, process_index=jax.process_index(), process_count=jax.process_count()
    )
    return {"image": split.images[local], "label": split.labels[local]}


def evaluate(
    eval_step: Callable[[Any, dict[str, jax.Array]], dict[str, jax.Array]],
    params: Any,
    split: data.Split,
    batch_size: int,
    mesh: Mesh,
) -> dict[str, float]:
    """Accuracy and mean loss of ``params`` on every example of ``split``."""
    sums = None
    for idx, mask in batching.eval_batches(len(split), batch_size):
        local = _local_batch(split, idx)
        local["mask"] = batching.local_slice(
            mask, process_index=jax.process_index(), process_count=jax.process_count()
        )
        out = eval_step(params, parallel.shard_batch(local, mesh))
        sums = out if sums is None else jax.tree.map(lambda a, b: a + b, sums, out)
    sums = jax.device_get(sums)
    return {
        "accuracy": float(sums["correct"] / sums["count"]),
        "loss": float(sums["loss"] / sums["count"]),
    }


def _kept(last_good: int | None) -> str:
    if last_good is None:
        return "stopped, no checkpoint was written"
    return f"stopped, the last good checkpoint (step {last_good}) is kept"


def _pull(pending: list[tuple[int, dict]], last_good: int | None) -> list[tuple[int, dict]]:
    """Fetches per-step metrics and stops the run at the first non-finite one."""
    fetched = [(s, jax.device_get(m)) for s, m in pending]
    for s, m in fetched:
        bad = [k for k, v in m.items() if not np.all(np.isfinite(v))]
        if bad:
            raise training.NonFiniteError(
                f"non-finite {', '.join(bad)} at step {s}; {_kept(last_good)}"
            )
    return fetched


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
    """Trains ``config`` in ``workdir``, resuming from its latest checkpoint if any.

    Returns:
      ``{"step": ..., "eval": {"accuracy", "loss"}, "train": {...last logged means}}``; when
      the workdir already reached ``config.num_steps`` of a longer run, or already finished
      this run (its checkpoint of step ``config.num_steps`` reads back and ``metrics.jsonl``
      holds its final eval), nothing is done and the result is ``{"step": reached, "eval":
      {} (a longer run) or the logged final eval (this run), "train": {}, "note": message}``.

    Raises:
      ValueError / TypeError / FileNotFoundError on bad configuration or data;
      :class:`jaxinterp.training.NonFiniteError` when a loss becomes NaN/Inf (the checkpoints
      written before stay; the non-finite state is never saved).
    """
    _check_config(config)
    if config.distributed.enabled:
        d = config.distributed
        parallel.initialize_distributed(
            d.coordinator_address or None,
            d.num_processes or None,
            None if d.process_id < 0 else d.process_id,
        )
    is_main = jax.process_index() == 0
    mesh = parallel.make_data_mesh(config.num_devices or None)
    for name in ("batch_size", "eval_batch_size"):
        if config[name] % mesh.size or config[name] % jax.process_count():
            raise ValueError(
                f"config.{name}={config[name]} must be divisible by the "
                f"{mesh.size} devices and {jax.process_count()} processes (or set "
                f"--config.num_devices to a divisor of it)"
            )

    train = data.load_split(config.dataset, "train", data_dir=config.data_dir or None)
    test = data.load_split(config.dataset, "test", data_dir=config.data_dir or None)
    model = model_from_config(config, train.num_classes)
    init_key, run_key = run_keys(config)
    sample = np.asarray(train.images[:1])
    params = _init_fn(model.init)(init_key, sample)
    out = jax.eval_shape(model.apply_fn, params, sample)
    if out.shape != (1, train.num_classes):
        raise ValueError(
            f"model {config.model!r} maps input {sample.shape} to {out.shape}, "
            f"expected (1, {train.num_classes})"
        )

    step_fn, tx = train_step_from_config(
        config,
        mesh,
        apply_fn=model.apply_fn,
        features_fn=model.features_fn,
        layer_fn=model.layer_fn,
    )
    eval_fn = eval_step_for(model.apply_fn, mesh)

    # The batch size against the data: the last check that needs no workdir. Nothing is
    # written to the workdir before here, so a rejected config leaves it untouched.
    batching.train_batch_indices(
        0, num_examples=len(train), batch_size=config.batch_size, seed=config.seed
    )
    os.makedirs(workdir, exist_ok=True)
    # One writer: a second trainer on this workdir stops here (see training.WorkdirLock).
    lock = training.WorkdirLock(workdir).acquire() if is_main else None
    writer: training.MetricsWriter | None = None
    try:
        resolved = config_to_dict(config)
        saved = _check_resume(workdir, resolved)
        ckpt = training.Checkpointer(
            os.path.join(workdir, "checkpoints"), max_to_keep=config.keep_checkpoints
        )
        state = training.replicate(training.create_train_state(params, tx, key=run_key), mesh)
        latest, verified = ckpt.latest_step() or 0, None
        held: list[str] = []  # lines about bad checkpoints, from the read-only check
        if saved is not None and latest and saved.get("num_steps") != config.num_steps:
            # What the run reached decides whether a new num_steps is allowed: the newest
            # checkpoint that reads back, found without moving anything (nothing may change).
            # Its lines about bad checkpoints are held: if the run goes on, the restore below
            # reports each of them once, as moved aside.
            found, read = ckpt.restore_latest_good(state, report=held.append, move_aside=False)
            if found == latest:  # nothing passed over: this is the state to resume from
                verified = (found, read)
            latest = found or 0
        try:
            done_note = _check_num_steps(workdir, config, saved, latest)
        except Exception:  # refused: the checkpoints passed over explain the step it names
            for line in held:
                warn(line)
            raise
        if done_note is not None:  # nothing to do: the workdir is left exactly as it is
            for line in held:
                warn(line)
            ckpt.close()
            return {"step": latest, "eval": {}, "train": {}, "note": done_note}
        # Bad checkpoints passed over above are moved aside here (and reported, once).
        restored, state = verified or ckpt.restore_latest_good(state, report=warn)
        start = restored or 0
        metrics_path = os.path.join(workdir, "metrics.jsonl")
        if saved is not None and start >= config.num_steps:
            # A run killed during its final eval has no final eval line: it is written below.
            final_eval = _final_eval(metrics_path, config.num_steps)
            if final_eval is not None:
                ckpt.close()
                note = f"workdir {workdir} already finished its {start} steps; nothing changed"
                return {"step": start, "eval": final_eval, "train": {}, "note": note}
        if is_main:
            training.write_json_atomic(os.path.join(workdir, "config.json"), resolved)
        writer = training.MetricsWriter(
            metrics_path,
            resume_step=start,
            enabled=is_main,
            tensorboard_dir=(
                os.path.join(workdir, "tensorboard") if config.get("tensorboard", False) else None
            ),
        )

        bar = training.progress_bar(config.num_steps, start, enabled=is_main)
        pending: list[tuple[int, dict]] = []
        last_train: dict[str, float] = {}
        t0 = time.perf_counter()
        checked = start  # the last step whose state was checked finite
        for step in range(start, config.num_steps):
            idx = batching.train_batch_indices(
                step, num_examples=len(train), batch_size=config.batch_size, seed=config.seed
            )
            state, metrics = step_fn(state, parallel.shard_batch(_local_batch(train, idx), mesh))
            pending.append((step + 1, metrics))
            done = step + 1
            bar.update(1)
            is_log = done % config.log_every == 0 or done == config.num_steps
            is_ckpt = done % config.checkpoint_every == 0 or done == config.num_steps
            if is_log or is_ckpt:
                fetched = _pull(pending, ckpt.latest_step())
                pending = []
                last_train = {k: float(np.mean([m[k] for _, m in fetched])) for k in fetched[-1][1]}
            if is_log:
                rate = (done - start) / (time.perf_counter() - t0)
                writer.write(
                    done, {f"train/{k}": v for k, v in last_train.items()} | {"steps_per_sec": rate}
                )
                bar.set_postfix(
                    loss=f"{last_train['loss']:.4f}", acc=f"{last_train['accuracy']:.3f}"
                )
                if is_main and not sys.stderr.isatty():
                    print(
                        f"step {done}/{config.num_steps} loss {last_train['loss']:.4f} "
                        f"acc {last_train['accuracy']:.3f} ({rate:.1f} steps/s)",
                        file=sys.stderr,
                        flush=True,
                    )
            if is_ckpt:
                # Only finite state is saved: params and optimizer state, checked on device.
                if not training.all_finite((state.params, state.opt_state)):
                    when = f"at step {done}" if checked == done - 1 else f"by step {done}"
                    raise training.NonFiniteError(
                        f"the update became non-finite {when} (params or optimizer state); "
                        f"{_kept(ckpt.latest_step())}"
                    )
                ckpt.save(done, state)
                checked = done
            if config.eval_every and done % config.eval_every == 0 and done != config.num_steps:
                writer.write(
                    done,
                    {
                        f"eval/{k}": v
                        for k, v in evaluate(
                            eval_fn, state.params, test, config.eval_batch_size, mesh
                        ).items()
                    },
                )
        bar.close()
        final_eval = evaluate(eval_fn, state.params, test, config.eval_batch_size, mesh)
        writer.write(config.num_steps, {f"eval/{k}": v for k, v in final_eval.items()})
        ckpt.close()
        return {"step": config.num_steps, "eval": final_eval, "train": last_train}
    finally:
        if writer is not None:
            writer.close()
        if lock is not None:
            lock.release()
