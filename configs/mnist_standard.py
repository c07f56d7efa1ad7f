"""Standard training of the softplus CNN on MNIST.

Needs the data: `jaxinterp prepare --dataset mnist`.
"""

from jaxinterp.experiments.defaults import standard_config


def get_config():
    return standard_config("mnist")
