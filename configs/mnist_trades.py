"""TRADES with beta = 6 (Zhang et al. 2019, METHODS §1.6) on mnist.
Needs the data: `jaxinterp prepare --dataset mnist`."""

import ml_collections

from jaxinterp.experiments.defaults import standard_config


def get_config():
    c = standard_config("mnist")
    c.penalties.trades = ml_collections.ConfigDict(
        dict(penalty="trades", weight=6.0, epsilon=0.3, num_steps=40, step_size=0.01)
    )
    return c
