"""Standard training (cross-entropy only) of the softplus CNN on the embedded digits."""

from jaxinterp.experiments.defaults import base_config


def get_config():
    return base_config()
