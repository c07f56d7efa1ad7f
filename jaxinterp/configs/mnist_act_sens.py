"""Activation sensitivity over all layers (METHODS §1.4) on mnist.
Needs the data: `jaxinterp prepare --dataset mnist`."""

from jaxinterp.experiments.defaults import experiment_config


def get_config():
    return experiment_config("act_sens", "mnist")
