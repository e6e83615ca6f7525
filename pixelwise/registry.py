"""One small name -> builder registry, one instance per kind of component.

A builder is registered with a decorator that may carry metadata (the paper, the
parameter count it reports, ...). The README tables and the benchmark tables are
generated from that metadata, never typed by hand.

>>> reg = Registry("widget")
>>> @reg.register("round", paper="Doe 2020")
... def make_round(size=1):
...     return ("round", size)
>>> reg.get("round")(size=2)
('round', 2)
>>> reg.metadata("round")["paper"]
'Doe 2020'
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T", bound=Callable[..., Any])


class UnknownNameError(KeyError):
    """Raised when a name is not registered; the message lists close names."""

    def __str__(self) -> str:  # KeyError quotes its argument; keep the message readable
        return str(self.args[0])


class Registry:
    """A mapping from names to builders (functions or classes), with metadata."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._builders: dict[str, Callable[..., Any]] = {}
        self._metadata: dict[str, dict[str, Any]] = {}

    def register(self, name: str | None = None, **metadata: Any) -> Callable[[T], T]:
        """Decorator registering a builder under ``name`` (default: its ``__name__``)."""

        def decorator(builder: T) -> T:
            key = name or builder.__name__
            if key in self._builders:
                raise ValueError(f"{self.kind} {key!r} is already registered")
            self._builders[key] = builder
            self._metadata[key] = dict(metadata)
            return builder

        return decorator

    def get(self, name: str) -> Callable[..., Any]:
        """Return the builder for ``name``; unknown names raise with close matches."""
        try:
            return self._builders[name]
        except KeyError:
            raise UnknownNameError(self._unknown_message(name)) from None

    def metadata(self, name: str) -> dict[str, Any]:
        self.get(name)
        return dict(self._metadata[name])

    def names(self) -> list[str]:
        return sorted(self._builders)

    def __contains__(self, name: object) -> bool:
        return name in self._builders

    def __len__(self) -> int:
        return len(self._builders)

    def _unknown_message(self, name: str) -> str:
        close = difflib.get_close_matches(name, self._builders, n=5, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        return f"unknown {self.kind} {name!r}.{hint} Registered: {', '.join(self.names())}."


MODELS = Registry("model")
BACKBONES = Registry("backbone")
DATASETS = Registry("dataset")
LOSSES = Registry("loss")


def unexpected_arguments(builder: Callable[..., Any], kwargs: dict[str, Any]) -> tuple[list[str], list[str]]:
    """``(unexpected, accepted)``: the keys of ``kwargs`` that ``builder`` does not take (sorted;
    none when it takes ``**kwargs`` and checks them itself) and the parameter names it has, in
    signature order. Callers raise their own error, naming what the user typed.

    >>> unexpected_arguments(lambda size=1, colour="red": None, {"colour": "blue", "szie": 2})
    (['szie'], ['size', 'colour'])
    """
    parameters = inspect.signature(builder).parameters
    accepted = list(parameters)
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return [], accepted
    return sorted(set(kwargs) - set(accepted)), accepted
