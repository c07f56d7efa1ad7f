"""Throughput benchmarks: ``python -m benchmarks.<name>``.

Importing the package applies the library's CPU settings for one device
(:func:`jaxinterp.configure_cpu` with ``devices=1``: no convolution in YNNPACK, 512-bit
vectors on AMD CPUs with AVX-512, freed host memory kept for reuse), as the ``jaxinterp``
command does, so the numbers are those a user of the command line gets.
``JAXINTERP_XLA_DEFAULTS=0`` measures XLA's and glibc's own defaults instead; flags already
in ``XLA_FLAGS`` are kept either way.
"""

import os

if os.environ.get("JAXINTERP_XLA_DEFAULTS", "1") != "0":
    from jaxinterp import configure_cpu

    configure_cpu(devices=1)
