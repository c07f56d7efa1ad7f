"""Input-gradient norm (double backprop, METHODS §1.1) on digits."""

import ml_collections

from jaxinterp.experiments.defaults import standard_config


def get_config():
    c = standard_config("digits")
    c.penalties.input_grad = ml_collections.ConfigDict(
        dict(penalty="input_gradient_norm", weight=0.1)
    )
    return c
