"""One registry by name for explainers, attacks, penalties and evaluation metrics.

A :class:`Registry` maps a name to a factory and the defaults it is built with, so that the
command line, the configs, ``explain``, ``evaluate``, ``reproduce`` and the benchmarks all
find a method the same way, and ``--help`` lists what it holds. Adding a method is one
module plus one line::

    from jaxinterp import attribution

    attribution.EXPLAINERS.register("my_method", my_factory, num_steps=16)
    explain = attribution.EXPLAINERS.build("my_method")  # my_factory(num_steps=16)
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Iterator, Mapping
from typing import Any

__all__ = ["Entry", "Registry"]


@dataclasses.dataclass(frozen=True)
class Entry:
    """One registered method.

    Attributes:
      name: Its name.
      factory: ``factory(**hyperparameters) -> method``.
      defaults: Hyperparameters the registry passes unless overridden.
      summary: One line for listings (the factory's first docstring line unless given).
      tags: Properties the jobs select by (e.g. ``"differentiable"``: an explainer cheap
        and smooth enough to be differentiated inside an attack loop).
    """

    name: str
    factory: Callable[..., Any]
    defaults: Mapping[str, Any]
    summary: str
    tags: frozenset[str] = frozenset()

    def build(self, *, context: Mapping[str, Any] | None = None, **overrides: Any) -> Any:
        """``factory(**{**defaults, **context', **overrides})``.

        ``context`` holds what a job knows of its model (``features_fn``, ``layer_fn``): each
        entry is passed only when the factory names it as a parameter (not through
        ``**kwargs``, which may forward to another method), so one call builds any method by
        name.
        """
        params = inspect.signature(self.factory).parameters
        extra = {k: v for k, v in (context or {}).items() if k in params}
        return self.factory(**{**self.defaults, **extra, **overrides})

    def accepts(self, name: str) -> bool:
        """Whether the factory takes a keyword argument ``name``."""
        params = inspect.signature(self.factory).parameters
        return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


class Registry:
    """Name -> :class:`Entry`, in registration order."""

    def __init__(self, kind: str) -> None:
        """``kind`` names what is registered (``"explainer"``, ``"attack"``, ...)."""
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def register(
        self,
        name: str,
        factory: Callable[..., Any],
        /,
        *,
        summary: str | None = None,
        tags: tuple[str, ...] = (),
        replace: bool = False,
        **defaults: Any,
    ) -> Callable[..., Any]:
        """Adds ``name -> factory`` with ``defaults``; returns ``factory``.

        Args:
          name: The name (letters, digits and ``_``).
          factory: ``factory(**hyperparameters) -> method``.
          summary: One line for listings; default: the factory's first docstring line.
          tags: See :class:`Entry`.
          replace: Allow replacing an existing entry.
          **defaults: Hyperparameters passed to ``factory`` unless overridden.

        Raises:
          ValueError: ``name`` is taken (unless ``replace``) or not an identifier-like
            string; ``factory`` is not callable.
        """
        if not isinstance(name, str) or not name.replace("_", "").isalnum():
            raise ValueError(f"a {self.kind} name must be letters, digits and _, got {name!r}")
        if not callable(factory):
            raise ValueError(f"the factory of {self.kind} {name!r} must be callable")
        if name in self._entries and not replace:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        doc = inspect.getdoc(factory) or ""
        line = summary if summary is not None else (doc.splitlines() or [""])[0]
        self._entries[name] = Entry(name, factory, dict(defaults), line, frozenset(tags))
        return factory

    def unregister(self, name: str) -> None:
        """Removes ``name`` (e.g. a method a test registered)."""
        self.get(name)
        del self._entries[name]

    def get(self, name: str) -> Entry:
        """The entry of ``name``; ``ValueError`` listing the known names otherwise."""
        if name not in self._entries:
            known = ", ".join(self._entries) or "none"
            raise ValueError(f"unknown {self.kind} {name!r}; known: {known}")
        return self._entries[name]

    def build(
        self, name: str, *, context: Mapping[str, Any] | None = None, **overrides: Any
    ) -> Any:
        """The method ``name`` built with its defaults, ``context`` (see :meth:`Entry.build`)
        and ``overrides``."""
        return self.get(name).build(context=context, **overrides)

    def names(self, tag: str | None = None) -> tuple[str, ...]:
        """The registered names, in order (only those tagged ``tag`` if given)."""
        return tuple(n for n, e in self._entries.items() if tag is None or tag in e.tags)

    def __getitem__(self, name: str) -> Callable[..., Any]:
        """The factory of ``name`` (see :meth:`get`)."""
        return self.get(name).factory

    def check(self, names: Any) -> tuple[str, ...]:
        """``names`` (a sequence of names) if all are registered and there is at least one."""
        names = tuple(names)
        unknown = [n for n in names if n not in self._entries]
        if not names or unknown:
            raise ValueError(
                f"unknown {self.kind}(s) {', '.join(map(str, unknown)) or '(none given)'}; "
                f"known: {', '.join(self._entries)}"
            )
        return names

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self._entries)})"
