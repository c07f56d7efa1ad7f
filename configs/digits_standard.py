"""Standard training (cross-entropy only) of the softplus CNN on the embedded digits."""

from jaxinterp.experiments.defaults import standard_config


def get_config():
    return standard_config("digits")
