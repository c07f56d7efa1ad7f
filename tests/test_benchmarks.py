"""Benchmarks run in quick mode: a smoke test of the code (tiny shapes, 1 repeat), not a timing."""

import importlib.util
import json

import pytest

from benchmarks import _timing, attribution, compare_torch, regularizers, scaling, train_step


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


def test_train_step_benchmark_softplus_over_relu(capsys):
    argv = ["--quick", "--models", "mlp", "--activations", "relu,softplus"]
    rows = train_step.main(argv)
    assert [r["activation"] for r in rows] == ["relu", "softplus"]
    assert rows[0]["ratio_to_relu"] == 1.0 and rows[1]["ratio_to_relu"] > 0
    assert "| time / ReLU step |" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        train_step.main(["--quick", "--models", "mlp", "--activations", "tanh"])


def test_regularizers_benchmark_quick(tmp_path, capsys):
    out = tmp_path / "reg.json"
    # One impl keeps the smoke test short; every penalty the targets name must be present.
    argv = ["--quick", "--model", "mlp", "--impls", "autodiff", "--json", str(out)]
    rows = regularizers.main(argv)
    expected = [("plain", "-")] + [(name, "autodiff") for name in regularizers.PENALTIES]
    assert [(r["penalty"], r["impl"]) for r in rows] == expected
    assert all(r["ratio"] > 0 and r["temp_bytes"] != 0 for r in rows) and rows[0]["ratio"] == 1.0
    for r in rows[1:]:
        assert r["default"] == (regularizers.default_impl(r["penalty"]) == "autodiff")
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


TORCH_MISSING = compare_torch.torch_missing()
needs_torch = pytest.mark.skipif(
    TORCH_MISSING is not None,
    reason="optional extra not installed (pip install '.[bench]': torch, captum)",
)


HAND_WRITTEN = (
    "pgd10",
    "pgd40",
    "cw_l2",
    "boundary_search",
    "relex",
    "pgd_at_step",
    "trades_step",
)
"""The iterative cases against a hand-written PyTorch loop (the others: torchattacks)."""


def test_compare_torch_case_names():
    args = compare_torch.parse_args([])
    assert args.iterative == [*HAND_WRITTEN, "apgd_ce", "apgd_t"] and args.apgd_steps == 10
    assert (args.occ_window, args.occ_stride, args.occ_chunk) == (4, 2, 64)
    assert compare_torch.parse_args(["--quick"]).apgd_steps == 2
    # 32 − 5 is not a multiple of 2: jaxinterp's last window would differ from Captum's.
    with pytest.raises(SystemExit):
        compare_torch.parse_args(["--occ-window", "5"])
    compare_torch.parse_args(["--occ-window", "5", "--attributions", "gradient"])


def test_compare_torch_without_torch_prints_install_hint(monkeypatch, capsys):
    monkeypatch.setattr(compare_torch, "torch_missing", lambda: "No module named 'torch'")
    assert compare_torch.main(["--quick"]) == []
    out = capsys.readouterr().out.strip()
    assert len(out.splitlines()) == 1 and 'pip install ".[bench]"' in out


@needs_torch
def test_compare_torch_quick(tmp_path, capsys):
    out = tmp_path / "cmp.json"
    rows = compare_torch.main(
        [
            "--quick",
            "--models",
            "mlp",
            "--penalties",
            "input_gradient_norm",
            "--attributions",
            "ig_riemann_trapezoid_4",
            # The APGD cases have their own test below (they keep this one short).
            "--iterative",
            ",".join(HAND_WRITTEN),
            "--json",
            str(out),
        ]
    )
    iterative = list(HAND_WRITTEN)
    assert [r["case"] for r in rows] == [
        "plain step",
        "input_gradient_norm",
        "ig_riemann_trapezoid_4",
        *iterative,
    ]
    assert all(r["check"]["status"].startswith("ok") for r in rows)
    assert all(r["jax_s"] > 0 and r["torch_s"] > 0 and r["torch_over_jax"] > 0 for r in rows)
    assert rows[1]["torch_func_s"] > 0 and rows[1]["jax_impl"] == "fast"
    assert all(r["ratio"] == r["torch_over_jax"] for r in rows)
    assert all("target_met" in r for r in rows)
    assert all(r["kind"] == "iterative" for r in rows[3:])
    text = capsys.readouterr().out
    assert "| mlp | 4 | input_gradient_norm |" in text and "Target IG vs Captum" in text
    assert "| mlp | 4 | pgd40 |" in text and "Target iterative case vs PyTorch eager" in text
    saved = json.loads(out.read_text())
    assert saved["machine"]["torch"] and saved["machine"]["captum"]
    assert saved["targets"] == {"penalty": 1.0, "ig": 1.0, "iterative": 1.5}


@needs_torch
def test_compare_torch_grad_cam_and_occlusion_quick(capsys):
    # Captum's LayerGradCam on the twin's conv4 tap and Occlusion at the same windows.
    rows = compare_torch.main(
        ["--quick", "--attributions", "grad_cam,occlusion", "--iterative", "", "--penalties", ""]
    )
    assert [r["case"] for r in rows] == ["plain step", "grad_cam", "occlusion"]
    assert rows[1]["check"]["status"] == "ok (map and bilinear upsampling)"
    assert set(rows[1]["check"]["errors"]) == {"map", "upsampled"}
    assert rows[2]["cfg"] == {"kind": "occlusion", "window": 4, "stride": 2, "chunk": 4}
    assert all(r["check"]["max_rel_err"] < 1e-4 for r in rows)
    assert all(r["jax_s"] > 0 and r["torch_s"] > 0 and "target" not in r for r in rows[1:])
    assert "| cnn | 4 | occlusion |" in capsys.readouterr().out


needs_torchattacks = pytest.mark.skipif(
    importlib.util.find_spec("torchattacks") is None, reason="torchattacks not installed"
)


@needs_torch
@needs_torchattacks
def test_compare_torch_apgd_quick(tmp_path):
    out = tmp_path / "apgd.json"
    argv = ["--quick", "--models", "mlp", "--attributions", "", "--penalties", ""]
    rows = compare_torch.main([*argv, "--iterative", "apgd_ce", "--json", str(out)])
    assert [r["case"] for r in rows] == ["plain step", "apgd_ce"]
    check = rows[1]["check"]
    assert check["status"].startswith("ok (not draw for draw: ε-ball, [0,1]; robust acc")
    assert check["errors"]["jaxinterp_linf"] <= 8 / 255 + 1e-6
    assert rows[1]["kind"] == "apgd" and rows[1]["jax_s"] > 0 and rows[1]["torch_s"] > 0
    saved = json.loads(out.read_text())
    assert saved["machine"]["torchattacks"] and saved["settings"]["apgd_steps"] == 2


@needs_torch
def test_compare_torch_skips_with_a_reason(monkeypatch, capsys, tmp_path):
    # APGD rows without torchattacks, and Grad-CAM on the MLP (no spatial layer): a printed
    # reason each, in the JSON too, and no error.
    from benchmarks import _torch_baselines

    monkeypatch.setattr(_torch_baselines, "torchattacks_missing", lambda: "No module named x")
    out = tmp_path / "skip.json"
    argv = ["--quick", "--check-only", "--models", "mlp", "--attributions", "grad_cam"]
    argv += ["--penalties", "", "--iterative", "apgd_ce,apgd_t", "--json", str(out)]
    rows = compare_torch.main(argv)
    assert [r["case"] for r in rows] == ["plain step"]
    text = capsys.readouterr().out
    assert "[mlp] apgd_ce: skipped, torchattacks missing (No module named x)" in text
    assert "[mlp] grad_cam: skipped, no such attribution case for this model" in text
    assert len(json.loads(out.read_text())["settings"]["skipped"]) == 3


@needs_torch
def test_compare_torch_float64_fallback():
    from benchmarks import _torch_checks

    calls = []

    def errors(dtype):
        calls.append(str(dtype.dtype if hasattr(dtype, "dtype") else dtype))
        return {"value": 1e-3 if len(calls) == 1 else 1e-12}

    out = _torch_checks._twice(errors, "case")
    assert out["status"].startswith("ok (float64") and out["float32_max_rel_err"] == 1e-3
    with pytest.raises(_torch_checks.ValueMismatch, match="case"):
        _torch_checks._twice(lambda dtype: {"value": 1e-3}, "case")


@needs_torch
def test_compare_torch_cnn_values_agree():
    # The CNN exercises the layout conversions (OIHW kernels, NCHW flatten order, features)
    # and, from the riemann_left rule, IG's gradient at the baseline.
    rows = compare_torch.main(
        [
            "--quick",
            "--check-only",
            "--penalties",
            "activation_sensitivity",
            "--attributions",
            "ig_riemann_left_4",
            "--iterative",
            "",
        ]
    )
    assert [r["case"] for r in rows] == [
        "plain step",
        "activation_sensitivity",
        "ig_riemann_left_4",
    ]
    assert all(r["check"]["status"] == "ok" and r["check"]["max_rel_err"] < 1e-4 for r in rows)
    assert all("jax_s" not in r for r in rows)


@needs_torch
def test_compare_torch_disagreement_raises():
    import torch

    from benchmarks import _torch_checks, _torch_models
    from benchmarks._setup import BETA, Setup

    s = Setup("mlp", 2, (4, 4, 1))
    tmodel = _torch_models.build("mlp", s.params, (4, 4, 1), BETA)
    with torch.no_grad():
        tmodel.hidden[0].weight.mul_(1.01)
    x, y = s.batch["image"], s.batch["label"]
    with pytest.raises(_torch_checks.ValueMismatch, match="logits"):
        _torch_checks.check_logits(s, tmodel, x)
    with pytest.raises(_torch_checks.ValueMismatch, match="input_gradient_norm"):
        _torch_checks.check_penalty("input_gradient_norm", s, tmodel, x, y, None, ("fast",))


def test_interleaved_timing_pairs_rounds_under_drift(monkeypatch):
    """On a machine whose speed drifts between rounds, the paired ratio is the true one (A
    takes twice B's time in every round), while the ratio of medians of two separate blocks
    is not; calls alternate A B, B A, ...; warm-up calls are not timed."""
    clock = {"t": 0.0, "round_speed": 1.0}
    order = []

    def call(name, cost):
        def fn():
            order.append(name)
            clock["t"] += cost * clock["round_speed"]
            if len(order) % 2 == 0:
                clock["round_speed"] *= 1.5  # the machine slows down after every two calls
            return name

        return fn

    monkeypatch.setattr(_timing.time, "perf_counter", lambda: clock["t"])
    calls = {"a": call("a", 2.0), "b": call("b", 1.0)}
    t = _timing.time_interleaved(calls, repeats=4, warmup=1, syncs={"a": lambda r: r})
    assert order == ["a", "b", "a", "b", "b", "a", "a", "b", "b", "a"]
    assert all(len(v["times"]) == 4 for v in t.values())
    assert _timing.paired_ratio(t["a"]["times"], t["b"]["times"]) == pytest.approx(2.0)
    # Blocks (all of a, then all of b) under the same drift: the ratio is far from 2.
    clock.update(t=0.0, round_speed=1.0)
    order.clear()
    a = _timing.time_interleaved({"a": calls["a"]}, repeats=4, warmup=0)["a"]["median_s"]
    b = _timing.time_interleaved({"b": calls["b"]}, repeats=4, warmup=0)["b"]["median_s"]
    assert a / b < 1.0
    with pytest.raises(ValueError, match="equally long"):
        _timing.paired_ratio([1.0, 2.0], [1.0])


def test_scaling_benchmark_quick(tmp_path, capsys):
    # Each device count runs in a child process with its own fake-device count.
    out = tmp_path / "scaling.json"
    rows = scaling.main(["--quick", "--model", "mlp", "--devices", "1,2", "--json", str(out)])
    assert [(r["devices"], r["device_count"], r["global_batch"]) for r in rows] == [
        (1, 1, 8),
        (2, 2, 8),
    ]
    assert all(r["mode"] == "subprocess" and r["examples_per_s"] > 0 for r in rows)
    assert rows[0]["efficiency"] == 1.0 and rows[1]["efficiency"] > 0
    assert "| mlp | none | 2 | 8 | 4 |" in capsys.readouterr().out
    assert len(json.loads(out.read_text())["results"]) == 2


def test_scaling_helpers():
    env = scaling.child_env(3)
    assert env["XLA_FLAGS"].count("xla_force_host_platform_device_count") == 1
    assert env["XLA_FLAGS"].endswith("--xla_force_host_platform_device_count=3")
    rows = [{"devices": 2, "examples_per_s": 100.0}, {"devices": 4, "examples_per_s": 150.0}]
    scaling.add_efficiency(rows)
    assert [r["efficiency"] for r in rows] == [1.0, 0.75]
    weak = scaling.parse_args(["--per-device-batch", "16", "--devices", "1,4"])
    assert [scaling.global_batch(weak, n) for n in (1, 4)] == [16, 64]
    with pytest.raises(SystemExit):
        scaling.parse_args(["--batch-size", "6", "--devices", "1,4"])


def test_loops_benchmark_quick(tmp_path, capsys):
    from benchmarks import loops

    out = tmp_path / "loops.json"
    rows = loops.main(["--quick", "--methods", "pgd2,topk_attack", "--json", str(out)])
    assert [r["method"] for r in rows] == ["pgd2", "topk_attack"]
    assert all(r["loop_s"] > 0 and r["unrolled_s"] > 0 and r["slow_convs"] == 0 for r in rows)
    assert rows[0]["old_s"] > 0 and "old_s" not in rows[1]
    assert all(r["loop_over_unrolled"] > 0 for r in rows) and rows[0]["old_over_loop"] > 0
    assert "| pgd2 |" in capsys.readouterr().out
    assert json.loads(out.read_text())["machine"]["cores"] >= 1


def test_loops_unrolled_context_restores_fori_loop():
    import jax

    from benchmarks import loops

    original = jax.lax.fori_loop
    with loops.unrolled_loops():
        assert jax.lax.fori_loop is not original
        text = jax.jit(lambda v: jax.lax.fori_loop(0, 3, lambda i, c: c * 2.0, v)).lower(1.0)
        assert "while" not in text.as_text()
    assert jax.lax.fori_loop is original


def test_benchmark_suite_quick(tmp_path):
    from benchmarks import suite

    # Each part's own benchmark has its own test above; two cheap parts check the assembly.
    summary = suite.main(["--quick", "--out", str(tmp_path), "--parts", "attribution,loops"])
    assert set(summary["parts"]) == {"attribution", "loops"}
    assert all(p["rows"] for p in summary["parts"].values())
    md = (tmp_path / "suite.md").read_text()
    assert "## attribution" in md and "## loops" in md and "| pgd2 |" in md
    assert json.loads((tmp_path / "suite.json").read_text())["parts"]["loops"]["seconds"] > 0


def test_faults_quick_configs(tmp_path, data_dir, capsys):
    from benchmarks import faults

    out = tmp_path / "faults.json"
    argv = ["--quick", "--groups", "configs", "--data-dir", data_dir, "--json", str(out)]
    rows = faults.main(argv)
    assert len(rows) >= 10 and {r["group"] for r in rows} == {"configs"}
    saved = json.loads(out.read_text())
    summary = saved["summary"]["configs"]
    assert summary["count"] == len(rows) == sum(summary["outcomes"].values())
    assert summary["failed"] == 0 and saved["failures"] == [], saved["failures"]
    assert summary["outcomes"]["exit 2 one line"] >= 10
    text = capsys.readouterr().out
    assert f"* configs: {len(rows)} -> " in text and "## Failures (0)" in text
    assert "| configs | batch_size=99999999 | exit 2 one line | ok |" in text


def test_faults_classifiers_count_failures(tmp_path):
    import dataclasses

    import jax.numpy as jnp

    from benchmarks import faults
    from tests import test_fuzz

    run = faults.Run
    tb = 'Traceback (most recent call last):\n  File "x.py", line 1\nValueError: boom\n'
    assert faults.cli_outcome(run(None, raised="SyntaxError: invalid syntax")) == "traceback"
    assert faults.cli_outcome(run(1, err=tb)) == "traceback"
    assert faults.cli_outcome(run(0, err="step 2/2 loss 1.0 acc 0.5 (1.0 steps/s)\n")) == "exit 0"
    err = "W1201 12:00:00.000000 1 x.cc:1] a log line\njaxinterp: error: bad value\n"
    assert faults.cli_outcome(run(2, err=err)) == "exit 2 one line"
    assert faults.cli_outcome(run(2, err=tb + err)) == "exit 2 one line, after logged tracebacks"
    assert faults.cli_outcome(run(None, timed_out=True)) == "timeout"
    # A function that answers for a broken argument (a complex map) is a silent wrong answer.
    gini = test_fuzz.METRIC_SPECS["gini"]
    broken = dataclasses.replace(test_fuzz.VALID, dtype="complex64")
    assert faults.fuzz_outcome(gini, broken)[0] == "error naming the argument"
    answers = dataclasses.replace(gini, call=lambda x, y, a: jnp.zeros(len(x)))
    assert faults.fuzz_outcome(answers, broken)[0] == "silent wrong answer"
    assert faults.fuzz_outcome(gini, test_fuzz.VALID)[0] == "finite result of the right shape"
    # exit 0 without a word on a workdir whose state is not the reference one: silent.
    outcome, _ = faults.corruption_outcome(run(0), "explain", str(tmp_path), None, set())
    assert outcome == "silent"
    # Two trainers that both trained: a failure.
    both = [run(0, err="step 10/150 loss 1.0 acc 0.5 (9.0 steps/s)\n")] * 2
    assert faults.pair_outcome(both, str(tmp_path), set())[0] == "both trained"
    e2 = ("exit 2 one line",)
    results = [
        faults.result("configs", "a", "traceback", e2),
        faults.result("configs", "b", "exit 2 one line", e2),
        faults.result("library", "c", "silent wrong answer", faults.LIBRARY_PASS, family="metrics"),
        faults.result("kills", "d", faults.UNCLASSIFIED, (faults.UNCLASSIFIED,)),
    ]
    summary = faults.summarize(results)
    assert summary["configs"] == {
        "count": 2, "outcomes": {"traceback (FAIL)": 1, "exit 2 one line": 1}, "failed": 1,
    }  # fmt: skip
    assert summary["library"]["families"]["metrics"] == {
        "count": 1, "outcomes": {"silent wrong answer (FAIL)": 1},
    }  # fmt: skip
    assert summary["kills"]["failed"] == 1  # unclassified is never a pass
