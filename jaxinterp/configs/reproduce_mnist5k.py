"""The claims study of METHODS §5 on the embedded real-MNIST subset (mnist_canvas for
localisation): the default of `jaxinterp reproduce`; `--quick` runs one seed on a CPU.
"""

import ml_collections

from jaxinterp.experiments.study import study_config


def get_config() -> ml_collections.ConfigDict:
    return study_config("mnist5k")
