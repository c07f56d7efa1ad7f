"""Atomic, keep-N checkpoints of the train state with orbax, and resume from the latest.

Orbax writes each checkpoint to a temporary directory and renames it when complete, so a
run killed at any moment leaves only whole checkpoints behind; a restart restores the
latest one with the shardings of the freshly built state. Each checkpoint also holds
``jaxinterp_sums.json``, per leaf a SHA-256 of its dtype, shape and raw bytes and two float64
sums, compared on restore: a checkpoint whose arrays read back different from what was saved,
by a single bit, counts as unreadable. (Files of older versions hold the sums only; they are
compared within the rounding error of float64 summation.)

The checksums are written before the checkpoint (to ``.pending-<step>.json`` in the
checkpoint directory, moved into the step's directory once orbax has committed it), so a
kill at any moment leaves every committed checkpoint with its checksums. ``jaxinterp.json``
in the checkpoint directory records the first step saved with checksums: a checkpoint of that
step or later without them (deleted) is unreadable too; older ones, written by versions
without checksums, are read unverified.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import logging
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from jaxinterp.training.errors import first_line
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
MARKER_FILE = "jaxinterp.json"  # {"checksums_from": first step saved with checksums}


def _drop_orbax_noise() -> None:
    """Installs (once per process) the filters of the noise a failed orbax read or write
    leaves behind on stderr.

    When a read fails, orbax's event loop closes while tensorstore still completes the
    read's other futures: each one's callback raises ``RuntimeError('Event loop is closed')``
    from ``call_soon_threadsafe`` in a tensorstore thread, which Python prints as an
    unraisable exception (a traceback per array); the read's abandoned orbax coroutines
    raise their own read errors when they are collected, and asyncio logs the tasks whose
    exceptions nobody retrieved. All would bury the one line that reports the bad
    checkpoint. An unraisable-exception hook drops exactly the closed loop's and orbax's
    coroutines' exceptions (every other one still reaches the previous hook), and
    :class:`_AbandonedOrbaxTasks` filters asyncio's logger. Both are precise, so they are
    installed before every save and restore: the noise can come before the call raises.
    """
    asyncio_logger = logging.getLogger("asyncio")
    if not any(isinstance(f, _AbandonedOrbaxTasks) for f in asyncio_logger.filters):
        asyncio_logger.addFilter(_AbandonedOrbaxTasks())
    previous = sys.unraisablehook
    if getattr(previous, "_jaxinterp_orbax_noise", False):
        return

    def hook(unraisable: Any) -> None:
        exc, obj = unraisable.exc_value, unraisable.object
        if isinstance(exc, RuntimeError) and str(exc) == "Event loop is closed":
            return
        if inspect.iscoroutine(obj) and "orbax" in obj.cr_code.co_filename:
            return  # an abandoned read of another array, failing as the reported one did
        previous(unraisable)

    hook._jaxinterp_orbax_noise = True  # type: ignore[attr-defined]
    sys.unraisablehook = hook


class _AbandonedOrbaxTasks(logging.Filter):
    """Drops asyncio's "Task/Future exception was never retrieved" for the other arrays of a
    failed read, failing as the reported one did: a task that ran orbax code, or a
    tensorstore future whose error names an OCDBT checkpoint file."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "exception was never retrieved" not in message:
            return True
        if "in OCDBT database at local file" in message:
            return False
        tb = record.exc_info[2] if record.exc_info else None
        while tb is not None:
            if "orbax" in tb.tb_frame.f_code.co_filename:
                return False
            tb = tb.tb_next
        return True


def _leaf_sums(x: Any) -> tuple[list[Any], float]:
    """``[sum, position-weighted sum, "sha256:<hex>"]`` of one leaf, and ``n * sum(|x|)`` in
    float64 (the scale of the sums' rounding error)."""
    raw = np.ascontiguousarray(jax.device_get(x))
    digest = hashlib.sha256(f"{raw.dtype.str}{raw.shape}".encode())
    digest.update(raw.tobytes())
    a = raw.astype(np.float64).ravel()
    w = np.arange(1, a.size + 1, dtype=np.float64) / max(a.size, 1)
    sums = [float(a.sum()), float(a @ w), f"sha256:{digest.hexdigest()}"]
    return sums, float(np.abs(a).sum()) * max(a.size, 1)


def checksums(tree: Any) -> dict[str, list[Any]]:
    """Per leaf (by key path): ``[sum, weighted sum, "sha256:<hex>"]``.

    The float64 sum of its values, the sum of its values weighted by position, and the
    SHA-256 of its dtype, shape and raw bytes: the digest is the exact check, the sums (all
    that files of older versions hold) are compared within float64 rounding error.
    """
    return {
        jax.tree_util.keystr(path): _leaf_sums(x)[0]
        for path, x in jax.tree_util.tree_flatten_with_path(tree)[0]
    }


def _matches(saved: Any, got: list[Any], scale: float) -> bool:
    """Whether a leaf's saved checksums agree with those of the leaf read back.

    The digest (absent from files of older versions) must be equal; the two sums may differ
    by at most ``n * 2**-50 * sum(|x|)`` (``scale`` is ``n * sum(|x|)``), four times the
    bound on the rounding error of two float64 summations of the same values and far below
    the change of any stored value.
    """
    if not isinstance(saved, list) or len(saved) not in (2, 3):
        return False
    if len(saved) == 3 and saved[2] != got[2]:
        return False
    try:
        diff = np.abs(np.asarray(saved[:2], dtype=np.float64) - np.asarray(got[:2]))
    except (TypeError, ValueError):
        return False
    return bool(np.all(diff <= scale * 2.0**-50))


class _HoldThreadErrors(logging.Filter):
    """Holds back orbax's log records of an exception in one of its writer threads."""

    def __init__(self) -> None:
        super().__init__()
        self.held: list[logging.LogRecord] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if "_SignalingThread.run() raised an exception" in record.getMessage():
            self.held.append(record)
            return False
        return True


@contextlib.contextmanager
def _held_thread_errors() -> Iterator[None]:
    """Runs an orbax save or restore with its threads' error logs held back.

    When a write fails (a full disk, a quota) or a read fails (a damaged file), each of
    orbax's worker threads logs the error with its traceback through absl, and then the call
    raises the same error, which the caller reports in one line. The logs are dropped when
    the call raises and passed on unchanged if it returns. The other noise of a failed call
    is filtered by :func:`_drop_orbax_noise`; once a call has failed, so are the warnings of
    its coroutines that were never awaited.
    """
    logger, hold = logging.getLogger("absl"), _HoldThreadErrors()
    _drop_orbax_noise()
    logger.addFilter(hold)
    try:
        yield
    except BaseException:
        warnings.filterwarnings("ignore", r"coroutine '.*' was never awaited", RuntimeWarning)
        raise
    finally:
        logger.removeFilter(hold)
    for record in hold.held:
        logger.handle(record)


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
        main = jax.process_index() == 0  # one process writes the checksums (verified on restore)
        if main:
            if self._checksums_from() is None:
                os.makedirs(self.directory, exist_ok=True)
                write_json_atomic(
                    os.path.join(self.directory, MARKER_FILE), {"checksums_from": step}
                )
            write_json_atomic(self._pending(step), checksums(state))
        with _held_thread_errors():  # a failed write raises here: reported once, by the caller
            self._manager.save(step, args=ocp.args.StandardSave(state))
            self._manager.wait_until_finished()
        if main:
            os.replace(self._pending(step), os.path.join(self.directory, str(step), SUMS_FILE))
            self._tidy_pending()

    def _pending(self, step: int) -> str:
        return os.path.join(self.directory, f".pending-{step}.json")

    def _checksums_from(self) -> int | None:
        """The first step saved with checksums (``None``: no step yet, or an old directory
        whose checkpoints have none; a damaged marker counts as step 0: all verified)."""
        try:
            with open(os.path.join(self.directory, MARKER_FILE)) as f:
                return int(json.load(f)["checksums_from"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):
            return 0

    def _tidy_pending(self) -> None:
        """Finishes the checksum moves of saves killed after orbax committed (a step directory
        without its checksums), and drops pending files of checkpoints that were never made
        or are no longer kept."""
        for name in os.listdir(self.directory):
            if not (name.startswith(".pending-") and name.endswith(".json")):
                continue
            path, step = os.path.join(self.directory, name), name[len(".pending-") : -5]
            target = os.path.join(self.directory, step, SUMS_FILE)
            if os.path.isdir(os.path.dirname(target)) and not os.path.exists(target):
                os.replace(path, target)
            else:
                os.remove(path)

    def restore(self, target: Any, step: int | None = None) -> Any:
        """Restores ``step`` (default: the latest) with ``target``'s structure and shardings."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
        with _held_thread_errors():  # a failed read raises here: reported once, by the caller
            state = self._manager.restore(step, args=ocp.args.StandardRestore(abstract))
        sums_path = os.path.join(self.directory, str(step), SUMS_FILE)
        if not os.path.exists(sums_path) and os.path.exists(self._pending(step)):
            sums_path = self._pending(step)  # killed between orbax's commit and the move
        since = self._checksums_from()
        if not os.path.exists(sums_path) and since is not None and step >= since:
            raise ValueError(
                f"checkpoint {step}: {SUMS_FILE} is missing (checkpoints from step {since} on "
                "are saved with one)"
            )
        if os.path.exists(sums_path):  # absent in checkpoints of older versions
            try:
                with open(sums_path) as f:
                    saved = json.load(f)
            except (OSError, ValueError) as e:  # ValueError: JSON and UnicodeDecodeError
                raise ValueError(f"checkpoint {step}: {SUMS_FILE} is unreadable ({e})") from e
            if not isinstance(saved, dict):
                raise ValueError(f"checkpoint {step}: {SUMS_FILE} holds no checksum table")
            got = {
                jax.tree_util.keystr(path): _leaf_sums(x)
                for path, x in jax.tree_util.tree_flatten_with_path(state)[0]
            }
            bad = [
                k
                for k in sorted(set(saved) | set(got))
                if k not in saved or k not in got or not _matches(saved[k], *got[k])
            ]
            if bad:
                raise ValueError(
                    f"checkpoint {step}: {', '.join(bad[:3])} do not match their saved checksums"
                )
        return state

    def restore_latest_good(
        self,
        target: Any,
        *,
        report: Callable[[str], None] | None = None,
        move_aside: bool = True,
    ) -> tuple[int | None, Any]:
        """``(step, state)`` of the newest checkpoint that reads back; ``(None, target)`` if none.

        A checkpoint that fails to read (a truncated or missing file, an empty step
        directory, an unreadable checksum file, arrays that do not match their saved
        checksums) is never guessed at: each one newer than the good one is reported in one
        line to ``report`` and moved aside to ``<step>.corrupt`` (never deleted), and the
        previous one is used.

        Args:
          target: the state pytree (or its ``jax.ShapeDtypeStruct`` s) to restore into.
          report: called with one line per checkpoint passed over.
          move_aside: ``False`` for jobs that only read the workdir (``explain``,
            ``evaluate``): the bad checkpoints are reported and left in place.

        Raises:
          FileNotFoundError: there are checkpoints but none of them reads back (they are left
            in place).
        """
        bad: list[tuple[int, str]] = []
        for step in sorted(self._manager.all_steps(), reverse=True):
            try:
                state = self.restore(target, step)
            except Exception as e:  # any read failure: orbax, tensorstore, json, OS errors
                bad.append((step, first_line(e)[:200]))
                # A failed read can leave the manager's view of the items behind: start afresh.
                self._manager.close()
                self._manager = ocp.CheckpointManager(self.directory, options=self._options)
                continue
            for b, why in bad:
                if move_aside:
                    moved = self._move_aside(b)
                    what = f"moved to {os.path.basename(moved)}, resuming from step {step}"
                else:
                    what = f"left in place (a read-only job), using step {step}"
                if report is not None:
                    report(f"checkpoint {b} in {self.directory} does not read back ({why}); {what}")
            if bad and move_aside:
                self._manager.close()
                self._manager = ocp.CheckpointManager(self.directory, options=self._options)
            return step, state
        if bad:
            raise FileNotFoundError(
                f"no checkpoint in {self.directory} reads back (steps "
                f"{', '.join(str(b) for b, _ in bad)}; newest: {bad[0][1]})"
                + ("; move them aside or use a new --workdir" if move_aside else "")
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
