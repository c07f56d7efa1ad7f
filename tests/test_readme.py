"""The examples of README.md and benchmarks/README.md run as they are written.

The rules (README.md, "Tests and contributing"):

* Every fenced block names its language: ``python`` blocks are examples and every one of
  them is executed; ``bash`` blocks hold commands; a block that is not meant to run (an
  output, a listing) is ``text``. Any other language fails here instead of being skipped.
* Each ``python`` block is self-contained: it runs in a fresh namespace, so it imports or
  defines every name it uses and can be copied as it is. The blocks run in file order, in a
  scratch working directory where the quick start's command has trained
  ``runs/standard``, with the data dir the test session's. That command runs with
  ``QUICK_START_SIZE`` appended (fewer steps, one device, a small MLP: the examples work
  with any model, and the CNN's compile times would dominate the test): the only change
  this test makes. Everything else runs as the README shows it, so examples are written at
  sizes that run in seconds.
* Every ``jaxinterp ...`` command of a ``bash`` block is parsed by the command line's own
  parser (the subcommand and every flag exist, values have their types); a ``--config``
  is loaded and its ``--config.FIELD=VALUE`` overrides applied. ``jaxinterp configs`` runs
  for real, and so does the quick start's ``train`` (reduced, above).
* Every ``python -m benchmarks.NAME ...`` command: the module exists and its ``main``
  accepts the flags (its parser runs; the benchmark is stopped right after parsing, so
  nothing is timed). A module that cannot be imported without an optional dependency
  (torch, captum) is skipped by ``pytest.importorskip``, visibly.
* ``pip`` and ``pytest`` commands are not run. Any other command fails here.
* Flags named in the text: in README.md, ``--config.FIELD`` names a config field, an
  ``--xla_*`` flag is one the library sets, any other flag belongs to a ``jaxinterp``
  subcommand; in benchmarks/README.md, every flag belongs to a benchmark, and each entry of
  its "Flags" section lists only flags of that benchmark.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import importlib.util
import pathlib
import re
import shlex
import textwrap

import pytest

from jaxinterp import _cpu, cli, configs, cpu_flags
from jaxinterp.experiments import config_io, defaults

ROOT = pathlib.Path(__file__).resolve().parent.parent
READMES = ("README.md", "benchmarks/README.md")
LANGUAGES = ("python", "bash", "text")
QUICK_START_WORKDIR = "runs/standard"
QUICK_START_SIZE = (  # fewer steps, one device, a small MLP instead of the CNN
    "--config.num_steps=20",
    "--config.num_devices=1",
    "--config.model=mlp",
    "--config.model_kwargs={'hidden': (64,)}",
)
RUN = ("configs",)  # jaxinterp subcommands that run for real (cheap)
NOT_RUN = ("pip", "pytest")
OPTIONAL = ("torch", "captum")
PLACEHOLDER_FIELDS = ("FIELD", "a.b")  # --config.FIELD=VALUE, --config.a.b=VALUE
NOT_COMMON = ("suite",)  # benchmarks/README.md: "Common (every benchmark but `suite`)"


@dataclasses.dataclass(frozen=True)
class Block:
    readme: str
    line: int  # of the opening fence, 1-based
    language: str
    code: str


@dataclasses.dataclass(frozen=True)
class Command:
    block: Block
    argv: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.block.readme}:{self.block.line}: {shlex.join(self.argv)}"


def _text(readme: str) -> str:
    return (ROOT / readme).read_text(encoding="utf-8")


def _blocks(readme: str) -> list[Block]:
    lines = _text(readme).splitlines()
    blocks, i = [], 0
    while i < len(lines):
        opening = re.match(r"\s*```(.*)$", lines[i])
        if not opening:
            i += 1
            continue
        end = i + 1
        while end < len(lines) and lines[end].strip() != "```":
            end += 1
        assert end < len(lines), f"{readme}:{i + 1}: unclosed code fence"
        code = textwrap.dedent("\n".join(lines[i + 1 : end]))
        blocks.append(Block(readme, i + 1, opening.group(1).strip(), code))
        i = end + 1
    return blocks


def _commands(block: Block) -> list[Command]:
    out = []
    for line in block.code.replace("\\\n", " ").splitlines():
        words, current = shlex.split(line, comments=True), []
        for word in [*words, "&&"]:
            if word not in ("&&", "||", ";"):
                current.append(word)
                continue
            while current and re.match(r"[A-Z_][A-Z0-9_]*=", current[0]):  # VAR=value cmd
                current.pop(0)
            if current:
                out.append(Command(block, tuple(current)))
            current = []
    return out


def _flags(spans: list[str]) -> list[str]:
    return [w.split("=", 1)[0] for s in spans for w in s.split() if w.startswith("--")]


def _options(parser: argparse.ArgumentParser) -> set[str]:
    return set(parser._option_string_actions)


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    (sub,) = [a for a in cli._parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


BLOCKS = [b for readme in READMES for b in _blocks(readme)]
PYTHON = [b for b in BLOCKS if b.language == "python"]
COMMANDS = [c for b in BLOCKS if b.language == "bash" for c in _commands(b)]
JAXINTERP = [c for c in COMMANDS if c.argv[0] == "jaxinterp"]
BENCHMARKS = [c for c in COMMANDS if c.argv[:2] == ("python", "-m")]
QUICK_START = next(
    (c for c in JAXINTERP if c.argv[1] == "train" and QUICK_START_WORKDIR in c.argv), None
)


def _block_id(block: Block) -> str:
    return f"{block.readme}:{block.line}"


def _command_id(command: Command) -> str:
    return f"{command.block.readme}:{command.block.line}:{' '.join(command.argv[:2])}"


def test_every_block_names_a_known_language():
    bad = [f"{_block_id(b)}: {b.language!r}" for b in BLOCKS if b.language not in LANGUAGES]
    assert not bad, f"fence languages must be one of {LANGUAGES} (text: not run): {bad}"
    assert PYTHON and JAXINTERP and BENCHMARKS  # the extraction finds what is there


def test_every_command_is_checked():
    checked = JAXINTERP + [c for c in BENCHMARKS if c.argv[2].startswith("benchmarks.")]
    unknown = [str(c) for c in COMMANDS if c not in checked and c.argv[0] not in NOT_RUN]
    assert not unknown, f"commands this test does not know how to check: {unknown}"
    assert QUICK_START is not None, f"no `jaxinterp train ... --workdir {QUICK_START_WORKDIR}`"
    testing = _text("README.md").split("\n## Tests and contributing", 1)[1]
    assert all(f"`{flag}`" in testing for flag in QUICK_START_SIZE), "README: document them"


@pytest.fixture(scope="module")
def readme_dir(tmp_path_factory, data_dir) -> pathlib.Path:
    """A working directory holding the quick start's workdir, trained at QUICK_START_SIZE."""
    root = tmp_path_factory.mktemp("readme")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.setenv("JAXINTERP_DATA_DIR", data_dir)
        assert cli.main([*QUICK_START.argv[1:], *QUICK_START_SIZE]) == 0, str(QUICK_START)
    assert (root / QUICK_START_WORKDIR / "config.json").exists()
    return root


def _registries() -> list:
    from jaxinterp import attacks, attribution, regularizers
    from jaxinterp.experiments import metric_suite

    return [attribution.EXPLAINERS, attacks.ATTACKS, regularizers.PENALTIES, metric_suite.METRICS]


@pytest.mark.parametrize("block", PYTHON, ids=_block_id)
def test_python_example_runs(block, readme_dir, data_dir, monkeypatch):
    monkeypatch.chdir(readme_dir)
    monkeypatch.setenv("JAXINTERP_DATA_DIR", data_dir)
    # Padded so that a traceback names the README's own line numbers.
    code = compile("\n" * block.line + block.code, str(ROOT / block.readme), "exec")
    # An example may register methods (the contributing section); other tests must not see
    # them, so every registry is restored afterwards.
    saved = [(r, dict(r._entries)) for r in _registries()]
    try:
        exec(code, {"__name__": "__readme__"})
    finally:
        for registry, entries in saved:
            registry._entries = entries


@pytest.mark.parametrize("command", JAXINTERP, ids=_command_id)
def test_jaxinterp_command_parses(command, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # configs resolve by name from any directory
    rest, overrides = config_io.split_override_args(command.argv[1:])
    try:
        args = cli._parser().parse_args(rest)
    except SystemExit:
        pytest.fail(f"{command}: {capsys.readouterr().err.strip()}")
    assert not overrides or args.command == "train", f"{command}: overrides apply to train"
    options = _options(_subcommands()[args.command])
    assert set(_flags(rest)) <= options, f"{command}: not exact flags (argparse abbreviates)"
    if getattr(args, "config", None):
        config_io.apply_overrides(config_io.load_config(args.config), overrides)
    if args.command in RUN:
        assert cli.main(list(command.argv[1:])) == 0, str(command)
        out = capsys.readouterr().out
        assert all(name in out for name in configs.names()), out


class _Parsed(Exception):
    """Raised in place of returning from ArgumentParser.parse_args: stops the benchmark."""

    def __init__(self, parser: argparse.ArgumentParser):
        super().__init__()
        self.parser = parser


def _benchmark_parser(module_name: str, argv: list[str]) -> argparse.ArgumentParser:
    """The parser of ``module_name``'s ``main``, after it has parsed ``argv``."""
    assert importlib.util.find_spec(module_name) is not None, f"no module {module_name}"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name in OPTIONAL:
            pytest.importorskip(e.name)
        raise
    real = argparse.ArgumentParser.parse_args

    def parse_then_stop(self, args=None, namespace=None):
        real(self, args, namespace)
        raise _Parsed(self)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(argparse.ArgumentParser, "parse_args", parse_then_stop)
        try:
            module.main(argv)
        except _Parsed as parsed:
            return parsed.parser
        except SystemExit as e:
            pytest.fail(f"python -m {module_name} {shlex.join(argv)}: exit {e.code}")
    pytest.fail(f"{module_name}.main did not parse its arguments")


@pytest.mark.parametrize("command", BENCHMARKS, ids=_command_id)
def test_benchmark_command_parses(command, capsys):
    argv = list(command.argv[3:])
    try:
        options = _options(_benchmark_parser(command.argv[2], argv))
    except pytest.fail.Exception:
        raise pytest.fail.Exception(f"{command}\n{capsys.readouterr().err.strip()}") from None
    assert set(_flags(argv)) <= options, f"{command}: not exact flags (argparse abbreviates)"


def test_flags_named_in_readme_exist(monkeypatch):
    spans = re.findall(r"`(--[^`]+)`", _text("README.md"))
    fields = set(config_io._flat_keys(defaults.base_config()))
    # Every XLA flag the library can set, whatever this machine's CPU: the vector width is
    # only set on AMD CPUs with AVX-512, so the check pretends to be one.
    monkeypatch.setattr(_cpu, "preferred_vector_width", lambda cpuinfo=None: 512)
    xla = {f.split("=", 1)[0] for f in cpu_flags("", devices=2).split()}
    cli_options = set().union(*(_options(p) for p in _subcommands().values()))
    bad = []
    for flag in _flags(spans):
        if flag.startswith("--config."):
            field = flag[len("--config.") :]
            ok = field in fields or field in PLACEHOLDER_FIELDS
        elif flag.startswith("--xla_"):
            ok = flag in xla
        else:
            ok = flag in cli_options
        if not ok:
            bad.append(flag)
    assert not bad, f"README.md names flags that do not exist: {bad}"


def test_flags_named_in_benchmarks_readme_exist():
    text = _text("benchmarks/README.md")
    section = text.split("\n## Flags", 1)[1].split("\n## ", 1)[0]
    entries = re.split(r"^\* ", section, flags=re.MULTILINE)
    common = _flags(re.findall(r"`([^`]+)`", entries[0]))
    assert common, "the Flags section starts with the flags common to the benchmarks"
    parsers, bad = {}, []
    for entry in entries[1:]:
        name = re.match(r"`(\w+)`:", entry).group(1)
        parsers[name] = options = _options(_benchmark_parser(f"benchmarks.{name}", []))
        expected = _flags(re.findall(r"`([^`]+)`", entry)) + (
            common if name not in NOT_COMMON else []
        )
        bad += [f"{name} {flag}" for flag in expected if flag not in options]
    every = set().union(*parsers.values())
    bad += [f for f in _flags(re.findall(r"`(--[^`]+)`", text)) if f not in every]
    assert not bad, f"benchmarks/README.md names flags the benchmarks do not take: {bad}"
