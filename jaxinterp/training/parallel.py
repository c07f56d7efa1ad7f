"""Data parallelism over a device mesh: params replicated, batch sharded on ``data``.

One code path serves one CPU, N local devices (real or
``XLA_FLAGS=--xla_force_host_platform_device_count=N``) and many processes after
``jax.distributed.initialize()``: each process feeds its local share of the global batch and
``jax.make_array_from_process_local_data`` assembles the global, sharded array.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

__all__ = [
    "batch_sharding",
    "initialize_distributed",
    "make_data_mesh",
    "replicate",
    "replicated_sharding",
    "shard_batch",
]

DATA_AXIS = "data"


def initialize_distributed(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> None:
    """Join a multi-process run (``jax.distributed.initialize``) unless already joined.

    With no arguments JAX detects the cluster (TPU pods, Slurm, Kubernetes, ...); a
    coordinator address such as ``"localhost:1234"`` with explicit ``num_processes`` and
    ``process_id`` runs several processes on one machine over loopback.
    """
    if jax.distributed.is_initialized():
        return
    kwargs: dict[str, Any] = {
        k: v
        for k, v in dict(
            coordinator_address=coordinator_address,
            num_processes=num_processes,
            process_id=process_id,
        ).items()
        if v is not None
    }
    jax.distributed.initialize(**kwargs)


def make_data_mesh(num_devices: int | None = None) -> Mesh:
    """A 1-D mesh named ``data`` over the first ``num_devices`` devices (default: all).

    The axis is of type ``Auto`` (sharding propagated by the compiler).
    """
    devices = jax.devices()
    n = len(devices) if num_devices is None else num_devices
    if not 1 <= n <= len(devices):
        raise ValueError(f"num_devices={num_devices} but {len(devices)} devices are available")
    if n != len(devices) and jax.process_count() > 1:
        raise ValueError("num_devices must be all devices in a multi-process run")
    # Auto axes: XLA propagates shardings through the model, so any model code (reshapes,
    # concatenations, ...) runs unchanged; explicit sharding types would reject some reshapes.
    return jax.make_mesh(
        (n,), (DATA_AXIS,), devices=devices[:n], axis_types=(jax.sharding.AxisType.Auto,)
    )


def replicated_sharding(mesh: Mesh) -> NamedSharding:
    """Every device holds the whole array."""
    return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """The leading (batch) axis is split over the ``data`` axis."""
    return NamedSharding(mesh, P(DATA_AXIS))


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Places a pytree (e.g. the train state) replicated on the mesh."""
    return jax.device_put(tree, replicated_sharding(mesh))


def shard_batch(local: Mapping[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """Assembles this process's share of a batch into global arrays sharded on ``data``.

    Args:
      local: arrays ``[B_local, ...]``; ``B_local * process_count`` is the global batch,
        which must divide evenly over the mesh's devices.
    """
    sharding = batch_sharding(mesh)
    out = {}
    for name, value in local.items():
        global_shape = (value.shape[0] * jax.process_count(), *value.shape[1:])
        if global_shape[0] % mesh.size:
            raise ValueError(
                f"global batch of {global_shape[0]} does not divide over {mesh.size} devices"
            )
        out[name] = jax.make_array_from_process_local_data(sharding, value, global_shape)
    return out
