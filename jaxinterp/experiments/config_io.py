"""Loading configs (files or packaged names), applying ``--config.field=value`` overrides,
checking the directories a command writes into."""

from __future__ import annotations

import ast
import difflib
import importlib.util
import json
import os
from collections.abc import Sequence
from typing import Any

import ml_collections

from jaxinterp import configs

__all__ = [
    "apply_overrides",
    "check_output_dir",
    "config_to_dict",
    "load_config",
    "split_override_args",
]


def load_config(path: str) -> ml_collections.ConfigDict:
    """Runs ``get_config()`` of the config file ``path`` names.

    ``path`` is a Python file, or a packaged config's name (``digits_standard``, also
    ``digits_standard.py`` or ``configs/digits_standard.py`` when no such file exists); see
    :func:`jaxinterp.configs.resolve` and ``jaxinterp configs``.

    Raises:
      FileNotFoundError: ``path`` names no file and no packaged config.
      ValueError: The file does not load: an error while it is imported or while its
        ``get_config()`` runs (a ``SyntaxError``, ``NameError``, ``ImportError``, ...; the
        message names the file and the error, the original is chained), or it defines no
        ``get_config()``.
      TypeError: ``get_config()`` returned something other than a ``ConfigDict``.
    """
    path = configs.resolve(path)
    spec = importlib.util.spec_from_file_location("jaxinterp_user_config", path)
    if spec is None or spec.loader is None:
        raise ValueError(f"config file {path} is not a Python file")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
        get_config = getattr(module, "get_config", None)
        config = get_config() if callable(get_config) else None
    except Exception as e:  # noqa: BLE001 - any error of user code: one message, chained
        text = str(e).strip()
        what = f"{type(e).__name__}: {text.splitlines()[0]}" if text else type(e).__name__
        raise ValueError(f"config {path} failed to load: {what}") from e
    if not callable(get_config):
        raise ValueError(f"config file {path} defines no get_config()")
    if not isinstance(config, ml_collections.ConfigDict):
        raise TypeError(
            f"get_config() in {path} must return an ml_collections.ConfigDict, "
            f"got {type(config).__name__}"
        )
    return config


def check_output_dir(name: str, path: str) -> str:
    """``path`` if a command can create it, or write into it, as a directory.

    Checked before anything is written, so that a bad path ends the command with one line
    instead of failing part way.

    Args:
      name: The option, for the message (``--workdir``, ``--out``).
      path: The directory (it may not exist yet).

    Returns:
      ``path``.

    Raises:
      ValueError: ``path`` is empty, an existing file, or under an existing file.
      PermissionError: ``path``, or its nearest existing parent, is not writable.
    """
    if not isinstance(path, str) or not path.strip():
        raise ValueError(f"{name} must be a directory path, got {path!r}")
    full = os.path.abspath(path)
    if os.path.exists(full) and not os.path.isdir(full):
        raise ValueError(f"{name} {path} is not a directory (a file of that name exists)")
    parent = full
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise ValueError(f"{name} {path} is under {parent}, which is a file, not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        where = "" if parent == full else f" (in {parent})"
        raise PermissionError(f"{name} {path} is not writable{where}: permission denied")
    return path


def split_override_args(argv: Sequence[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """Separates ``--config.a.b=v`` / ``--config.a.b v`` overrides from other arguments."""
    rest, overrides, i = [], [], 0
    argv = list(argv)
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("--config."):
            if "=" in arg:
                name, value = arg[len("--config.") :].split("=", 1)
            elif i + 1 < len(argv):
                name, value = arg[len("--config.") :], argv[i + 1]
                i += 1
            else:
                raise ValueError(f"{arg} needs a value")
            overrides.append((name, value))
        else:
            rest.append(arg)
        i += 1
    return rest, overrides


def _flat_keys(config: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
    keys = []
    for k, v in config.items():
        keys.append(prefix + k)
        if isinstance(v, ml_collections.ConfigDict):
            keys.extend(_flat_keys(v, prefix + k + "."))
    return keys


def _parse_value(name: str, text: str, current: Any) -> Any:
    def literal():
        try:
            return ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return text

    if current is None:
        return None if text.lower() == "none" else literal()
    if isinstance(current, bool):
        if text.lower() in ("true", "1", "yes"):
            return True
        if text.lower() in ("false", "0", "no"):
            return False
        raise ValueError(f"--config.{name} expects a bool (true/false), got {text!r}")
    if isinstance(current, int | float):
        value = literal()
        ok = isinstance(value, int) or (isinstance(value, float) and isinstance(current, float))
        if not ok or isinstance(value, bool):
            kind = type(current).__name__
            raise ValueError(f"--config.{name} expects {kind}, got {text!r}")
        return type(current)(value)
    if isinstance(current, str):
        return text
    if isinstance(current, tuple | list):
        value = literal()
        if not isinstance(value, tuple | list):
            value = (value,)
        return type(current)(value)
    if isinstance(current, ml_collections.ConfigDict):
        value = literal()
        if not isinstance(value, dict):
            raise ValueError(f"--config.{name} expects a dict literal, got {text!r}")
        return ml_collections.ConfigDict(value)
    raise ValueError(f"--config.{name} has type {type(current).__name__}; set its fields instead")


def apply_overrides(
    config: ml_collections.ConfigDict, overrides: Sequence[tuple[str, str]]
) -> ml_collections.ConfigDict:
    """Sets ``config.a.b = value`` for each ``("a.b", "value")``, parsed by the field's type.

    Unknown fields raise ``ValueError`` with the closest known names; a value that does not
    parse as the field's type raises ``ValueError``.
    """
    known = _flat_keys(config)
    for name, text in overrides:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ValueError(f"unknown config field --config.{name}{hint}")
        *parents, leaf = name.split(".")
        node = config
        for p in parents:
            node = node[p]
        node[leaf] = _parse_value(name, text, node[leaf])
    return config


def config_to_dict(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """A JSON-serialisable copy of ``config``."""
    return json.loads(config.to_json_best_effort())
