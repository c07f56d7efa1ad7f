"""Errors a training run stops with."""

__all__ = ["NonFiniteError"]


class NonFiniteError(RuntimeError):
    """A loss or gradient became NaN/Inf; the last good checkpoint is kept."""
