"""Errors a training run stops with, and the one-line form in which jobs report problems."""

import sys

__all__ = ["NonFiniteError", "first_line", "warn"]


class NonFiniteError(RuntimeError):
    """A loss or gradient became NaN/Inf; the last good checkpoint is kept."""


def first_line(e: BaseException) -> str:
    """The first line of ``e``'s message, or its type's name when it has none."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def warn(line: str) -> None:
    """Prints ``jaxinterp: warning: <line>`` on stderr."""
    print(f"jaxinterp: warning: {line}", file=sys.stderr, flush=True)
