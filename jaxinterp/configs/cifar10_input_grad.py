"""Input-gradient norm (double backprop, METHODS §1.1) on cifar10.
Needs the data: `jaxinterp prepare --dataset cifar10`."""

from jaxinterp.experiments.defaults import experiment_config


def get_config():
    return experiment_config("input_grad", "cifar10")
