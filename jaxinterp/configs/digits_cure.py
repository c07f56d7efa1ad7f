"""Curvature regularization by finite differences, CURE (METHODS §1.5) on digits."""

from jaxinterp.experiments.defaults import experiment_config


def get_config():
    return experiment_config("cure", "digits")
