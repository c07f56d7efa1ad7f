"""TRADES with beta = 6 (Zhang et al. 2019, METHODS §1.6) on digits."""

import ml_collections

from jaxinterp.experiments.defaults import standard_config


def get_config():
    c = standard_config("digits")
    c.penalties.trades = ml_collections.ConfigDict(
        dict(penalty="trades", weight=6.0, epsilon=0.1, num_steps=5)
    )
    return c
