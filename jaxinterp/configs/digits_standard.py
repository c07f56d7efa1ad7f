"""Standard training (cross-entropy only) of the softplus CNN on the embedded digits."""

import ml_collections

from jaxinterp.experiments.defaults import experiment_config


def get_config() -> ml_collections.ConfigDict:
    return experiment_config("standard", "digits")
