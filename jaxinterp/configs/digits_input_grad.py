"""Input-gradient norm (double backprop, METHODS §1.1) on digits."""

import ml_collections

from jaxinterp.experiments.defaults import experiment_config


def get_config() -> ml_collections.ConfigDict:
    return experiment_config("input_grad", "digits")
