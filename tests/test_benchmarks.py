"""Benchmarks run in a quick mode (a smoke test of the code, not a timing)."""

import json

from benchmarks import attribution, regularizers, train_step


def test_train_step_benchmark_quick(tmp_path, capsys):
    out = tmp_path / "bench.json"
    rows = train_step.main(
        [
            "--models",
            "mlp",
            "--batch-sizes",
            "8",
            "--input-shape",
            "8,8,1",
            "--repeats",
            "2",
            "--json",
            str(out),
        ]
    )
    assert rows[0]["median_s"] > 0 and rows[0]["examples_per_s"] > 0
    assert "| mlp | 8 |" in capsys.readouterr().out
    saved = json.loads(out.read_text())
    assert saved["machine"]["backend"] == "cpu" and len(saved["results"]) == 1


def test_regularizers_benchmark_quick(tmp_path, capsys):
    out = tmp_path / "reg.json"
    rows = regularizers.main(
        [
            "--model",
            "mlp",
            "--batch-sizes",
            "4",
            "--input-shape",
            "4,4,1",
            "--repeats",
            "1",
            "--penalties",
            "input_gradient_norm,hessian_norm",
            "--json",
            str(out),
        ]
    )
    assert [(r["penalty"], r["impl"]) for r in rows] == [
        ("plain", "-"),
        ("input_gradient_norm", "fast"),
        ("input_gradient_norm", "autodiff"),
        ("hessian_norm", "fast"),
        ("hessian_norm", "autodiff"),
    ]
    assert all(r["ratio"] > 0 for r in rows) and rows[0]["ratio"] == 1.0
    assert "| mlp | 4 | hessian_norm | autodiff |" in capsys.readouterr().out
    assert len(json.loads(out.read_text())["results"]) == 5


def test_attribution_benchmark_quick(capsys):
    rows = attribution.main(
        [
            "--model",
            "mlp",
            "--batch-size",
            "2",
            "--input-shape",
            "4,4,1",
            "--repeats",
            "1",
            "--methods",
            "gradient,ig_gl_16,smoothgrad_25",
        ]
    )
    assert [r["method"] for r in rows] == ["gradient", "ig_gl_16", "smoothgrad_25"]
    assert all(r["images_per_s"] > 0 for r in rows)
    assert "| ig_gl_16 | 2 |" in capsys.readouterr().out
