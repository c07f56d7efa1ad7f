"""Activation sensitivity over all layers (METHODS §1.4) on cifar10.
Needs the data: `jaxinterp prepare --dataset cifar10`."""

import ml_collections

from jaxinterp.experiments.defaults import experiment_config


def get_config() -> ml_collections.ConfigDict:
    return experiment_config("act_sens", "cifar10")
