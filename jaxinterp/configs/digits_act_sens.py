"""Activation sensitivity over all layers (METHODS §1.4) on digits."""

from jaxinterp.experiments.defaults import experiment_config


def get_config():
    return experiment_config("act_sens", "digits")
