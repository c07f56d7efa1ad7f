"""Curvature regularization by finite differences, CURE (METHODS §1.5) on mnist.
Needs the data: `jaxinterp prepare --dataset mnist`."""

from jaxinterp.experiments.defaults import experiment_config


def get_config():
    return experiment_config("cure", "mnist")
