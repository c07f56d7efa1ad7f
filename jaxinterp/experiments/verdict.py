"""How ``jaxinterp reproduce`` judges a claim: sanity gates, seed noise, three verdicts.

A claim's numbers are per seed: ``{row: {column: [value of seed 0, seed 1, ...]}}``. A
*check* states that one row beats another on one column. Its verdict is

* ``"holds"`` when the mean over seeds of the per-seed gap (``a_s − b_s``, the sign
  flipped where lower is better) exceeds twice the gap's standard deviation over seeds,
  with at least :data:`MIN_SEEDS` seeds;
* ``"does not hold"`` when the gap is below minus twice its standard deviation (the
  opposite order, beyond the noise);
* ``"inconclusive"`` when the gap is inside the seed noise, when there are fewer than
  :data:`MIN_SEEDS` seeds (a single seed has no noise estimate), or when a sanity *gate* of
  the claim failed (an attack that does not succeed, a model below the accuracy the
  comparison needs, an input-only map above chance): then no ordering is evidence;
* ``"not measured"`` when a compared value is NaN (no example qualified).

Swapping the two compared rows swaps ``holds`` and ``does not hold``: a check cannot give
the same verdict whatever the models (tested).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

__all__ = ["MIN_SEEDS", "VERDICTS", "compare", "gate", "status", "summarise"]

MIN_SEEDS = 3
VERDICTS = ("holds", "does not hold", "inconclusive", "not measured")

Table = dict[str, dict[str, list[float]]]


def gate(label: str, value: float, threshold: float, *, at_least: bool = True) -> dict[str, Any]:
    """A sanity gate: ``value >= threshold`` (``at_least``) or ``value <= threshold``.

    A NaN value fails. Returns ``{"gate", "value", "threshold", "passed"}``.
    """
    ok = (value >= threshold) if at_least else (value <= threshold)
    ok = bool(ok) and not math.isnan(value)
    sign = ">=" if at_least else "<="
    return {
        "gate": f"{label}: {value:.4g} {sign} {threshold:.4g}",
        "value": float(value),
        "threshold": float(threshold),
        "passed": ok,
    }


def _mean(v: Sequence[float]) -> float:
    return math.nan if any(math.isnan(x) for x in v) else statistics.fmean(v)


def _std(v: Sequence[float]) -> float:
    return statistics.stdev(v) if len(v) > 1 else float("nan")


def compare(
    label: str,
    a: tuple[str, Sequence[float]],
    b: tuple[str, Sequence[float]],
    *,
    higher: bool,
    gates: Sequence[dict[str, Any]] = (),
    min_seeds: int = MIN_SEEDS,
) -> dict[str, Any]:
    """The check "``a`` beats ``b`` on ``label``" (higher is better when ``higher``).

    Args:
      label: What is compared (a column).
      a: ``(name, per-seed values)`` of the row claimed better.
      b: ``(name, per-seed values)`` of the other row (same seeds, same order; one value is
        broadcast, e.g. a chance level).
      higher: Whether a higher value is better.
      gates: The gates this check depends on (see :func:`gate`).
      min_seeds: Seeds needed before a gap can count.

    Returns:
      ``{"check", "verdict", "holds", "gap", "gap_std", "seeds", "reason"}``: ``gap`` is the
      mean per-seed gap in the claimed direction (positive: ``a`` is better).
    """
    (name_a, va), (name_b, vb) = a, b
    va, vb = [float(v) for v in va], [float(v) for v in vb]
    if len(vb) == 1 and len(va) > 1:
        vb = vb * len(va)
    if len(va) != len(vb):
        raise ValueError(f"{label}: {len(va)} seeds of {name_a} vs {len(vb)} of {name_b}")
    sign = 1.0 if higher else -1.0
    gaps = [sign * (x - y) for x, y in zip(va, vb, strict=True)]
    measured = not any(math.isnan(v) for v in gaps)
    gap, sd = (statistics.fmean(gaps), _std(gaps)) if measured else (math.nan, math.nan)
    rel = " > " if higher else " < "
    text = (
        f"{label}: {name_a} ({_mean(va):.4g}){rel}{name_b} ({_mean(vb):.4g});"
        f" gap {gap:.3g} ± {sd:.2g} over {len(gaps)} seed(s)"
    )
    failed = [g["gate"] for g in gates if not g["passed"]]
    if not measured:
        verdict, reason = "not measured", "no example qualified"
    elif failed:
        verdict, reason = "inconclusive", "gate failed: " + "; ".join(failed)
    elif len(gaps) < min_seeds:
        verdict, reason = "inconclusive", f"fewer than {min_seeds} seeds: no noise estimate"
    elif gap > 2 * sd:
        verdict, reason = "holds", "gap beyond twice the seed std"
    elif gap < -2 * sd:
        verdict, reason = "does not hold", "opposite gap beyond twice the seed std"
    else:
        verdict, reason = "inconclusive", "gap within twice the seed std"
    return {
        "check": text,
        "verdict": verdict,
        "holds": verdict == "holds",
        "direction": "as claimed" if gap > 0 else ("opposite" if gap < 0 else "tie"),
        "gap": gap,
        "gap_std": sd,
        "seeds": len(gaps),
        "reason": reason,
    }


def status(checks: Sequence[dict[str, Any]]) -> str:
    """The claim's verdict from its checks' verdicts.

    ``holds`` / ``does not hold`` / ``inconclusive`` / ``not measured`` when every check
    has that verdict, else ``mixed (N holds, M does not hold, ...)``.
    """
    counts = {v: sum(c["verdict"] == v for c in checks) for v in VERDICTS}
    present = [v for v in VERDICTS if counts[v]]
    if not present:
        return "not measured"
    if len(present) == 1:
        return present[0]
    return "mixed (" + ", ".join(f"{counts[v]} {v}" for v in present) + ")"


def summarise(per_seed: Table) -> dict[str, dict[str, float]]:
    """``{row: {column: mean over seeds}}``."""
    return {r: {c: statistics.fmean(v) for c, v in cols.items()} for r, cols in per_seed.items()}
