"""The claims study of METHODS §5 on mnist, for a machine with the data and an accelerator.

Needs the data: `jaxinterp prepare --dataset mnist`. Trains each model with the mnist experiment
config's own schedule; there is no localisation data, so that part of claim 3 is not measured.
Run: `jaxinterp reproduce --config reproduce_mnist --out runs/reproduce_mnist`.
"""

import ml_collections

from jaxinterp.experiments.study import study_config


def get_config() -> ml_collections.ConfigDict:
    return study_config("mnist")
