"""The README's main job: the softplus CNN on digits reaches >= 95% in under 3 minutes."""

import json
import time

from tests import _subprocess as sp


def test_main_job_accuracy_and_time(tmp_path, data_dir):
    sp.run(sp.train_command(str(tmp_path / "warm"), data_dir, "--config.num_steps=1"), 1)
    t0 = time.perf_counter()
    out = sp.run(sp.train_command(str(tmp_path / "standard"), data_dir), 1)
    seconds = time.perf_counter() - t0
    result = json.loads(out.strip().splitlines()[-1])
    assert result["step"] == 500
    assert result["eval/accuracy"] >= 0.95, result
    assert seconds < 180, f"main job took {seconds:.0f} s"
