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

import dataclasses
import difflib
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from pixelwise.metadata import BackboneMetadata, ModelMetadata

T = TypeVar("T", bound=Callable[..., Any])


class UnknownNameError(KeyError):
    """Raised when a name is not registered; the message lists close names."""

    def __str__(self) -> str:  # KeyError quotes its argument; keep the message readable
        return str(self.args[0])


class Registry:
    """A mapping from names to builders (functions or classes), with metadata.

    With a ``schema`` (a dataclass), the metadata of each registration is validated when it is
    registered: ``schema(**metadata)`` refuses unknown keys, and the schema's ``check(name,
    builder)`` method, if it has one, checks the values against the builder.
    """

    def __init__(self, kind: str, schema: type | None = None) -> None:
        self.kind = kind
        self.schema = schema
        self._builders: dict[str, Callable[..., Any]] = {}
        self._metadata: dict[str, dict[str, Any]] = {}

    def register(self, name: str | None = None, **metadata: Any) -> Callable[[T], T]:
        """Decorator registering a builder under ``name`` (default: its ``__name__``)."""

        def decorator(builder: T) -> T:
            key = name or builder.__name__
            if key in self._builders:
                raise ValueError(f"{self.kind} {key!r} is already registered")
            self._metadata[key] = self._validated(key, builder, metadata)
            self._builders[key] = builder
            return builder

        return decorator

    def _validated(self, name: str, builder: Callable[..., Any], metadata: dict[str, Any]) -> dict[str, Any]:
        if self.schema is None:
            return dict(metadata)
        valid = [field.name for field in dataclasses.fields(self.schema)]
        unknown = sorted(set(metadata) - set(valid))
        if unknown:
            raise ValueError(f"{self.kind} {name!r}: unknown metadata {', '.join(unknown)}; "
                             f"the schema has {', '.join(valid)}")
        try:
            record = self.schema(**metadata)
        except TypeError as error:  # a required field is missing
            raise ValueError(f"{self.kind} {name!r}: {error}") from None
        if hasattr(record, "check"):
            record.check(name, builder)
        return {field: getattr(record, field) for field in valid}

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


MODELS = Registry("model", schema=ModelMetadata)
BACKBONES = Registry("backbone", schema=BackboneMetadata)
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
