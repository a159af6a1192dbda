"""Settings of a SampleTracer (AnalysisG's names), validated and stored as JSON in tracer files."""
from __future__ import annotations

import json
import numbers
import os
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Mapping


@dataclass(frozen=True)
class Settings:
    """What a tracer reads and how downstream stages train; every field round-trips through DumpTracer."""

    Threads: int = 1
    Chunks: int = 100_000
    EventStart: int | None = None
    EventStop: int | None = None
    kFolds: int = 5
    Epochs: int = 10
    Optimizer: str = "ADAM"
    Scheduler: str | None = None
    ProjectName: str = "tracerflow"
    OutputDirectory: str = "tracerflow-output"

    def __post_init__(self) -> None:
        if isinstance(self.OutputDirectory, os.PathLike):
            object.__setattr__(self, "OutputDirectory", os.fspath(self.OutputDirectory))
        for name, minimum in (("Threads", 1), ("Chunks", 1), ("kFolds", 2), ("Epochs", 1)):
            object.__setattr__(self, name, _need_int(name, getattr(self, name), minimum))
        for name in ("EventStart", "EventStop"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, _need_int(name, getattr(self, name), 0))
        _need_str("Optimizer", self.Optimizer, optional=False)
        _need_str("Scheduler", self.Scheduler, optional=True)
        _need_str("ProjectName", self.ProjectName, optional=False)
        _need_str("OutputDirectory", self.OutputDirectory, optional=False)

    def updated(self, **changes: Any) -> "Settings":
        """A copy with ``changes`` applied and validated."""
        unknown = sorted(set(changes) - set(names()))
        if unknown:
            raise AttributeError(f"unknown SampleTracer setting(s) {unknown}; settings are {names()}")
        return replace(self, **changes)

    def to_json(self) -> str:
        """The settings as JSON text, the form stored in tracer files."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | Mapping[str, Any]) -> "Settings":
        """Settings from JSON text (or its parsed mapping); unknown keys are an error."""
        values = json.loads(text) if isinstance(text, (str, bytes)) else dict(text)
        return cls().updated(**values)


def names() -> tuple[str, ...]:
    """The setting names, in declaration order."""
    return tuple(f.name for f in fields(Settings))


def _need_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"SampleTracer.{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _need_str(name: str, value: Any, optional: bool) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str) or not value:
        kind = "a non-empty string" + (" or None" if optional else "")
        raise ValueError(f"SampleTracer.{name} must be {kind}, got {value!r}")
