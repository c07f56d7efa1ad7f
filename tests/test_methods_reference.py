"""Every "METHODS §N" citation in the package, README and benchmarks resolves to a section of
the method reference shipped with the package."""

from __future__ import annotations

import pathlib
import re
from importlib import resources

ROOT = pathlib.Path(__file__).resolve().parents[1]
CITATION = re.compile(r"METHODS(?:\.md)? §(\d+(?:\.\d+)*)")


def _sections(text: str) -> set[str]:
    return set(re.findall(r"^#{2,4} (\d+(?:\.\d+)*)\.? ", text, flags=re.MULTILINE))


def test_method_reference_ships_with_the_package():
    text = resources.files("jaxinterp").joinpath("METHODS.md").read_text(encoding="utf-8")
    assert {"1", "1.1", "1.7", "2", "3", "4", "5", "5.1"} <= _sections(text)


def test_every_citation_resolves():
    sections = _sections((ROOT / "jaxinterp" / "METHODS.md").read_text(encoding="utf-8"))
    files = [ROOT / "README.md", *ROOT.glob("jaxinterp/**/*.py"), *ROOT.glob("benchmarks/*")]
    cited = {}
    for path in files:
        if path.is_file():
            for number in CITATION.findall(path.read_text(encoding="utf-8")):
                cited.setdefault(number, path.name)
    assert cited, "no citation found: the pattern is wrong"
    missing = {n: f for n, f in cited.items() if n not in sections}
    assert not missing, f"citations without a section: {missing}"


def test_a_missing_section_is_detected():
    assert "9.9" not in _sections("## 1. Regularizers\n### 1.1 Input-gradient norm\n")
