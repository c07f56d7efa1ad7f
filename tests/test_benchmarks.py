"""Benchmarks run in a quick mode (a smoke test of the code, not a timing)."""

import json

from benchmarks import train_step


def test_train_step_benchmark_quick(tmp_path, capsys):
    out = tmp_path / "bench.json"
    rows = train_step.main(
        ["--models", "mlp", "--batch-sizes", "8", "--input-shape", "8,8,1", "--repeats", "2",
         "--json", str(out)]
    )  # fmt: skip
    assert rows[0]["median_s"] > 0 and rows[0]["examples_per_s"] > 0
    assert "| mlp | 8 |" in capsys.readouterr().out
    saved = json.loads(out.read_text())
    assert saved["machine"]["backend"] == "cpu" and len(saved["results"]) == 1
