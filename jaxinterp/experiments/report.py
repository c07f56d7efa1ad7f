"""The report of ``jaxinterp reproduce``: Markdown with one table per claim, and PNG figures."""

from __future__ import annotations

import os
from typing import Any

import ml_collections
import numpy as np

from jaxinterp.experiments.claims_attribution import relex_settings
from jaxinterp.experiments.explain import compute_attributions, heatmap, plot_grid
from jaxinterp.experiments.lab import Lab

__all__ = ["FIGURE_METHODS", "figures", "markdown"]

# The attribution grids show these methods for every model (BIG is left out: its boundary
# search is the slowest attribution on a CPU; `jaxinterp explain --methods big` draws it).
FIGURE_METHODS = ("gradient", "ig", "smoothgrad", "relex", "regadv_l2")


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return out + ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]


_MARK = {"holds": "x", "does not hold": " ", "inconclusive": "?", "not measured": "-"}


def markdown(summary: dict[str, Any]) -> str:
    """The report: setup, a summary of the claims, then one section per claim with its
    tables, gates and checks (each with its verdict, gap and seed std)."""
    s = summary["study"]
    seeds = list(s["seeds"])
    lines = [
        "# jaxinterp reproduce: the claims of METHODS §5 at small scale",
        "",
        f"Data: `{s['dataset']}`"
        + (f" (localisation: `{s['localisation_dataset']}`)" if s["localisation_dataset"] else "")
        + f"; seeds {seeds}; {s['num_examples']} test examples per model; "
        f"{'quick' if summary['quick'] else 'full'} run on {summary['backend']} "
        f"({summary['devices'][0]}) in {summary['seconds'] / 60:.1f} min. Cells are means over "
        "seeds (± std over seeds when there are several). A check **holds** only when its "
        "per-seed gap exceeds twice the gap's std over at least 3 seeds and its gates pass; "
        "a failed gate, fewer than 3 seeds or a gap inside the noise make it "
        "**inconclusive**. These are the numbers this run measured, whether or not they agree "
        "with the papers.",
        "",
        "Test accuracy: " + ", ".join(f"{k} {v:.3f}" for k, v in summary["accuracy"].items()) + ".",
        "",
        "## Summary",
        "",
    ]

    def count(c: dict[str, Any], v: str) -> str:
        return str(sum(k["verdict"] == v for k in c["checks"]))

    lines += _md_table(
        ["claim", "status", "holds", "does not hold", "inconclusive", "gates passed"],
        [
            [
                f"{c['id']}. {c['title']}",
                f"**{c['status']}**",
                count(c, "holds"),
                count(c, "does not hold"),
                count(c, "inconclusive"),
                f"{sum(g['passed'] for g in c['gates'])}/{len(c['gates'])}",
            ]
            for c in summary["claims"]
        ],
    )
    for c in summary["claims"]:
        lines += ["", f"## Claim {c['id']}: {c['title']}", "", c["statement"]]
        for t in c["tables"]:
            lines += ["", f"*{t['title']}*", ""] + _md_table(t["columns"], t["rows"])
        lines += ["", "Gates:", ""]
        lines += [f"- [{'x' if g['passed'] else ' '}] {g['gate']}" for g in c["gates"]]
        lines += ["", "Checks ([x] holds, [ ] does not hold, [?] inconclusive):", ""]
        lines += [
            f"- [{_MARK[k['verdict']]}] {k['check']}: **{k['verdict']}** ({k['reason']})"
            for k in c["checks"]
        ]
        lines += ["", f"Status: **{c['status']}** ({c['seconds']:.0f}s)."]
    if summary["figures"]:
        lines += ["", "## Figures", ""]
        lines += [
            f"![{os.path.basename(p)}](figures/{os.path.basename(p)})" for p in summary["figures"]
        ]
    return "\n".join(lines) + "\n"


def _bars(claim: dict[str, Any], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = claim["tables"][-1]
    cols = table["columns"][1:]
    rows = table["rows"]
    fig, axes = plt.subplots(1, len(cols), figsize=(2.6 * len(cols), 2.6), squeeze=False)
    for ax, j in zip(axes[0], range(1, len(cols) + 1), strict=True):
        names = [r[0] for r in rows]
        vals = [_value(r[j]) for r in rows]
        ax.bar(range(len(names)), vals, color="tab:blue")
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=7)
        ax.set_title(cols[j - 1], fontsize=8)
        ax.tick_params(axis="y", labelsize=7)
    fig.suptitle(f"Claim {claim['id']}: {claim['title']} ({claim['status']})", fontsize=9, y=1.04)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def _value(cell: Any) -> float:
    text = str(cell).split(" ± ")[0]
    return float("nan") if text == "-" else float(text)


def figures(lab: Lab, study: ml_collections.ConfigDict, out: str, claims: list[dict]) -> list[str]:
    """Attribution grids per model (first seed) and one metric bar chart per claim; RelEx is
    drawn with the study's settings, as claim 4 measures it (:func:`relex_settings`)."""
    os.makedirs(out, exist_ok=True)
    paths = []
    x, y, _ = lab.xy()
    n = int(study.num_figure_examples)
    x, y = x[:n], y[:n]
    seed = lab.seeds[0]
    drawn = tuple(study.get("figure_models", ()))
    models = {
        name: m for (name, s), m in lab.models.items() if s == seed and (not drawn or name in drawn)
    }
    if lab.localisation:
        models["localisation_standard"] = lab.localisation[seed]
    for name, m in models.items():
        xs, labels = x, y
        if name.startswith("localisation"):
            loc = lab.localisation_test
            assert loc is not None  # A localisation model comes with its test split.
            xs, labels = np.asarray(loc.images[:n]), loc.labels[:n]
        pred = lab.predictions(m, xs)
        maps = compute_attributions(
            m.apply_fn,
            m.params,
            xs,
            pred,
            FIGURE_METHODS,
            seed=seed,
            layer_fn=m.layer_fn,
            overrides={"relex": relex_settings(lab.protocol, xs.shape[1:])},
        )
        path = os.path.join(out, f"attributions_{name}.png")
        plot_grid(xs, labels, pred, {k: heatmap(v) for k, v in maps.items()}, path)
        paths.append(path)
    for claim in claims:
        path = os.path.join(out, f"claim{claim['id']}_metrics.png")
        _bars(claim, path)
        paths.append(path)
    return paths
