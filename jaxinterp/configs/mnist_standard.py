"""Standard training of the softplus CNN on MNIST.

Needs the data: `jaxinterp prepare --dataset mnist`.
"""

import ml_collections

from jaxinterp.experiments.defaults import experiment_config


def get_config() -> ml_collections.ConfigDict:
    return experiment_config("standard", "mnist")
