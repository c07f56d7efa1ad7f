"""Input-gradient norm (double backprop, METHODS §1.1) on digits."""

from jaxinterp.experiments.defaults import experiment_config


def get_config():
    return experiment_config("input_grad", "digits")
