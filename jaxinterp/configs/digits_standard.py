"""Standard training (cross-entropy only) of the softplus CNN on the embedded digits."""

from jaxinterp.experiments.defaults import experiment_config


def get_config():
    return experiment_config("standard", "digits")
