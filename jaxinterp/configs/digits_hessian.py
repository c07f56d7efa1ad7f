"""Hessian norm by Hutchinson probes (METHODS §1.2) on digits."""

from jaxinterp.experiments.defaults import experiment_config


def get_config():
    return experiment_config("hessian", "digits")
