"""XLA:CPU settings that make the library's workloads fast, applied before JAX starts.

Two settings, both measured on the bundled CNN (see ``benchmarks/README.md``):

* **One XLA device per core** (``--xla_force_host_platform_device_count``). One XLA:CPU
  device runs a batch's small convolutions with poor use of the cores; a data mesh over one
  device per core splits the batch instead, and the library's train steps, attacks and
  attributions are data-parallel already.
* **No convolution handed to YNNPACK** (``--xla_cpu_experimental_ynn_fusion_type=
  -individual_convolution``: XLA's default list of YNNPACK fusions less convolutions). By
  default jaxlib 0.10 runs every convolution in YNNPACK, including the kernel-gradient
  convolutions of the backward pass, which it runs several times slower than XLA's own
  library path: the plain train step of the CNN ran about 2x faster without them. Adding
  the ``eltwise`` type as well is faster still but computes wrong values (``arctanh`` off
  by up to 2.6 in jaxlib 0.10.2, which breaks CW-L2's change of variables), so it is not
  used; ``tests/test_cpu_config.py`` checks elementwise functions under these flags.

Both are XLA flags, so they take effect only if set before JAX initialises its CPU backend
(the first computation or device query). A user's own ``XLA_FLAGS`` always win: a flag the
user set is never overridden.
"""

from __future__ import annotations

import os

__all__ = ["YNN_FUSION_TYPES", "configure_cpu", "cpu_flags"]

YNN_FUSION_TYPES = "-individual_convolution"
"""The YNNPACK fusion types :func:`configure_cpu` selects."""

_DEVICES_FLAG = "--xla_force_host_platform_device_count"
_YNN_FLAG = "--xla_cpu_experimental_ynn_fusion_type"


def cpu_flags(existing: str = "", *, devices: int | None = None, fast_kernels: bool = True) -> str:
    """``existing`` XLA flags plus the library's CPU settings that it does not set itself.

    Args:
      existing: The current ``XLA_FLAGS`` value.
      devices: Host devices to create; ``None``: one per core (``os.cpu_count()``).
        ``1`` adds no device flag.
      fast_kernels: Add the YNNPACK setting (see the module docstring).

    Returns:
      The new flag string (``existing`` unchanged where it already names a flag).

    Raises:
      ValueError: If ``devices`` is not an integer >= 1.
    """
    if devices is None:
        devices = os.cpu_count() or 1
    if isinstance(devices, bool) or not isinstance(devices, int) or devices < 1:
        raise ValueError(f"devices must be an integer >= 1 or None, got {devices!r}")
    flags = existing.split()
    names = {f.split("=", 1)[0] for f in flags}
    if devices > 1 and _DEVICES_FLAG not in names:
        flags.append(f"{_DEVICES_FLAG}={devices}")
    if fast_kernels and _YNN_FLAG not in names:
        flags.append(f"{_YNN_FLAG}={YNN_FUSION_TYPES}")
    return " ".join(flags)


def _backend_started() -> bool:
    try:
        from jax._src import xla_bridge
    except ImportError:  # pragma: no cover - a JAX without this module: assume started
        return True
    started = getattr(xla_bridge, "backends_are_initialized", None)
    return bool(started()) if started is not None else bool(getattr(xla_bridge, "_backends", {}))


def configure_cpu(*, devices: int | None = None, fast_kernels: bool = True) -> bool:
    """Sets the library's XLA:CPU flags in ``XLA_FLAGS`` if JAX has not started yet.

    Call it first thing, before any JAX computation::

        import jaxinterp
        jaxinterp.configure_cpu()  # one XLA device per core, no YNNPACK convolutions

    The flags only concern the CPU backend: on a GPU or TPU machine they change nothing that
    runs on the accelerator. Flags already in ``XLA_FLAGS`` are kept as they are.

    Args:
      devices: Host devices; ``None``: one per core.
      fast_kernels: Also keep convolutions out of YNNPACK (see the module docstring).

    Returns:
      ``True`` if the flags were set; ``False`` if JAX's backend had already started (then
      nothing changes: the flags can no longer take effect in this process).
    """
    if _backend_started():
        return False
    os.environ["XLA_FLAGS"] = cpu_flags(
        os.environ.get("XLA_FLAGS", ""), devices=devices, fast_kernels=fast_kernels
    )
    return True
