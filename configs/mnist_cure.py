"""Curvature regularization by finite differences, CURE (METHODS §1.5) on mnist.
Needs the data: `jaxinterp prepare --dataset mnist`."""

import ml_collections

from jaxinterp.experiments.defaults import standard_config


def get_config():
    c = standard_config("mnist")
    c.penalties.cure = ml_collections.ConfigDict(dict(penalty="curvature", weight=1.0, h=0.05))
    return c
