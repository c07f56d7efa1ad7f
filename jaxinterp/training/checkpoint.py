"""Atomic, keep-N checkpoints of the train state with orbax, and resume from the latest.

Orbax writes each checkpoint to a temporary directory and renames it when complete, so a
run killed at any moment leaves only whole checkpoints behind; a restart restores the
latest one with the shardings of the freshly built state. Each checkpoint also holds
``jaxinterp_sums.json``, float64 checksums of every leaf, compared on restore: a checkpoint
whose arrays read back different from what was saved counts as unreadable.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from jaxinterp.training.logging import write_json_atomic

__all__ = ["Checkpointer", "all_finite"]


@jax.jit
def _all_finite(tree: Any) -> jax.Array:
    leaves = [
        jnp.all(jnp.isfinite(x))
        for x in jax.tree.leaves(tree)
        if jnp.issubdtype(jnp.result_type(x), jnp.inexact)
    ]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def all_finite(tree: Any) -> bool:
    """Whether every floating-point leaf of ``tree`` is finite (one fused check on device)."""
    return bool(_all_finite(tree))


SUMS_FILE = "jaxinterp_sums.json"


def checksums(tree: Any) -> dict[str, list[float]]:
    """Per leaf: the float64 sum of its values and of its values weighted by position."""
    out = {}
    for path, x in jax.tree_util.tree_flatten_with_path(tree)[0]:
        a = np.asarray(jax.device_get(x), dtype=np.float64).ravel()
        w = np.arange(1, a.size + 1, dtype=np.float64) / max(a.size, 1)
        out[jax.tree_util.keystr(path)] = [float(a.sum()), float(a @ w)]
    return out


class Checkpointer:
    """Saves and restores a state pytree under ``directory``.

    Args:
      directory: where checkpoints live (one sub-directory per step).
      max_to_keep: how many of the latest checkpoints to keep.
    """

    def __init__(self, directory: str, *, max_to_keep: int = 3) -> None:
        if max_to_keep < 1:
            raise ValueError(f"max_to_keep must be >= 1, got {max_to_keep}")
        self.directory = os.path.abspath(directory)
        self._options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep, create=True, enable_async_checkpointing=False
        )
        self._manager = ocp.CheckpointManager(self.directory, options=self._options)

    def latest_step(self) -> int | None:
        """The step of the newest complete checkpoint, or ``None``."""
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        """Steps of all kept checkpoints, oldest first."""
        return sorted(self._manager.all_steps())

    def save(self, step: int, state: Any) -> None:
        """Writes ``state`` as the checkpoint of ``step`` (a no-op if it already exists)."""
        if step in self._manager.all_steps():
            return
        self._manager.save(step, args=ocp.args.StandardSave(state))
        self._manager.wait_until_finished()
        if jax.process_index() == 0:  # verified on restore
            write_json_atomic(os.path.join(self.directory, str(step), SUMS_FILE), checksums(state))

    def restore(self, target: Any, step: int | None = None) -> Any:
        """Restores ``step`` (default: the latest) with ``target``'s structure and shardings."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
        state = self._manager.restore(step, args=ocp.args.StandardRestore(abstract))
        sums_path = os.path.join(self.directory, str(step), SUMS_FILE)
        if os.path.exists(sums_path):  # absent in checkpoints of older versions
            with open(sums_path) as f:
                saved = json.load(f)
            got = checksums(state)
            bad = [
                k
                for k in sorted(set(saved) | set(got))
                if k not in saved or k not in got or not np.allclose(saved[k], got[k], rtol=1e-12)
            ]
            if bad:
                raise ValueError(
                    f"checkpoint {step}: {', '.join(bad[:3])} do not match their saved checksums"
                )
        return state

    def restore_latest_good(
        self, target: Any, *, report: Callable[[str], None] | None = None
    ) -> tuple[int | None, Any]:
        """``(step, state)`` of the newest checkpoint that reads back; ``(None, target)`` if none.

        A checkpoint that fails to read (a truncated or missing file, an empty step
        directory, arrays that do not match their saved checksums) is never guessed at: each
        one newer than the good one is reported in one line to ``report`` and moved aside to
        ``<step>.corrupt`` (never deleted), and the previous one is used.

        Raises:
          FileNotFoundError: there are checkpoints but none of them reads back (they are left
            in place).
        """
        bad: list[tuple[int, str]] = []
        for step in sorted(self._manager.all_steps(), reverse=True):
            try:
                state = self.restore(target, step)
            except Exception as e:  # any read failure: orbax, tensorstore, json, OS errors
                first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                bad.append((step, first[:200]))
                # A failed read can leave the manager's view of the items behind: start afresh.
                self._manager.close()
                self._manager = ocp.CheckpointManager(self.directory, options=self._options)
                continue
            for b, why in bad:
                moved = self._move_aside(b)
                if report is not None:
                    report(
                        f"checkpoint {b} in {self.directory} does not read back ({why}); "
                        f"moved to {os.path.basename(moved)}, resuming from step {step}"
                    )
            if bad:
                self._manager.close()
                self._manager = ocp.CheckpointManager(self.directory, options=self._options)
            return step, state
        if bad:
            raise FileNotFoundError(
                f"no checkpoint in {self.directory} reads back (steps "
                f"{', '.join(str(b) for b, _ in bad)}; newest: {bad[0][1]}); "
                f"move them aside or use a new --workdir"
            )
        return None, target

    def _move_aside(self, step: int) -> str:
        src = os.path.join(self.directory, str(step))
        dst, n = f"{src}.corrupt", 1
        while os.path.exists(dst):
            dst, n = f"{src}.corrupt.{n}", n + 1
        if jax.process_index() == 0:  # one process renames the shared directory
            os.rename(src, dst)
        return dst

    def close(self) -> None:
        self._manager.close()
