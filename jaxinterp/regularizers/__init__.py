"""Training-time penalties that make explanations more faithful and robust (METHODS §1)."""

from jaxinterp.regularizers._combine import Penalty, combine

__all__ = ["Penalty", "combine"]
