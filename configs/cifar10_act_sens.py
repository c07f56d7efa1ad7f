"""Activation sensitivity over all layers (METHODS §1.4) on cifar10.
Needs the data: `jaxinterp prepare --dataset cifar10`."""

import ml_collections

from jaxinterp.experiments.defaults import standard_config


def get_config():
    c = standard_config("cifar10")
    c.penalties.act_sens = ml_collections.ConfigDict(
        dict(penalty="activation_sensitivity", weight=0.1, estimator="jvp", num_probes=1)
    )
    return c
