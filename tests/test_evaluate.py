"""`jaxinterp evaluate` end to end, and the aggregation behind it."""

import json
import os

import jax.numpy as jnp
import numpy as np
import pytest

from jaxinterp import cli
from jaxinterp.experiments import evaluate as evaluate_lib
from jaxinterp.experiments import metric_suite

CONFIG = os.path.join(os.path.dirname(__file__), "..", "configs", "digits_standard.py")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, data_dir):
    path = str(tmp_path_factory.mktemp("evaluate") / "run")
    argv = ["train", "--config", CONFIG, "--workdir", path]
    status = cli.main(
        [*argv, f"--config.data_dir={data_dir}", "--config.num_steps=60", "--config.log_every=60"]
    )
    assert status == 0
    return path


def test_evaluate_cli_writes_json_and_table(workdir, tmp_path, capsys):
    out = tmp_path / "metrics.json"
    methods = "gradient,ig,grad_cam"
    argv = ["evaluate", "--workdir", workdir, "--methods", methods, "--out", str(out)]
    metrics = "deletion,insertion,completeness,gini,rps,topk_attack"
    # One batch (8): the remainder batch is covered by the toy-method test below.
    status = cli.main([*argv, "--metrics", metrics, "--num-examples", "8", "--batch-size", "8"])
    assert status == 0
    printed = capsys.readouterr().out
    assert "| metric | gradient | ig |" in printed and "| deletion/auc |" in printed
    result = json.loads(out.read_text())
    assert result["num_examples"] == 8 and 0.0 <= result["accuracy"] <= 1.0
    ig = result["results"]["ig"]
    for name in ("deletion/auc", "insertion/auc", "gini/value", "rps/pearson", "rps/ssim"):
        assert ig[name]["count"] == 8 and np.isfinite(ig[name]["mean"])
    assert 0.0 <= ig["topk_attack/topk_intersection"]["mean"] <= 1.0
    # IG is complete (32 Gauss-Legendre steps on a smooth model); the gradient is not.
    assert abs(ig["completeness/delta"]["mean"]) < 0.05
    assert result["results"]["gradient"]["completeness/delta"]["std"] > 0.05
    # Grad-CAM runs by name on the loaded CNN (its layer_fn); no attack through it.
    assert np.isfinite(result["results"]["grad_cam"]["deletion/auc"]["mean"])
    assert "grad_cam/topk_attack" in result["skipped"]


def test_evaluate_skips_attacks_on_non_differentiable_methods(workdir, tmp_path):
    out = str(tmp_path / "m.json")
    result = evaluate_lib.evaluate(
        workdir, ["relex"], ["gini", "topk_attack"], out, num_examples=2, batch_size=2
    )
    assert result["skipped"] == ["relex/topk_attack"]
    assert list(result["results"]["relex"]) == ["gini/value"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--metrics", "nosuch"], "unknown metric(s) nosuch"),
        (["--metrics", "energy_game"], "energy_game need a dataset with boxes"),
        (["--methods", "magic"], "unknown explainer(s) magic"),
        (["--num-examples", "0"], "num_examples and batch_size must be >= 1"),
    ],
)
def test_evaluate_bad_input_is_one_line(workdir, tmp_path, capsys, argv, message):
    out = str(tmp_path / "m.json")
    status = cli.main(["evaluate", "--workdir", workdir, "--out", out, *argv])
    assert status == 2
    assert message in capsys.readouterr().err.strip().splitlines()[-1]


def test_summary_is_the_accumulated_mean_std_count():
    rng = np.random.default_rng(0)
    values = {"m": {"a/value": rng.normal(size=13), "b/value": rng.uniform(size=13)}}
    summary = evaluate_lib.summarize(values)
    for k, v in values["m"].items():
        got = summary["m"][k]
        assert got["count"] == 13
        np.testing.assert_allclose([got["mean"], got["std"]], [v.mean(), v.std()], rtol=1e-5)


def test_every_metric_has_a_requirement_class():
    for name in metric_suite.METRICS:
        assert metric_suite.needs(name) in (None, "differentiable", "boxes")
    # --help lists what the registries hold (including a newly registered name).
    help_text = " ".join(
        cli._parser()._subparsers._group_actions[0].choices["evaluate"].format_help().split()
    )
    assert all(name in help_text for name in metric_suite.METRICS)
    metric_suite.METRICS.register("toy_listed", lambda c: {})
    try:
        parser = cli._parser()._subparsers._group_actions[0].choices["evaluate"]
        assert "toy_listed" in parser.format_help()
    finally:
        metric_suite.METRICS.unregister("toy_listed")


def test_a_toy_method_and_metric_added_by_one_registry_line_run_from_the_cli(
    workdir, tmp_path, capsys
):
    """The contributing path of the README: one factory + one registry line each."""
    from jaxinterp import attribution
    from jaxinterp.core import ops
    from jaxinterp.experiments import metric_suite

    def abs_input(*, scale: float = 1.0):
        """|x| times a scale (a toy explainer)."""

        def explain(apply_fn, params, x, y, *, key=None):
            return scale * jnp.abs(x)

        return explain

    attribution.EXPLAINERS.register("toy_abs_input", abs_input, scale=2.0)
    metric_suite.METRICS.register(
        "toy_gap", lambda c: {"value": ops.row_sum(c.attr - 2.0 * jnp.abs(c.x))}
    )
    try:
        out = tmp_path / "toy.json"
        argv = ["evaluate", "--workdir", workdir, "--methods", "toy_abs_input,gradient"]
        status = cli.main(
            [*argv, "--metrics", "toy_gap,gini", "--out", str(out), "--num-examples", "8"]
            + ["--batch-size", "5"]  # a full batch and a remainder of 3
        )
        assert status == 0, capsys.readouterr().err
        toy = json.loads(out.read_text())["results"]["toy_abs_input"]
        assert toy["toy_gap/value"]["count"] == 8 and toy["toy_gap/value"]["mean"] == 0.0
        grad = json.loads(out.read_text())["results"]["gradient"]
        assert grad["toy_gap/value"]["mean"] != 0.0  # the metric sees each method's own map
        png = str(tmp_path / "toy.png")
        argv = ["explain", "--workdir", workdir, "--methods", "toy_abs_input", "--out", png]
        assert cli.main([*argv, "--num-examples", "2"]) == 0, capsys.readouterr().err
        assert os.path.getsize(png) > 0
    finally:
        attribution.EXPLAINERS.unregister("toy_abs_input")
        metric_suite.METRICS.unregister("toy_gap")
    assert "toy_abs_input" not in attribution.EXPLAINERS
