"""SelectionTemplate: named cuts with a cutflow, and derived outputs of passing rows.

Cuts apply in order to the rows of ``level`` (events or a collection such as jets); each is
an expression or a callable on a :class:`~tracerflow.columns_scope.Scope` returning a mask.
A NaN compares false, so rows with missing values fail the cut that reads them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Mapping, Union

import numpy as np

from tracerflow.columns import EVENT, EventBatch
from tracerflow.columns_scope import Scope, ScopeError
from tracerflow.templates.event import TemplateError
from tracerflow.templates.expressions import compile_expression

Cut = Union[str, Callable[[Scope], np.ndarray]]


@dataclass
class Cutflow:
    """Raw and weighted counts of rows surviving each cut (the first row counts all rows)."""

    names: list[str]
    passed: np.ndarray
    weighted: np.ndarray

    @classmethod
    def empty(cls, cut_names: list[str]) -> "Cutflow":
        names = ["all"] + list(cut_names)
        return cls(names, np.zeros(len(names), np.int64), np.zeros(len(names), np.float64))

    def __iadd__(self, other: "Cutflow") -> "Cutflow":
        self.passed = self.passed + other.passed
        self.weighted = self.weighted + other.weighted
        return self

    def as_rows(self) -> list[tuple[str, int, float]]:
        return [(n, int(p), float(w)) for n, p, w in zip(self.names, self.passed, self.weighted)]


@dataclass
class SelectionResult:
    """Mask of passing rows at the selection level, the chunk's cutflow and derived outputs."""

    mask: np.ndarray
    cutflow: Cutflow
    outputs: dict[str, np.ndarray] = field(default_factory=dict)


class SelectionTemplate:
    """Ordered named cuts on rows of ``level``, a ``weight`` expression and derived ``outputs``."""

    level: ClassVar[str] = EVENT
    cuts: ClassVar[Mapping[str, Cut]] = {}
    outputs: ClassVar[Mapping[str, Cut]] = {}
    weight: ClassVar[Cut | None] = None

    def __init__(self) -> None:
        self._cuts = {name: _compiled(fx, f"cuts.{name}") for name, fx in self.cuts.items()}
        self._outputs = {name: _compiled(fx, f"outputs.{name}") for name, fx in self.outputs.items()}
        self._weight = _compiled(self.weight, "weight") if self.weight is not None else None

    def cut_names(self) -> list[str]:
        return list(self._cuts)

    def output_names(self) -> list[str]:
        return list(self._outputs)

    def apply(self, batch: EventBatch) -> SelectionResult:
        """Evaluate every cut in order on one chunk; outputs are kept for passing rows only."""
        scope = Scope(batch, self.level)
        n = len(scope)
        weights = _call(self._weight, scope, "weight").astype(np.float64) if self._weight else np.ones(n)
        cutflow = Cutflow.empty(self.cut_names())
        mask = np.ones(n, dtype=bool)
        cutflow.passed[0], cutflow.weighted[0] = n, weights.sum()
        for i, (name, fx) in enumerate(self._cuts.items(), start=1):
            values = _call(fx, scope, f"cuts.{name}")
            if values.dtype != bool:
                raise TemplateError(f"cuts.{name}: gave {values.dtype} values, expected a boolean mask")
            mask &= values
            cutflow.passed[i], cutflow.weighted[i] = mask.sum(), weights[mask].sum()
        outputs = {name: _call(fx, scope, f"outputs.{name}")[mask] for name, fx in self._outputs.items()}
        return SelectionResult(mask=mask, cutflow=cutflow, outputs=outputs)

    def describe(self) -> dict[str, Any]:
        return {"level": self.level, "cuts": self.cut_names(), "outputs": self.output_names()}


def _compiled(fx: Cut, where: str) -> Callable:
    if callable(fx):
        return fx
    try:
        return compile_expression(fx)
    except ValueError as err:
        raise TemplateError(f"selection {where}: {err}") from None


def _call(fx: Callable, scope: Scope, where: str) -> np.ndarray:
    try:
        values = np.asarray(fx(scope))
    except (ScopeError, ValueError) as err:
        raise TemplateError(f"selection {where}: {err}") from None
    if values.shape != (len(scope),):
        raise TemplateError(f"selection {where}: gave shape {values.shape}, expected ({len(scope)},)")
    return values


def declared(spec: Mapping[str, Any]) -> SelectionTemplate:
    """Build a SelectionTemplate from its YAML declaration (level, cuts, outputs, weight)."""
    attrs = {
        "level": spec.get("level", EVENT),
        "cuts": dict(spec.get("cuts") or {}),
        "outputs": dict(spec.get("outputs") or {}),
        "weight": spec.get("weight"),
    }
    return type("DeclaredSelectionTemplate", (SelectionTemplate,), attrs)()
