"""Standard training of the softplus CNN on MNIST.

Needs the data: `jaxinterp prepare --dataset mnist`.
"""

from jaxinterp.experiments.defaults import experiment_config


def get_config():
    return experiment_config("standard", "mnist")
