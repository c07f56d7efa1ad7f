"""The jobs the command line runs."""

from jaxinterp.experiments.restore import Trained, load_trained
from jaxinterp.experiments.train import train_and_evaluate

__all__ = ["Trained", "load_trained", "train_and_evaluate"]
