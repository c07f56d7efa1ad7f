"""The fault table of issue 13, re-run: kills, corruptions, concurrency, bad configs and bad
library inputs, each case classified into one named outcome and counted.

``python -m benchmarks.faults [--quick] [--seed N] [--groups kills,corruptions,...] [--json FILE]``

Groups (``--quick`` runs a few cases of each):

* ``kills``: ``jaxinterp train`` of a packaged digits config (tests/test_resume.py's
  overrides, one device) in a child process, SIGKILLed at seeded random moments (a random
  delay after a new checkpoint appears, while a checkpoint directory is being written, or
  during start-up), restarted and killed again, then run to the end. Every kill of a run
  gets the run's outcome: ``identical`` (final params bit-for-bit those of one uninterrupted
  run of the config, every logged step in ``metrics.jsonl`` once, ``config.json`` intact) or
  ``differs`` / ``lost metrics`` / ``duplicated metrics`` / ``crash`` / ``bad config.json``
  / ``fell back after a kill`` (a kill left a checkpoint that does not read back).
* ``corruptions``: a finished run's workdir copied per case, its latest checkpoint (or
  ``config.json``, ``metrics.jsonl``) damaged, then ``train`` (resume) and ``explain`` run
  on it: ``fell back`` (one line, the bad checkpoint moved aside, the final params those of
  the undamaged run), ``fell back, read-only`` (``explain``: one line naming the step it
  used, the workdir left as it was; that step's params are not compared), ``refused``
  (exit 2, one line naming the workdir or file), ``intact,
  used`` (what was damaged does not change the state read back; for ``explain``, the
  params), or ``silent`` / ``traceback`` and the other failures; then single-byte flips
  at seeded offsets of the data files, each read back as ``train`` reads it
  (``detected`` / ``intact, used`` / ``silent``).
* ``concurrency``: two trainers started on one workdir at several offsets (``one refused``:
  one exits 2 naming the holder, the other completes with every logged step once); a lock
  left by a SIGKILLed holder or held by a live one; ``explain`` while a trainer writes and
  deletes checkpoints.
* ``configs``: bad ``train`` configs and command lines (the lists of tests/test_cli.py and
  tests/test_reliability.py, imported, and more: negative or non-finite hyperparameters,
  seeds >= 2**63, config files that fail to import, workdirs that are files, read-only or
  on a full disk, resume with other ``num_steps``, bad ``reproduce``, ``explain`` and
  ``evaluate`` arguments): ``exit 2 one line`` (and nothing written), the expected exit 0/1
  for the few valid cases, else ``traceback``, ``exit 0``, ``exit 1``, ...
* ``library``: every explainer, attack, penalty and public metric on the fuzzed cases of
  tests/test_fuzz.py (its hypothesis strategy, seeded, ``--fuzz-scale`` times as many
  examples as the test suite draws), the NaN-attribution cases of tests/test_bad_input.py
  and a few argument cases (``key=None``, ``k=0``, labels out of range under ``jit``):
  ``finite result of the right shape``, ``error naming the argument`` or ``NaN where
  required`` pass; ``silent wrong answer``, ``valid input refused``, ``error not naming the
  argument``, ``wrong shape``, ``non-finite result``, ``other error`` fail.

A case the script cannot classify is ``unclassified``, never a pass. Rows are printed as
measured (one per function for ``library``), then per group ``count -> outcome counts``,
and every failed case. ``--json FILE`` writes ``{"machine", "settings", "summary",
"failures", "results"}``; the exit status is 1 when a case failed. Every child process has
a timeout, and every file is written under one temporary directory, removed at the end.
"""

from __future__ import annotations

from benchmarks.faults._common import (
    UNCLASSIFIED,
    Context,
    Run,
    cli_lines,
    cli_outcome,
    message_lines,
    print_summary,
    result,
    run_inproc,
    run_sub,
    summarize,
)
from benchmarks.faults._main import main, parse_args
from benchmarks.faults.concurrency import pair_outcome
from benchmarks.faults.configs import CliCase, config_cases, run_case
from benchmarks.faults.corruptions import corruption_outcome
from benchmarks.faults.library import LIBRARY_PASS, fuzz_outcome, nan_outcome

__all__ = [
    "CliCase",
    "Context",
    "LIBRARY_PASS",
    "Run",
    "UNCLASSIFIED",
    "cli_lines",
    "cli_outcome",
    "config_cases",
    "corruption_outcome",
    "fuzz_outcome",
    "main",
    "message_lines",
    "nan_outcome",
    "pair_outcome",
    "parse_args",
    "print_summary",
    "result",
    "run_case",
    "run_inproc",
    "run_sub",
    "summarize",
]
