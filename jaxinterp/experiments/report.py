"""The report of ``jaxinterp reproduce``: Markdown with one table per claim, and PNG figures."""

from __future__ import annotations

import os
from typing import Any

import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxinterp.experiments.explain import compute_attributions, heatmap, plot_grid
from jaxinterp.experiments.lab import Lab

__all__ = ["FIGURE_METHODS", "figures", "markdown"]

# The attribution grids show these methods for every model (BIG is left out: its boundary
# search is the slowest attribution on a CPU; `jaxinterp explain --methods big` draws it).
FIGURE_METHODS = ("gradient", "ig", "smoothgrad", "relex", "regadv")


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return out + ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]


def markdown(summary: dict[str, Any]) -> str:
    """The report: setup, a summary of the claims, then one section per claim."""
    s = summary["study"]
    lines = [
        "# jaxinterp reproduce: the claims of METHODS §5 at small scale",
        "",
        f"Data: `{s['dataset']}`"
        + (f" (localisation: `{s['localisation_dataset']}`)" if s["localisation_dataset"] else "")
        + f"; seeds {list(s['seeds'])}; {s['num_examples']} test examples per model; "
        f"{'quick' if summary['quick'] else 'full'} run on {summary['backend']} "
        f"({summary['devices'][0]}) in {summary['seconds'] / 60:.1f} min. Cells are means over "
        "seeds (± std over seeds when there are several); checks compare the means. These are "
        "the numbers this run measured, whether or not they agree with the papers.",
        "",
        "Test accuracy: " + ", ".join(f"{k} {v:.3f}" for k, v in summary["accuracy"].items()) + ".",
        "",
        "## Summary",
        "",
    ]
    lines += _md_table(
        ["claim", "status", "checks holding"],
        [
            [
                f"{c['id']}. {c['title']}",
                f"**{c['status']}**",
                f"{sum(k['holds'] for k in c['checks'])}/{len(c['checks'])}",
            ]
            for c in summary["claims"]
        ],
    )
    for c in summary["claims"]:
        lines += ["", f"## Claim {c['id']}: {c['title']}", "", c["statement"], ""]
        lines += _md_table(c["columns"], c["rows"])
        if c.get("extra_table"):
            lines += [""] + _md_table(c["extra_table"][0], c["extra_table"][1:])
        lines += ["", "Checks:", ""]
        lines += [f"- [{'x' if k['holds'] else ' '}] {k['check']}" for k in c["checks"]]
        if c.get("reason"):
            lines += [f"- not measured: {c['reason']}"]
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

    cols = claim["columns"][1:]
    rows = claim["rows"]
    fig, axes = plt.subplots(1, len(cols), figsize=(2.6 * len(cols), 2.6), squeeze=False)
    for ax, j in zip(axes[0], range(1, len(cols) + 1), strict=True):
        names = [r[0] for r in rows]
        vals = [float(str(r[j]).split(" ± ")[0]) for r in rows]
        ax.bar(range(len(names)), vals, color="tab:blue")
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=7)
        ax.set_title(cols[j - 1], fontsize=8)
        ax.tick_params(axis="y", labelsize=7)
    fig.suptitle(f"Claim {claim['id']}: {claim['title']} ({claim['status']})", fontsize=9, y=1.04)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def figures(lab: Lab, study: ml_collections.ConfigDict, out: str, claims: list[dict]) -> list[str]:
    """Attribution grids per model (first seed) and one metric bar chart per claim."""
    os.makedirs(out, exist_ok=True)
    paths = []
    x, y, _ = lab.xy()
    n = int(study.num_figure_examples)
    x, y = x[:n], y[:n]
    seed = lab.seeds[0]
    models = {name: m for (name, s), m in lab.models.items() if s == seed}
    if lab.localisation:
        models["localisation_standard"] = lab.localisation[seed]
    for name, m in models.items():
        xs, labels = x, y
        if name.startswith("localisation"):
            loc = lab.localisation_test
            assert loc is not None  # A localisation model comes with its test split.
            xs, labels = np.asarray(loc.images[:n]), loc.labels[:n]
        pred = np.asarray(jnp.argmax(m.apply_fn(m.params, xs), -1)).astype(np.int32)
        maps = compute_attributions(m.apply_fn, m.params, xs, pred, FIGURE_METHODS, seed=seed)
        path = os.path.join(out, f"attributions_{name}.png")
        plot_grid(xs, labels, pred, {k: heatmap(v) for k, v in maps.items()}, path)
        paths.append(path)
    for claim in claims:
        path = os.path.join(out, f"claim{claim['id']}_metrics.png")
        _bars(claim, path)
        paths.append(path)
    return paths
