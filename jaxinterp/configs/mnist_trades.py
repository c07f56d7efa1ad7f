"""TRADES with beta = 6 (Zhang et al. 2019, METHODS §1.6) on mnist.
Needs the data: `jaxinterp prepare --dataset mnist`."""

from jaxinterp.experiments.defaults import experiment_config


def get_config():
    return experiment_config("trades", "mnist")
