"""One writer per workdir: an advisory ``flock`` on ``workdir/.lock``.

The lock belongs to an open file, so the kernel releases it when the process holding it
dies in any way (SIGKILL included): a lock file left by a dead trainer holds no lock and the
next trainer takes it over. The file records the holder's pid and host, for the message.
"""

from __future__ import annotations

import fcntl
import os
import socket
from typing import IO

__all__ = ["WorkdirLock"]


class WorkdirLock:
    """Holds ``flock(LOCK_EX)`` on ``workdir/.lock`` from :meth:`acquire` to :meth:`release`.

    Raises (from :meth:`acquire`):
      ValueError: another live process holds the lock (one line naming its pid and host).
    """

    def __init__(self, workdir: str) -> None:
        self.path = os.path.join(workdir, ".lock")
        self._file: IO[str] | None = None

    def acquire(self) -> WorkdirLock:
        f = open(self.path, "a+")
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            f.close()
            raise ValueError(
                f"workdir {os.path.dirname(self.path)} is in use by another trainer "
                f"({holder}, lock {self.path}); wait for it to end or use a new --workdir"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} on host {socket.gethostname()}\n")
        f.flush()
        self._file = f
        return self

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None

    def __enter__(self) -> WorkdirLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
