"""Curvature regularization by finite differences, CURE (METHODS §1.5) on cifar10.
Needs the data: `jaxinterp prepare --dataset cifar10`."""

import ml_collections

from jaxinterp.experiments.defaults import standard_config


def get_config():
    c = standard_config("cifar10")
    c.penalties.cure = ml_collections.ConfigDict(dict(penalty="curvature", weight=1.0, h=1.5 / 255))
    return c
