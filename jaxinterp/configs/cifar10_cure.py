"""Curvature regularization by finite differences, CURE (METHODS §1.5) on cifar10.
Needs the data: `jaxinterp prepare --dataset cifar10`."""

import ml_collections

from jaxinterp.experiments.defaults import experiment_config


def get_config() -> ml_collections.ConfigDict:
    return experiment_config("cure", "cifar10")
