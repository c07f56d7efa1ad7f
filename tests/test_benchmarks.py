"""Benchmarks run in quick mode: a smoke test of the code (tiny shapes, 1 repeat), not a timing."""

import json

import pytest

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
    rows = regularizers.main(["--quick", "--model", "mlp", "--json", str(out)])
    expected = [("plain", "-")] + [
        (name, impl) for name in regularizers.PENALTIES for impl in ("fast", "autodiff")
    ]
    assert [(r["penalty"], r["impl"]) for r in rows] == expected
    assert all(r["ratio"] > 0 and r["temp_bytes"] != 0 for r in rows) and rows[0]["ratio"] == 1.0
    # Exactly one default impl per penalty, and it is the factory's own default.
    assert sum(r["default"] for r in rows) == len(regularizers.PENALTIES)
    assert "| mlp | 4 | hessian_norm | autodiff (default) |" in capsys.readouterr().out
    saved = json.loads(out.read_text())
    assert len(saved["results"]) == len(expected)
    for field in ("cpu", "cores", "backend", "device_kind", "jax", "jaxlib", "flax", "optax"):
        assert saved["machine"][field], field


def test_regularizers_benchmark_arguments():
    args = regularizers.parse_args(["--models", "cnn,mlp"])
    assert args.models == "cnn,mlp" and args.batch_sizes == [32, 128, 512]
    assert args.input_shape == (32, 32, 3) and args.penalties == list(regularizers.PENALTIES)
    args = regularizers.parse_args(["--model", "mlp", "--quick", "--batch-sizes", "2,3"])
    assert args.models == "mlp" and args.batch_sizes == [2, 3] and args.repeats == 1


def test_regularizers_benchmark_rejects_unknown_penalty():
    with pytest.raises(SystemExit):
        regularizers.main(["--quick", "--penalties", "nope"])


def test_attribution_benchmark_quick(tmp_path, capsys):
    out = tmp_path / "attr.json"
    rows = attribution.main(["--quick", "--model", "mlp", "--json", str(out)])
    assert [r["method"] for r in rows] == list(attribution.QUICK_METHODS)
    assert all(r["images_per_s"] > 0 for r in rows)
    assert "| mlp | ig_gl_4 | 2 |" in capsys.readouterr().out
    assert len(json.loads(out.read_text())["results"]) == len(rows)


@pytest.mark.parametrize(
    "name, settings",
    [
        ("ig_gl_16", {"rule": "gauss_legendre", "steps": 16, "chunk_size": None}),
        ("ig_riemann_left_128_c16", {"rule": "riemann_left", "steps": 128, "chunk_size": 16}),
        ("ig_rtrap_50_chunk10", {"rule": "riemann_trapezoid", "steps": 50, "chunk_size": 10}),
        ("smoothgrad_25_c5", {"samples": 25, "chunk_size": 5}),
        ("relex", {"iterations": 50, "samples": 50}),
        ("pgd_l2_10", {"norm": "l2", "steps": 10}),
    ],
)
def test_attribution_method_names(name, settings):
    assert attribution.build_method(name)[1] == settings


def test_attribution_default_methods_cover_every_rule():
    names = [n for n in attribution.DEFAULT_METHODS if n.startswith("ig_")]
    rules = {attribution.build_method(n)[1]["rule"] for n in names}
    assert rules == set(attribution.attribution.METHODS)
    assert any(attribution.build_method(n)[1]["chunk_size"] for n in names)
    for name in attribution.DEFAULT_METHODS + tuple(attribution.ig_grid()):
        attribution.build_method(name)
    with pytest.raises(ValueError, match="unknown IG rule"):
        attribution.build_method("ig_simpson_8")
