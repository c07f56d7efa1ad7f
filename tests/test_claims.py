"""The verdicts of `jaxinterp reproduce`: gates, seed noise, and checks that can fail.

Every claim's judge runs on made-up per-seed tables: a table where the claim holds must give
"holds", the same table with the compared models swapped must give "does not hold", and a
failed gate must turn the checks that need it "inconclusive".
"""

from __future__ import annotations

import copy

import jax.numpy as jnp
import numpy as np
import pytest

from jaxinterp.experiments import claims, verdict
from jaxinterp.experiments.claims_attribution import CLAIMS

G = dict(claims.DEFAULT_GATES)


def test_compare_needs_three_seeds_and_a_gap_beyond_twice_the_seed_std():
    c = verdict.compare
    assert c("m", ("a", [2.0, 2.1, 2.2]), ("b", [1.0, 1.1, 1.0]), higher=True)["verdict"] == "holds"
    swapped = c("m", ("b", [1.0, 1.1, 1.0]), ("a", [2.0, 2.1, 2.2]), higher=True)
    assert swapped["verdict"] == "does not hold"
    lower = c("m", ("a", [1.0, 1.1, 1.0]), ("b", [2.0, 2.1, 2.2]), higher=False)
    assert lower["verdict"] == "holds"
    noisy = c("m", ("a", [2.0, 0.5, 3.0]), ("b", [1.0, 1.5, 1.2]), higher=True)
    assert noisy["verdict"] == "inconclusive" and "within" in noisy["reason"]
    one = c("m", ("a", [5.0]), ("b", [1.0]), higher=True)
    assert one["verdict"] == "inconclusive" and "seeds" in one["reason"]
    assert one["direction"] == "as claimed"
    tie = c("m", ("a", [1.0, 1.0, 1.0]), ("b", [1.0, 1.0, 1.0]), higher=True)
    assert tie["verdict"] == "inconclusive"
    nan = c("m", ("a", [float("nan")] * 3), ("b", [1.0] * 3), higher=True)
    assert nan["verdict"] == "not measured"
    failed = verdict.gate("attack", 0.1, 0.5)
    gated = c("m", ("a", [2.0, 2.1, 2.2]), ("b", [1.0] * 3), higher=True, gates=[failed])
    assert gated["verdict"] == "inconclusive" and "attack" in gated["reason"]
    assert not verdict.gate("x", float("nan"), 0.0)["passed"]
    assert verdict.gate("x", 0.01, 0.05, at_least=False)["passed"]
    with pytest.raises(ValueError, match="seeds"):
        c("m", ("a", [1.0, 2.0]), ("b", [1.0, 2.0, 3.0]), higher=True)


def test_status_summarises_the_verdicts():
    h = {"verdict": "holds"}
    n = {"verdict": "does not hold"}
    assert verdict.status([h, h]) == "holds"
    assert verdict.status([n]) == "does not hold"
    assert verdict.status([h, n, {"verdict": "inconclusive"}]).startswith("mixed (1 holds")
    assert verdict.status([]) == "not measured"


def _seeds(v: float, spread: float = 0.01) -> list[float]:
    return [v - spread, v, v + spread]


def _holding_tables() -> dict[int, dict]:
    """Per claim, made-up numbers with which every check of the claim holds."""
    sens = "activation sensitivity (normalised, finite differences)"
    topk = "top-k intersection (attack)"
    m1 = {
        name: {
            "accuracy": _seeds(0.95),
            "robust accuracy": _seeds(r),
            sens: _seeds(s),
            "RPS pearson": _seeds(rps),
            "max-sensitivity": _seeds(s),
            topk: _seeds(rps),
        }
        for name, r, s, rps in [
            ("standard", 0.1, 3.0, 0.5),
            ("pgd_at", 0.7, 2.0, 0.6),
            ("trades", 0.7, 2.0, 0.6),
            ("act_sens", 0.3, 1.0, 0.7),
        ]
    }
    gain = "frame correlation gained by the manipulation"
    m2 = {
        name: {
            "accuracy": _seeds(0.95),
            "1 − RPS @ 4/255": _seeds(v),
            "1 − RPS @ 16/255": _seeds(2 * v),
            gain: _seeds(v),
            "train step ms": _seeds(ms),
        }
        for name, v, ms in [("standard", 0.3, 10.0), ("hessian", 0.2, 40.0), ("lga", 0.1, 20.0)]
    }
    cos = "cos of the boundary normal, x vs matched radius"
    m3 = {
        name: {"robust accuracy": _seeds(r), "boundary found": _seeds(0.9), cos: _seeds(c)}
        for name, r, c in [("standard", 0.1, 0.3), ("pgd_at", 0.7, 0.8), ("trades", 0.7, 0.8)]
    }
    dg = "distractor game"
    loc = {n: {dg: _seeds(v)} for n, v in [
        ("gradient", 0.55), ("BSM", 0.7), ("BIG", 0.8), ("IG (black)", 0.6),
        ("IG (mean canvas)", 0.6), ("random map", 0.5), ("input |x|", 0.5),
    ]}  # fmt: skip
    loc["BIG"] |= {"consistency (3 boundary points)": _seeds(0.7),
                   "targeted boundary found": _seeds(0.9)}  # fmt: skip
    loc["IG (black)"]["consistency (3 baselines)"] = _seeds(0.4)
    loc["model"] = {"accuracy": _seeds(0.9)}
    methods4 = ["relex", "relex (no noise)", "smoothgrad", "ig", "gradient", "grad_cam", "random"]
    spec = ["specificity ε=0.15 top-10%", "specificity ε=0.15 top-25%"]
    m4 = {n: {c: _seeds(0.6 if n == "relex" else 0.2) for c in spec} for n in methods4}
    a4 = {"standard": {"attack success ε=0.15": _seeds(0.9), "flipped ε=0.15": _seeds(250.0)}}
    coh, ape = "spatial coherence", "APE − random top-10%"
    m5 = {n: {ape: _seeds(a), coh: _seeds(c)} for n, a, c in [
        ("regadv_l2", 0.5, 0.6), ("pgd_l2_perturbation", 0.2, 0.1), ("gradient", 0.3, 0.2),
        ("regadv", 0.4, 0.5), ("pgd_perturbation", 0.2, 0.1), ("random", 0.0, 0.0),
    ]}  # fmt: skip
    m5["attack"] = {"PGD success (standard)": _seeds(0.9)}
    loc5 = {n: {dg: _seeds(v)} for n, v in [
        ("regadv_l2", 0.7), ("pgd_l2_perturbation", 0.55), ("gradient", 0.6), ("random", 0.5),
        ("input |x|", 0.5),
    ]}  # fmt: skip
    loc5["model"] = {"accuracy": _seeds(0.9)}
    return {
        1: {"models": m1},
        2: {"models": m2},
        3: {"models": m3, "distractor canvas (standard model)": loc},
        4: {"attack": a4, "methods": m4},
        5: {"methods": m5, "distractor canvas (standard model)": loc5},
    }


# Per claim: (table, the row claimed better, the row it is compared with) to swap, and a gate
# to break as (table, row, column, failing value).
SWAPS = {
    1: ("models", "pgd_at", "standard"),
    2: ("models", "lga", "standard"),
    3: ("models", "pgd_at", "standard"),
    4: ("methods", "relex", "gradient"),
    5: (("methods", "distractor canvas (standard model)"), "regadv_l2", "gradient"),
}
BREAK = {
    1: ("models", "pgd_at", "robust accuracy", 0.15),  # PGD-AT not robust
    2: ("models", "lga", "accuracy", 0.5),  # not at similar accuracy
    3: ("distractor canvas (standard model)", "input |x|", "distractor game", 0.7),
    4: ("attack", "standard", "attack success ε=0.15", 0.2),  # the attack failed
    5: ("methods", "attack", "PGD success (standard)", 0.1),
}


@pytest.mark.parametrize("claim_id", sorted(CLAIMS))
def test_each_claim_holds_flips_when_swapped_and_is_inconclusive_when_a_gate_fails(claim_id):
    claim = CLAIMS[claim_id]
    tables = _holding_tables()[claim_id]
    gates, checks = claim.judge(tables, G)
    assert checks and all(g["passed"] for g in gates), gates
    assert {c["verdict"] for c in checks} == {"holds"}, [c["check"] for c in checks]
    # Swap the two compared rows: the checks between them now fail beyond the noise.
    names, a, b = SWAPS[claim_id]
    swapped = copy.deepcopy(tables)
    for name in [names] if isinstance(names, str) else names:
        for col in set(swapped[name][a]) & set(swapped[name][b]):
            if col not in ("accuracy", "robust accuracy", "boundary found"):
                swapped[name][a][col], swapped[name][b][col] = (
                    tables[name][b][col],
                    tables[name][a][col],
                )
    _, after = claim.judge(swapped, G)
    flipped = [c for c in after if f"{a} (" in c["check"] and f"{b} (" in c["check"]]
    assert flipped and all(c["verdict"] == "does not hold" for c in flipped), after
    # Break a gate: the checks that depend on it become inconclusive, none holds against it.
    t, row, col, bad = BREAK[claim_id]
    broken = copy.deepcopy(tables)
    broken[t][row][col] = _seeds(bad)
    gates, after = claim.judge(broken, G)
    assert not all(g["passed"] for g in gates)
    assert any(c["verdict"] == "inconclusive" and "gate failed" in c["reason"] for c in after)


def test_claim_5_canvas_checks_hang_on_the_canvas_gates_alone():
    tables = _holding_tables()[5]
    canvas = "distractor canvas (standard model)"
    _, checks = CLAIMS[5].judge(tables, G)
    on_canvas = [c for c in checks if c["check"].startswith("distractor game")]
    assert len(on_canvas) == 2 and len(checks) == 6
    # |x| off chance: the canvas checks become inconclusive, the APE / coherence ones hold.
    broken = copy.deepcopy(tables)
    broken[canvas]["input |x|"]["distractor game"] = _seeds(0.7)
    gates, after = CLAIMS[5].judge(broken, G)
    assert [g["passed"] for g in gates].count(False) == 1
    for c in after:
        canvas_check = c["check"].startswith("distractor game")
        assert c["verdict"] == ("inconclusive" if canvas_check else "holds"), c
    # Without the canvas (no localisation dataset) the claim is judged on the rest.
    _, rest = CLAIMS[5].judge({"methods": tables["methods"]}, G)
    assert len(rest) == 4 and {c["verdict"] for c in rest} == {"holds"}


def test_map_shape_columns():
    from jaxinterp.experiments.claims import map_shape

    x = jnp.zeros((2, 4, 4, 1)).at[:, 1:3, 1:3, :].set(1.0)  # ink: the 2x2 centre
    out = map_shape(x, x)  # a gradient that is the image itself
    np.testing.assert_allclose(out["alignment"], 1.0, rtol=1e-6)
    np.testing.assert_allclose(out["ink share"], 1.0, rtol=1e-6)
    np.testing.assert_allclose(map_shape(-x, x)["alignment"], 1.0, rtol=1e-6)  # |cos|
    off = 1.0 - x  # all of the map off the ink
    np.testing.assert_allclose(map_shape(off, x)["ink share"], 0.0, atol=1e-7)
    np.testing.assert_allclose(map_shape(off, x)["alignment"], 0.0, atol=1e-7)
    uniform = map_shape(jnp.ones_like(x), x)
    np.testing.assert_allclose(uniform["gini"], 0.0, atol=1e-6)
    np.testing.assert_allclose(uniform["ink share"], 4 / 16, rtol=1e-6)
    assert float(out["gini"][0]) > float(uniform["gini"][0])  # 4 of 16 pixels: sparser


def test_canvas_measurement_runs_and_its_bsm_uses_the_study_boundary_search():
    """Claim 3's canvas rows on a small untrained model: every map measured, and BSM found
    with the protocol's boundary search (ladder and CW rounds), as the boundary normals are."""
    import jax

    from jaxinterp import data, models
    from jaxinterp.experiments import claims_attribution as ca
    from jaxinterp.experiments.lab import Lab, Model
    from jaxinterp.experiments.metric_suite import Settings

    test = data.load_split("mnist_canvas", "test")
    net = models.get_model("mlp", num_classes=10, hidden=(16,))
    params = net.init(jax.random.PRNGKey(0), jnp.asarray(test.images[:1]))
    m = Model("standard", 0, net.apply_fn, net.features_fn, params, 0.9, None)
    protocol = {"boundary_epsilons": (2.0, 6.0), "cw_binary_search_steps": 1, "targeted_steps": 2}
    lab = Lab(models={}, test=test, settings=Settings(), seeds=[0], num_examples=3,
              batch_size=3, localisation={0: m}, localisation_test=test,
              localisation_num_examples=3, protocol=protocol, log=lambda _: None)  # fmt: skip
    calls = []
    explain = lab.explain

    def recorded(m, method, *args, **kw):
        calls.append((method, kw))
        return explain(m, method, *args, **kw)

    lab.explain = recorded  # type: ignore[method-assign]
    rows = ca._localisation(lab, m, np.mean(np.asarray(test.images[:8]), axis=0))
    # The study's search, compiled for the whole batch alone (a program run a few times).
    search = {"epsilons": (2.0, 6.0), "cw_binary_search_steps": 1, "sub_batch_fractions": (1,)}
    assert ("bsm", search) in calls
    assert ca._boundary_search(lab) == search
    for name in ("gradient", "BSM", "BIG", "IG (black)", "IG (mean canvas)", "random map"):
        assert 0.0 <= rows[name][ca._DG] <= 1.0, name


def test_claim_2_times_the_step_its_model_was_trained_with(tmp_path, data_dir):
    """A model trained in this process: claim 2's timing runs the training's compiled step
    (no second compile), and the shared step depends on the config, not on the seed."""
    import jax
    import ml_collections

    from jaxinterp import data, training
    from jaxinterp.experiments import claims, study
    from jaxinterp.experiments.lab import Model
    from jaxinterp.experiments.restore import load_trained
    from jaxinterp.experiments.setup import train_step_from_config
    from jaxinterp.experiments.train import train_and_evaluate
    from jaxinterp.training import parallel

    c = study.model_config(study.quick(study.study_config()), "lga", 0)
    c.model, c.model_kwargs = "mlp", ml_collections.ConfigDict({"hidden": (16,)})
    c.num_steps, c.batch_size, c.data_dir = 2, 8, data_dir
    workdir = str(tmp_path / "lga")
    train_and_evaluate(c, workdir)
    t = load_trained(workdir)  # the config as read back from the workdir
    net, mesh = t.model, parallel.make_data_mesh(t.config.num_devices or None)
    params = training.replicate(t.params, mesh)  # placed as the step places its state
    m = Model("lga", 0, net.apply_fn, net.features_fn, params, 0.9, t.config, net.layer_fn)
    fns = {"apply_fn": m.apply_fn, "features_fn": m.features_fn, "layer_fn": m.layer_fn}
    step, _ = train_step_from_config(t.config, mesh, **fns)
    assert step._cache_size() == 1  # compiled once, by training
    test = data.load_split("mnist5k", "test", data_dir=data_dir)
    x, y = np.asarray(test.images[:5]), np.asarray(test.labels[:5])
    assert claims._median_step_seconds(m, x, y, repeats=2) > 0
    jax.block_until_ready(m.params)  # still there: the step donated a copy
    assert step._cache_size() == 1  # the same program: repeated to the trained batch of 8
    other_seed = ml_collections.ConfigDict(t.config.to_dict() | {"seed": 3})
    assert train_step_from_config(other_seed, mesh, **fns)[0] is step
    other_weight = ml_collections.ConfigDict(t.config.to_dict() | {"ce_weight": 0.5})
    assert train_step_from_config(other_weight, mesh, **fns)[0] is not step


def test_models_of_one_architecture_share_one_compiled_eval_step(tmp_path, data_dir):
    """Two models of one architecture (different penalties) are evaluated by one jitted eval
    step, compiled once: training asks :func:`eval_step_for` for it."""
    import ml_collections

    from jaxinterp.experiments import study
    from jaxinterp.experiments.restore import load_trained
    from jaxinterp.experiments.setup import eval_step_for
    from jaxinterp.experiments.train import train_and_evaluate
    from jaxinterp.training import parallel

    s = study.quick(study.study_config())
    nets = []
    for name in ("standard", "act_sens"):
        c = study.model_config(s, name, 0)
        c.model, c.model_kwargs = "mlp", ml_collections.ConfigDict({"hidden": (12,)})
        c.num_steps, c.batch_size, c.eval_batch_size, c.data_dir = 2, 8, 16, data_dir
        result = train_and_evaluate(c, str(tmp_path / name))
        assert 0.0 <= result["eval"]["accuracy"] <= 1.0
        nets.append(load_trained(str(tmp_path / name)).model)
    assert nets[0].apply_fn is nets[1].apply_fn
    mesh = parallel.make_data_mesh(None)
    step = eval_step_for(nets[0].apply_fn, mesh)
    assert step is eval_step_for(nets[1].apply_fn, mesh)
    assert step._cache_size() == 1
