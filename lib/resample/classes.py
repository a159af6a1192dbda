"""The classes of an analysis and how each row gets one: from a label column, or from its sample.

``resample.classes`` is one of
- a mapping ``class -> label value``: rows are classed by the selection output ``resample.label``
  (flavour tagging: ``{bjets: 5, cjets: 4, ujets: 0}``);
- a mapping ``class -> [samples]``, or a list of class names with ``samples.<name>.label``
  naming each sample's class: every row of a sample has its sample's class (signal vs
  background), and no label column is read;
- both kinds of entries at once: samples that carry a class are classed by sample, the others by
  the label column;
- absent (null): one class, ``all``, for a regression.

:func:`classes_from_config` resolves this into :class:`Classes`, whose ``values`` and ``column``
are what :class:`~tracerflow.resample.spec.ResampleSpec` takes (class -> label value, and the
column holding it); Resample fills ``column`` with the sample's value for rows of a classed
sample (:meth:`Classes.value_of_sample`) instead of reading it. Errors are ValueErrors whose
message starts with the key at fault.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from tracerflow.resample.spec import ResampleSpec, spec_from_config

#: The label column of rows that are classed by sample only (never read from a file).
SAMPLE_CLASS_COLUMN = "__class__"
#: Label values of classes given by sample: far from any label a column holds.
SAMPLE_CLASS_VALUES = -(2**30)
#: The one class of an analysis without classes (a regression).
SINGLE_CLASS = "all"


@dataclass(frozen=True)
class Classes:
    """Ordered class names, the label value of each, the column holding it and the samples classed by name."""

    names: tuple[str, ...]
    values: Mapping[str, int]
    column: str
    by_sample: Mapping[str, str] = field(default_factory=dict)
    target: str = ""

    @property
    def reads_column(self) -> bool:
        """Whether some rows take their class from a selection output (``resample.label``)."""
        return self.column != SAMPLE_CLASS_COLUMN

    def value_of_sample(self, sample: str) -> int | None:
        """The label value every row of ``sample`` has, or None when its rows are classed by the column."""
        name = self.by_sample.get(sample)
        return None if name is None else self.values[name]


def classes_from_config(resample: Mapping[str, Any], samples: Mapping[str, Mapping[str, Any]],
                        classed: Sequence[str] | None = None) -> Classes:
    """Resolve the validated ``resample`` block against the ``samples`` block.

    ``classed`` are the samples whose rows need a class (those resampled and trained on; by default
    all); a predict-only sample may have none (collision data).
    """
    classed = list(samples) if classed is None else list(classed)
    raw = resample["classes"] or {}
    label = resample["label"]
    if isinstance(raw, list):
        if len(set(raw)) != len(raw):
            raise ValueError(f"resample.classes: lists a class twice ({', '.join(raw)})")
        raw = {name: [] for name in raw}
    if not raw:
        if label is not None:
            raise ValueError("resample.label: names a label column, but resample.classes gives no classes")
        stray = [s for s in samples if samples[s]["label"] is not None]
        if stray:
            raise ValueError(f"samples.{stray[0]}.label: there are no resample.classes to name")
        return Classes((SINGLE_CLASS,), {SINGLE_CLASS: 0}, SAMPLE_CLASS_COLUMN,
                       {s: SINGLE_CLASS for s in samples}, _target(resample, (SINGLE_CLASS,)))
    by_sample: dict[str, str] = {}
    values: dict[str, int] = {}
    for name, value in raw.items():
        if isinstance(value, int):
            values[name] = value
            continue
        for i, sample in enumerate(value):
            if sample not in samples:
                raise ValueError(f"resample.classes.{name}[{i}]: {sample!r} is not a sample "
                                 f"(have: {', '.join(samples)})")
            if sample in by_sample:
                raise ValueError(f"resample.classes.{name}[{i}]: sample {sample!r} is already in class "
                                 f"{by_sample[sample]!r}")
            by_sample[sample] = name
    for sample, spec in samples.items():
        own = spec["label"]
        if own is None:
            continue
        if own not in raw:
            raise ValueError(f"samples.{sample}.label: {own!r} is not among resample.classes ({', '.join(raw)})")
        if by_sample.get(sample, own) != own:
            raise ValueError(f"samples.{sample}.label: {own!r}, but resample.classes puts it in {by_sample[sample]!r}")
        by_sample[sample] = own
    if values and label is None:
        first = next(iter(values))
        raise ValueError(f"resample.label: needed to class rows by value (resample.classes.{first}: {values[first]}); "
                         "or give each sample its class with samples.<name>.label")
    if not values and label is not None:
        raise ValueError("resample.label: every class is given by sample, so no label column is read; remove it")
    unclassed = [s for s in classed if s not in by_sample]
    if unclassed and not values:
        raise ValueError(f"samples.{unclassed[0]}.label: missing; every sample needs a class "
                         f"(one of {', '.join(raw)})")
    used = [v for v in values.values()]
    if len(set(used)) != len(used):
        raise ValueError("resample.classes: two classes share a label value")
    free = SAMPLE_CLASS_VALUES
    for name in raw:
        if name not in values:
            values[name] = free
            free += 1
    names = tuple(raw)
    return Classes(names, {n: values[n] for n in names}, label if label is not None else SAMPLE_CLASS_COLUMN,
                   by_sample, _target(resample, names))


def _target(resample: Mapping[str, Any], names: tuple[str, ...]) -> str:
    target = resample["target"]
    if target is None:
        return names[0]
    if target not in names:
        raise ValueError(f"resample.target: {target!r} is not among resample.classes ({', '.join(names)})")
    return target


#: The keys of the ``resample`` block that make a :class:`ResampleSpec` (with the resolved classes).
SPEC_KEYS = ("method", "variables", "sampling_fraction", "max_upsampling_ratio", "upscale_pdf", "splits",
             "untouched_splits", "balance_weights")


def resampled_samples(cfg: Any) -> list[str]:
    """The samples that are resampled and trained on: all but those named in ``predict.samples``."""
    return [s for s in cfg["samples"] if s not in cfg["predict"]["samples"]]


def resample_spec(cfg: Any) -> tuple[ResampleSpec, Classes]:
    """The :class:`ResampleSpec` of a validated config and the classes behind its labels."""
    block = cfg["resample"]
    classes = classes_from_config(block, cfg["samples"], resampled_samples(cfg))
    spec = spec_from_config({**{k: block[k] for k in SPEC_KEYS}, "label": classes.column,
                             "classes": dict(classes.values), "target": classes.target}, cfg.seed)
    return spec, classes
