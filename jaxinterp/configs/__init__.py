"""The packaged configs: ``jaxinterp train --config NAME`` and ``jaxinterp reproduce --config``.

Each module of this package is one config: a ``get_config()`` that returns an
``ml_collections.ConfigDict`` (``digits_*``, ``mnist_*``, ``cifar10_*`` train one model;
``reproduce_*`` are the studies of ``jaxinterp reproduce``). ``jaxinterp configs`` lists
them with the first line of each docstring.

``--config SPEC`` names a file or a packaged config (:func:`resolve`): an existing file
``SPEC`` is used as it is; otherwise a bare name (``digits_standard`` or
``digits_standard.py``) or a path in a directory called ``configs``
(``configs/digits_standard.py``, where these files lived before they were packaged) names
the packaged config of that name, from any working directory.

This module imports no JAX, so listing and resolving configs is fast.
"""

from __future__ import annotations

import ast
import difflib
import os

__all__ = ["DIRECTORY", "names", "path", "resolve", "summary"]

DIRECTORY = os.path.dirname(os.path.abspath(__file__))
"""Where the packaged config files are."""


def names() -> list[str]:
    """The packaged config names, sorted."""
    return sorted(
        f[:-3] for f in os.listdir(DIRECTORY) if f.endswith(".py") and not f.startswith("_")
    )


def path(name: str) -> str:
    """The file of the packaged config ``name``; ``KeyError`` if there is none."""
    if name not in names():
        raise KeyError(f"no packaged config named {name!r}")
    return os.path.join(DIRECTORY, f"{name}.py")


def summary(name: str) -> str:
    """The first line of the packaged config's module docstring (read, not imported)."""
    with open(path(name), encoding="utf-8") as f:
        doc = ast.get_docstring(ast.parse(f.read())) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def resolve(spec: str) -> str:
    """The config file ``--config spec`` names.

    Args:
      spec: A file path; or a packaged config's name, bare (``digits_standard``), with
        ``.py``, or in a directory named ``configs`` (``configs/digits_standard.py``).

    Returns:
      ``spec`` if it is an existing file, else the packaged config's file.

    Raises:
      FileNotFoundError: Neither, with the closest packaged names in the message.
    """
    if os.path.isfile(spec):
        return spec
    head, base = os.path.split(spec)
    name = base[:-3] if base.endswith(".py") else base
    known = names()
    if name in known and (not head or os.path.basename(os.path.normpath(head)) == "configs"):
        return path(name)
    close = difflib.get_close_matches(name, known, n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise FileNotFoundError(
        f"config file not found: {spec}{hint} (`jaxinterp configs` lists the packaged configs)"
    )
