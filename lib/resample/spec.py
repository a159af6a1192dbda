"""What the Resample stage does, as one validated, immutable object built from the config.

The fields mirror umami-preprocessing's ``resampling`` block (target, method, variables with
``[[low, high, n], ...]`` bins, sampling_fraction, max_upsampling_ratio, upscale_pdf) plus the
train/val/test split, which umami makes by file and tracerflow by event hash. Every check
raises a ValueError whose message starts with the key path at fault (``resample.<key>``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from tracerflow.resample.binning import check_edges, edges_from_ranges

METHODS = ("pdf", "countup", "weighting", "none")
DEFAULT_SPLITS = {"train": 0.8, "val": 0.1, "test": 0.1}
RESERVED_COLUMNS = ("hash", "item", "source", "row", "weight")


@dataclass(frozen=True, eq=False)
class ResampleSpec:
    """The resampling of one analysis.

    ``variables``: name -> bin edges (or ``[[low, high, n], ...]`` ranges, converted by
    :func:`edges_from_ranges`); ``label``: the column holding the class label; ``classes``:
    ordered class name -> label value (class index = position); ``target``: the class whose
    distribution all others are made to follow; ``sampling_fraction``: requested jets of each
    other class per target jet, or ``"auto"``; ``max_upsampling_ratio``: cap on a bin's
    ratio; ``upscale_pdf``: sub-bins per bin and variable for ``pdf``; ``splits``: name ->
    fraction of events; ``untouched_splits``: splits kept as they are (default: ``test`` if
    present); ``split_seed``: seed of the split assignment (default: ``seed``), so that the
    resampling can be re-drawn without moving events between splits; ``balance_weights``: in
    resampled splits, scale each class's weights to the target class's total (class balance on
    top of physics weights).
    """

    variables: Mapping[str, Any]
    label: str
    classes: Mapping[str, int]
    target: str
    seed: int
    method: str = "pdf"
    sampling_fraction: float | str = "auto"
    max_upsampling_ratio: float = 10.0
    upscale_pdf: int = 1
    splits: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_SPLITS))
    untouched_splits: tuple[str, ...] | None = None
    split_seed: int | None = None
    balance_weights: bool = False

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "variables", _variables(self.variables))
        if not isinstance(self.label, str) or not self.label:
            raise ValueError(f"resample.label: expected a column name, got {self.label!r}")
        set_(self, "classes", _classes(self.classes))
        if self.target not in self.classes:
            raise ValueError(
                f"resample.target: {self.target!r} is not among resample.classes ({', '.join(self.classes)})"
            )
        for key in ("seed", "split_seed"):
            value = getattr(self, key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer))):
                raise ValueError(f"resample.{key}: expected an integer, got {value!r}")
        if self.method not in METHODS:
            raise ValueError(f"resample.method: unknown method {self.method!r}; expected one of {', '.join(METHODS)}")
        set_(self, "sampling_fraction", _sampling_fraction(self.sampling_fraction))
        ratio = self.max_upsampling_ratio
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not ratio > 0 or not math.isfinite(ratio):
            raise ValueError(f"resample.max_upsampling_ratio: expected a finite number > 0, got {ratio!r}")
        set_(self, "max_upsampling_ratio", float(ratio))
        up = self.upscale_pdf
        if isinstance(up, bool) or not isinstance(up, (int, np.integer)) or up < 1:
            raise ValueError(f"resample.upscale_pdf: expected an integer >= 1, got {up!r}")
        set_(self, "upscale_pdf", int(up))
        set_(self, "splits", _splits(self.splits))
        set_(self, "untouched_splits", _untouched(self.untouched_splits, self.splits))

    @property
    def class_names(self) -> tuple[str, ...]:
        """Class names in class-index order."""
        return tuple(self.classes)

    @property
    def target_index(self) -> int:
        """Class index of the target class."""
        return self.class_names.index(self.target)

    @property
    def split_names(self) -> tuple[str, ...]:
        """Split names in the order of their fractions."""
        return tuple(self.splits)

    @property
    def assignment_seed(self) -> int:
        """Seed of the split assignment: ``split_seed`` if given, else ``seed``."""
        return int(self.seed if self.split_seed is None else self.split_seed)

    def is_resampled(self, split: str) -> bool:
        """Whether ``split`` is resampled (it is not among ``untouched_splits``)."""
        assert self.untouched_splits is not None
        return split not in self.untouched_splits


def spec_from_config(block: Mapping[str, Any], seed: int) -> ResampleSpec:
    """Build a :class:`ResampleSpec` from the config block ``resample`` and the project seed.

    ``variables`` maps a name to its ranges, either directly or under ``bins`` (umami's
    spelling); ``label`` defaults to ``flavour``. Unknown keys are errors.
    """
    if not isinstance(block, Mapping):
        raise ValueError(f"resample: expected a mapping, got {type(block).__name__}")
    allowed = {"variables", "label", "classes", "target", "method", "sampling_fraction",
               "max_upsampling_ratio", "upscale_pdf", "splits", "untouched_splits", "split_seed", "balance_weights"}
    for key in block:
        if key not in allowed:
            raise ValueError(f"resample.{key}: unknown key; expected one of {', '.join(sorted(allowed))}")
    for key in ("variables", "classes", "target"):
        if key not in block:
            raise ValueError(f"resample.{key}: missing")
    variables = block["variables"]
    if not isinstance(variables, Mapping) or not variables:
        raise ValueError("resample.variables: expected a mapping name -> bins")
    edges = {}
    for name, bins in variables.items():
        if isinstance(bins, Mapping):
            if set(bins) != {"bins"}:
                raise ValueError(f"resample.variables.{name}: expected only the key 'bins', got {sorted(bins)}")
            bins = bins["bins"]
        edges[str(name)] = edges_from_ranges(str(name), bins)
    untouched = block.get("untouched_splits")
    return ResampleSpec(
        variables=edges,
        label=block.get("label", "flavour"),
        classes=block["classes"],
        target=block["target"],
        seed=seed,
        method=block.get("method", "pdf"),
        sampling_fraction=block.get("sampling_fraction", "auto"),
        max_upsampling_ratio=block.get("max_upsampling_ratio", 10.0),
        upscale_pdf=block.get("upscale_pdf", 1),
        splits=block.get("splits", dict(DEFAULT_SPLITS)),
        untouched_splits=None if untouched is None else tuple(untouched),
        split_seed=block.get("split_seed"),
        balance_weights=bool(block.get("balance_weights", False)),
    )


def _variables(variables: Mapping[str, Any]) -> dict[str, np.ndarray]:
    if not isinstance(variables, Mapping) or not variables:
        raise ValueError("resample.variables: expected a non-empty mapping name -> bin edges")
    out = {}
    for name, value in variables.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"resample.variables: variable names must be strings, got {name!r}")
        if name in RESERVED_COLUMNS:
            raise ValueError(f"resample.variables.{name}: the name is reserved for an index column")
        is_ranges = isinstance(value, (list, tuple)) and len(value) > 0 and isinstance(value[0], (list, tuple))
        out[name] = check_edges(name, edges_from_ranges(name, value) if is_ranges else value)
    return out


def _classes(classes: Mapping[str, int]) -> dict[str, int]:
    if not isinstance(classes, Mapping) or not classes:
        raise ValueError("resample.classes: expected a non-empty mapping class name -> label value")
    out: dict[str, int] = {}
    for name, value in classes.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ValueError(f"resample.classes.{name}: label value must be an integer, got {value!r}")
        if int(value) in out.values():
            raise ValueError(f"resample.classes.{name}: label value {value} is used by another class")
        out[str(name)] = int(value)
    return out


def _sampling_fraction(value: float | str) -> float | str:
    if value == "auto":
        return "auto"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or not math.isfinite(value):
        raise ValueError(f"resample.sampling_fraction: expected a number > 0 or 'auto', got {value!r}")
    return float(value)


def _splits(splits: Mapping[str, float]) -> dict[str, float]:
    if not isinstance(splits, Mapping) or not splits:
        raise ValueError("resample.splits: expected a non-empty mapping split name -> fraction")
    out = {}
    for name, fraction in splits.items():
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction <= 1:
            raise ValueError(f"resample.splits.{name}: expected a fraction in [0, 1], got {fraction!r}")
        out[str(name)] = float(fraction)
    total = math.fsum(out.values())
    if not math.isclose(total, 1.0, rel_tol=0.0, abs_tol=1e-9):
        raise ValueError(f"resample.splits: fractions sum to {total:g}, expected 1")
    return out


def _untouched(untouched: tuple[str, ...] | None, splits: Mapping[str, float]) -> tuple[str, ...]:
    if untouched is None:
        return ("test",) if "test" in splits else ()
    if isinstance(untouched, str):
        untouched = (untouched,)
    for name in untouched:
        if name not in splits:
            raise ValueError(f"resample.untouched_splits: {name!r} is not among resample.splits ({', '.join(splits)})")
    return tuple(untouched)
