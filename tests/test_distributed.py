"""Two processes over loopback (jax.distributed) train like one process with two devices."""

import jax
import numpy as np

from jaxinterp.experiments import load_trained
from tests import _subprocess as sp

OVERRIDES = ("--config.num_steps=20", "--config.batch_size=32", "--config.checkpoint_every=10")


def test_two_processes_agree_with_one(tmp_path, data_dir):
    sp.run(sp.train_command(str(tmp_path / "warm"), data_dir, "--config.num_steps=1"), 1)
    single = str(tmp_path / "single")
    sp.run(sp.train_command(single, data_dir, *OVERRIDES), 2)

    multi = str(tmp_path / "multi")
    port = sp.free_port()
    procs = [
        sp.start(
            sp.train_command(
                multi, data_dir, *OVERRIDES, "--config.distributed.enabled=true",
                f"--config.distributed.coordinator_address=127.0.0.1:{port}",
                "--config.distributed.num_processes=2", f"--config.distributed.process_id={i}",
            ),
            1,
        )
        for i in range(2)
    ]  # fmt: skip
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-3000:]

    a, b = load_trained(single), load_trained(multi)
    assert a.step == b.step == 20
    # Same global batches; only the all-reduce differs (in-process vs gloo across processes).
    jax.tree.map(
        lambda u, v: np.testing.assert_allclose(u, v, rtol=1e-4, atol=1e-6),
        jax.device_get(a.params),
        jax.device_get(b.params),
    )
