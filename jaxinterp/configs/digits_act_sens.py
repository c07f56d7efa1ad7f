"""Activation sensitivity over all layers (METHODS §1.4) on digits."""

import ml_collections

from jaxinterp.experiments.defaults import experiment_config


def get_config() -> ml_collections.ConfigDict:
    return experiment_config("act_sens", "digits")
