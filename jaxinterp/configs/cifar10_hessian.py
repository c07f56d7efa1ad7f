"""Hessian norm by Hutchinson probes (METHODS §1.2) on cifar10.
Needs the data: `jaxinterp prepare --dataset cifar10`."""

from jaxinterp.experiments.defaults import experiment_config


def get_config():
    return experiment_config("hessian", "cifar10")
