"""TRADES with beta = 6 (Zhang et al. 2019, METHODS §1.6) on cifar10.
Needs the data: `jaxinterp prepare --dataset cifar10`."""

import ml_collections

from jaxinterp.experiments.defaults import standard_config


def get_config():
    c = standard_config("cifar10")
    c.penalties.trades = ml_collections.ConfigDict(
        dict(penalty="trades", weight=6.0, epsilon=8 / 255, num_steps=10, step_size=2 / 255)
    )
    return c
