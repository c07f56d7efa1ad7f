"""`jaxinterp reproduce --quick` end to end at a reduced size (a small MLP, a few steps)."""

import json
import os
import re
from types import SimpleNamespace

import pytest

from jaxinterp import cli
from jaxinterp.experiments import study, verdict

# A study file as a user would write one: the mnist5k study, shrunk to run in about a minute.
STUDY = """
from jaxinterp.experiments.study import study_config


def get_config():
    s = study_config("mnist5k")
    s.model = "mlp"
    s.model_kwargs.hidden = (32,)
    s.num_steps = 20
    s.localisation_num_steps = 20
    s.num_examples = 6
    s.localisation_num_examples = 6
    s.eval_batch_size = 6
    s.num_figure_examples = 1
    s.eval.attack_steps = 3
    s.eval.manipulation_steps = 3
    s.eval.num_samples = 2
    s.eval.deletion_steps = 4
    s.protocol.rps_radii = (4 / 255, 16 / 255)
    s.protocol.relex_iterations = 3
    s.protocol.relex_samples = 2
    s.protocol.targeted_steps = 3
    s.protocol.boundary_examples = 3
    s.protocol.boundary_epsilons = (1.0, 4.0)
    s.protocol.cw_binary_search_steps = 1
    s.data_dir = {data_dir!r}
    return s
"""


@pytest.fixture(scope="module")
def report(tmp_path_factory, data_dir):
    root = tmp_path_factory.mktemp("reproduce")
    config = root / "study.py"
    config.write_text(STUDY.format(data_dir=data_dir))
    out = root / "out"
    status = cli.main(["reproduce", "--quick", "--config", str(config), "--out", str(out)])
    assert status == 0
    return out


def test_report_lists_every_claim_with_a_status_and_numbers(report):
    text = (report / "report.md").read_text()
    for i in range(1, 6):
        assert f"## Claim {i}:" in text
    summary = json.loads((report / "results.json").read_text())
    assert [c["id"] for c in summary["claims"]] == [1, 2, 3, 4, 5]
    for c in summary["claims"]:
        assert c["status"].split(" (")[0] in set(verdict.VERDICTS) | {"mixed"}
        assert c["checks"] and c["gates"] and c["tables"]
        for t in c["tables"]:
            assert t["rows"] and all(len(r) == len(t["columns"]) for r in t["rows"])
        for check in c["checks"]:  # every check shows the numbers it compared, and a verdict
            assert re.search(r"\d\.\d|\(nan\)", check["check"]), check
            # One seed: no noise estimate, so nothing can be decided.
            assert check["verdict"] in ("inconclusive", "not measured"), check
    assert "inconclusive" in text and "Gates:" in text
    assert summary["quick"] and summary["study"]["seeds"] == [0]
    assert set(summary["accuracy"]) == {f"{m}_s0" for m in study.MODELS}


def test_figures_are_written(report):
    figures = sorted(os.listdir(report / "figures"))
    assert [f"claim{i}_metrics.png" for i in range(1, 6)] == [f for f in figures if "claim" in f]
    assert "attributions_standard.png" in figures
    assert "attributions_localisation_standard.png" in figures
    for f in figures:
        assert (report / "figures" / f).read_bytes()[:4] == b"\x89PNG"


def test_figures_draw_relex_with_the_studys_settings(tmp_path, monkeypatch):
    import numpy as np

    from jaxinterp.experiments import report as report_lib
    from jaxinterp.experiments.claims_attribution import relex_settings

    calls = []

    def attributions(apply_fn, params, x, target, methods, **kw):
        calls.append((x.shape, kw.get("overrides")))
        return {name: np.ones_like(x) for name in methods}

    monkeypatch.setattr(report_lib, "compute_attributions", attributions)
    monkeypatch.setattr(report_lib, "plot_grid", lambda *a, **k: None)
    s = study.quick(study.study_config())
    protocol = dict(s.protocol.to_dict())
    m = SimpleNamespace(apply_fn=None, params=None, layer_fn=None)
    x = np.zeros((6, 28, 28, 1), np.float32)
    lab = SimpleNamespace(
        xy=lambda: (x, np.zeros(6, np.int32), None),
        seeds=[0],
        models={("standard", 0): m, ("lga", 0): m},
        localisation={0: m},
        localisation_test=SimpleNamespace(
            images=np.zeros((6, 32, 32, 1), np.float32), labels=np.zeros(6, np.int32)
        ),
        predictions=lambda model, xs: np.zeros(len(xs), np.int32),
        protocol=protocol,
    )
    report_lib.figures(lab, s, str(tmp_path), [])
    # quick: the standard model and the localisation model, 4 examples each
    assert [shape for shape, _ in calls] == [(4, 28, 28, 1), (4, 32, 32, 1)]
    for shape, overrides in calls:
        assert overrides == {"relex": relex_settings(protocol, shape[1:])}
    relex = calls[0][1]["relex"]
    assert relex["num_samples"] == protocol["relex_samples"] != 50  # not the registry default
    assert relex["num_iterations"] == protocol["relex_iterations"]
    assert relex["lambda1"] == pytest.approx(1e-4 * 224 * 224 * 3 / (28 * 28))


def test_a_rerun_reuses_the_trained_models(report, capsys):
    summary = json.loads((report / "results.json").read_text())
    config = report.parent / "study.py"
    status = cli.main(
        ["reproduce", "--quick", "--config", str(config), "--out", str(report), "--claims", "5"]
    )
    assert status == 0
    again = json.loads((report / "results.json").read_text())
    assert again["accuracy"] == summary["accuracy"]  # same checkpoints, not retrained
    assert [c["id"] for c in again["claims"]] == [5]
    assert "claim 5 (" in capsys.readouterr().out


def test_quick_shrinks_the_study():
    full = study.study_config()
    q = study.quick(full)
    assert full.dataset == "mnist5k" and full.localisation_dataset == "mnist_canvas"
    assert len(full.seeds) >= 3 and len(q.seeds) == 1 and q.num_steps < full.num_steps
    assert q.num_examples <= full.num_examples
    assert study.study_config("mnist").localisation_dataset == ""


def test_study_models_are_the_small_cnn_and_one_step_pgd_at_mixes_the_clean_loss():
    s = study.study_config()
    small = {"channels": (16, 16, 32, 32), "hidden": 64}
    for name in study.MODELS:
        c = study.model_config(s, name, 1)
        assert (c.model, c.seed, c.model_kwargs.to_dict()) == ("cnn", 1, small), name
    at = study.model_config(s, "pgd_at", 0)
    assert (at.ce_weight, at.penalties.pgd_at.weight, at.penalties.pgd_at.num_steps) == (
        0.5,
        0.5,
        1,
    )
    assert at.penalties.pgd_at.step_size == pytest.approx(1.25 * s.eval.epsilon)
    trades = study.model_config(s, "trades", 0)
    assert trades.ce_weight == 1.0 and trades.penalties.trades.weight == 6.0  # unchanged
    loc = study.model_config(s, "standard", 0, localisation=True)
    assert loc.model_kwargs.to_dict() == s.localisation_model_kwargs.to_dict()
    assert loc.beta == s.localisation_beta
    s.robust_attack_steps = 3  # PGD-3: Madry et al.'s adversarial loss alone
    at = study.model_config(s, "pgd_at", 0)
    assert (at.ce_weight, at.penalties.pgd_at.weight) == (0.0, 1.0)
    s.cnn_kwargs = {}  # the CNN's own default width
    assert study.model_config(s, "standard", 0).model_kwargs.to_dict() == {}
    del s["cnn_kwargs"]  # a study file written before the field: still accepted
    study.check_study(s)


def test_the_study_models_share_one_compiled_initialisation():
    """The six models have one architecture, so one ``Model`` and one jitted ``init``; the
    localisation model (its own width and β) gets its own."""
    from jaxinterp.experiments.setup import model_from_config
    from jaxinterp.experiments.train import _init_fn

    s = study.study_config()
    inits = {
        id(_init_fn(model_from_config(study.model_config(s, name, 0), 10).init))
        for name in study.MODELS
    }
    loc = model_from_config(study.model_config(s, "standard", 0, localisation=True), 10)
    assert len(inits) == 1
    assert id(_init_fn(loc.init)) not in inits


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--claims", "7"], "unknown claim(s) [7]"),
        (["--claims", "one"], "--claims must be comma-separated integers"),
        (["--config", "nosuch.py"], "nosuch.py"),
    ],
)
def test_bad_input_is_one_line(tmp_path, capsys, argv, message):
    status = cli.main(["reproduce", "--out", str(tmp_path / "o"), *argv])
    assert status == 2
    assert message in capsys.readouterr().err.strip().splitlines()[-1]
