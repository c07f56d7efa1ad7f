"""CPU settings that make the library's workloads fast, applied before JAX starts.

Four settings, all measured on the bundled CNN (see ``benchmarks/README.md``):

* **One XLA device, unless asked for more** (``devices``; ``None``: one per core, with
  ``--xla_force_host_platform_device_count``). One XLA:CPU device already runs a program
  on every core (XLA's intra-op threads). One device per core splits a train step's batch
  over the cores instead: with the first versions of the library's convolution that was
  1.3x faster, but on the current code it is no faster and the penalty steps are slower.
  Timed on a mesh of one and of two devices in one process on a 2-core Zen 4: the study's
  seven train steps (batch 64) 3-22% faster on one device; at batch 128 the CNN's plain step
  195 / 185 ms (one / two), its input-gradient-norm step 439 / 592 ms, its Hessian-norm step
  752 / 883 ms (``benchmarks/README.md``). Measured on 2 cores only: on a machine with many
  more, compare with ``python -m benchmarks.scaling``.
* **No convolution handed to YNNPACK** (``--xla_cpu_experimental_ynn_fusion_type=
  -individual_convolution``: XLA's default list of YNNPACK fusions less convolutions). By
  default jaxlib 0.10 runs every convolution in YNNPACK, including the kernel-gradient
  convolutions of the backward pass, which it runs several times slower than XLA's own
  library path: the plain train step of the CNN ran about 2x faster without them. Adding
  the ``eltwise`` type as well is faster still but computes wrong values (``arctanh`` off
  by up to 2.6 in jaxlib 0.10.2, which breaks CW-L2's change of variables), so it is not
  used; ``tests/test_cpu_config.py`` checks elementwise functions under these flags. The
  same fusion type also drops NaNs in ``maximum``/``minimum`` (``relu(nan) == 0``), which
  would hide a diverged ReLU network.
* **512-bit vectors on AMD CPUs with AVX-512** (``--xla_cpu_prefer_vector_width=512``; Zen 4
  and later, read from ``/proc/cpuinfo``). XLA:CPU emits its elementwise loops for 256-bit
  vectors by default, which spares the Intel parts whose clock drops under 512-bit
  instructions; AMD's do not slow down. On a 2-core Zen 4, in alternated fresh processes:
  the CNN's plain train step at batch 128 5-6% faster (median 180 against 191 ms over four
  pairs), the study's train steps 2-6%, CW-L2 in a loop 25% (``benchmarks/README.md``).
  Elsewhere (Intel, no AVX-512, no ``/proc/cpuinfo``) XLA's default stays.
* **Freed host memory kept for reuse** (glibc's ``mallopt``: one malloc arena, no ``mmap``
  for large blocks, no trimming). XLA:CPU allocates a program's scratch buffer anew on every
  call, from a worker thread's arena, where a buffer of this size (178 MB for the CNN's
  train step at batch 128) is ``mmap``-ed and unmapped again: the kernel then faults in and
  zeroes every page of it on every call, 43,000 page faults per step. With the setting the
  block is reused and a step takes about 6,000 page faults; the step ran about 12% faster on
  a 2-core Zen 4. The price is that the process does not hand freed memory back to the
  system: its resident size stays at its peak, as with PyTorch's or JAX's GPU allocators.
  Linux with glibc only; elsewhere nothing changes.

The first three are XLA flags (the device flag only when more than one device is asked for),
so they take effect only if set before JAX initialises its CPU backend (the first
computation or device query); :func:`configure_cpu` applies the fourth at the same time. A
user's own ``XLA_FLAGS`` always win: a flag the user set is never overridden.
"""

from __future__ import annotations

import ctypes
import os
import sys

__all__ = ["YNN_FUSION_TYPES", "configure_cpu", "cpu_flags", "preferred_vector_width"]

YNN_FUSION_TYPES = "-individual_convolution"
"""The YNNPACK fusion types :func:`configure_cpu` selects."""

_DEVICES_FLAG = "--xla_force_host_platform_device_count"
_YNN_FLAG = "--xla_cpu_experimental_ynn_fusion_type"
_VECTOR_FLAG = "--xla_cpu_prefer_vector_width"


def preferred_vector_width(cpuinfo: str | None = None) -> int | None:
    """512 on an AMD CPU with AVX-512 (Zen 4 and later), else ``None`` (XLA's default).

    Args:
      cpuinfo: The text of ``/proc/cpuinfo``; by default the file is read, and where it
        cannot be (off Linux) the answer is ``None``.
    """
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
                cpuinfo = f.read()
        except OSError:
            return None
    fields = dict(
        (k.strip(), v.strip())
        for k, _, v in (line.partition(":") for line in cpuinfo.splitlines()[:64])
        if v
    )
    amd = fields.get("vendor_id") == "AuthenticAMD"
    return 512 if amd and "avx512f" in fields.get("flags", "").split() else None


def cpu_flags(existing: str = "", *, devices: int | None = 1, fast_kernels: bool = True) -> str:
    """``existing`` XLA flags plus the library's CPU settings that it does not set itself.

    Args:
      existing: The current ``XLA_FLAGS`` value.
      devices: Host devices to create (default 1, which adds no device flag); ``None``:
        one per core (``os.cpu_count()``).
      fast_kernels: Add the YNNPACK setting, and on an AMD CPU with AVX-512 the vector
        width (see the module docstring).

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
    width = preferred_vector_width() if fast_kernels else None
    if width is not None and _VECTOR_FLAG not in names:
        flags.append(f"{_VECTOR_FLAG}={width}")
    return " ".join(flags)


# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8
_REUSE = ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, 2**31 - 1))
_reused = False


def host_memory_reused() -> bool:
    """Whether :func:`configure_cpu` set glibc's malloc to keep freed memory in this process."""
    return _reused


def _glibc() -> bool:
    """Whether this process runs on Linux with glibc (whose ``mallopt`` the setting uses)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        return bool(os.confstr("CS_GNU_LIBC_VERSION"))
    except (OSError, ValueError):  # no such confstr name: not glibc
        return False


def _reuse_host_memory() -> None:
    """glibc's malloc keeps freed blocks for reuse (see the module docstring); off
    Linux/glibc nothing changes. :func:`host_memory_reused` reports whether it took."""
    global _reused
    if not _glibc():
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    _reused = all(libc.mallopt(k, v) == 1 for k, v in _REUSE)


def _backend_started() -> bool:
    try:
        from jax._src import xla_bridge
    except ImportError:  # pragma: no cover - a JAX without this module: assume started
        return True
    started = getattr(xla_bridge, "backends_are_initialized", None)
    return bool(started()) if started is not None else bool(getattr(xla_bridge, "_backends", {}))


def configure_cpu(
    *, devices: int | None = 1, fast_kernels: bool = True, reuse_memory: bool = True
) -> bool:
    """Sets the library's CPU settings if JAX has not started yet.

    Call it first thing, before any JAX computation::

        import jaxinterp
        jaxinterp.configure_cpu()  # no YNNPACK convolutions, host memory reused

    The flags only concern the CPU backend: on a GPU or TPU machine they change nothing that
    runs on the accelerator. Flags already in ``XLA_FLAGS`` are kept as they are.

    Args:
      devices: Host devices (default 1); ``None``: one per core (see the module
        docstring).
      fast_kernels: Also keep convolutions out of YNNPACK, and use 512-bit vectors on an
        AMD CPU with AVX-512 (see the module docstring).
      reuse_memory: Also keep freed host memory for reuse (glibc only; see the module
        docstring). It concerns the whole process, PyTorch's tensors included.

    Returns:
      ``True`` if the settings were applied; ``False`` if JAX's backend had already started
      (then nothing changes: the flags can no longer take effect in this process).
    """
    if _backend_started():
        return False
    os.environ["XLA_FLAGS"] = cpu_flags(
        os.environ.get("XLA_FLAGS", ""), devices=devices, fast_kernels=fast_kernels
    )
    if reuse_memory:
        _reuse_host_memory()
    return True
