"""Input-gradient norm (double backprop, METHODS §1.1) on mnist.
Needs the data: `jaxinterp prepare --dataset mnist`."""

import ml_collections

from jaxinterp.experiments.defaults import standard_config


def get_config():
    c = standard_config("mnist")
    c.penalties.input_grad = ml_collections.ConfigDict(
        dict(penalty="input_gradient_norm", weight=0.1)
    )
    return c
