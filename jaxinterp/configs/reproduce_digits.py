"""The claims study of METHODS §5 on the embedded digits (and digits_canvas for localisation).

The default of `jaxinterp reproduce`; `--quick` runs one seed in minutes on a CPU.
"""

import ml_collections

from jaxinterp.experiments.study import study_config


def get_config() -> ml_collections.ConfigDict:
    return study_config("digits")
