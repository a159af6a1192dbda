"""EventTemplate: how ROOT branches become event scalars and particle collections.

Subclass it in Python (``module:Class`` in the config) or declare it in the YAML; both give
the same object. Chunks are built with whole arrays; derived fields are vectorised
expressions or a ``derive`` override, never a per-event loop.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Mapping

import numpy as np

from tracerflow.columns import EVENT, EventBatch, Table, ragged_index
from tracerflow.columns_scope import Scope
from tracerflow.templates.expressions import Expression, compile_expression
from tracerflow.templates.fourvector import CONVENTIONS, DEFAULT_ADDED, derive_kinematics, wrap_phi


class TemplateError(ValueError):
    """A template that cannot be applied: a missing branch, a bad link, inconsistent counts."""


@dataclass(frozen=True)
class Collection:
    """One particle collection: attribute -> branch, optional four-vector convention and parent link.

    ``link`` names a per-event jagged branch holding, for each item, the index of its parent
    item within the event (e.g. a track's jet index); items with an index outside the parent
    collection (such as -1) are dropped. ``match_dr`` attaches items to a parent collection
    without a link branch instead: each item goes to the parent item of its event nearest in
    delta R (from the ``eta`` and ``phi`` attributes of both, measured or derived from the four
    vector) when that is below ``match_dr``, and is dropped otherwise (muons or PF candidates to
    jets within 0.4). ``members`` builds a fixed-size collection from flat branches instead
    (``[{pt: pt1, ...}, {pt: pt2, ...}]``: two objects per event).
    """

    branches: Mapping[str, str] = field(default_factory=dict)
    members: tuple[Mapping[str, str], ...] | None = None
    four_vector: str | None = None
    kinematics: tuple[str, ...] | None = None
    parent: str = EVENT
    link: str | None = None
    match_dr: float | None = None

    def added_kinematics(self) -> tuple[str, ...]:
        if self.four_vector is None:
            return ()
        if self.kinematics is not None:
            return tuple(self.kinematics)
        return DEFAULT_ADDED[self.four_vector]


class EventTemplate:
    """Declares leaves, collections and derived fields; turns branch arrays into an EventBatch.

    ``optional`` maps branches that a file may lack (truth branches, absent in collision data) to
    the value that fills them there: a leaf gets it for every event, a collection's attribute for
    every item (the collection's other branches give the counts).
    """

    leaves: ClassVar[Mapping[str, str]] = {}
    collections: ClassVar[Mapping[str, Collection]] = {}
    derived: ClassVar[Mapping[str, str]] = {}
    optional: ClassVar[Mapping[str, float]] = {}

    def __init__(self) -> None:
        self._check()
        self._derived: list[tuple[str, str, Expression]] = []
        for target, text in self.derived.items():
            level, _, name = target.rpartition(".")
            self._derived.append((level or EVENT, name, compile_expression(text)))

    def _check(self) -> None:
        for name, coll in self.collections.items():
            if bool(coll.branches) == bool(coll.members):
                raise TemplateError(f"collection {name!r}: give either branches (jagged) or members (flat)")
            if coll.members and len({tuple(sorted(m)) for m in coll.members}) != 1:
                raise TemplateError(f"collection {name!r}: every member needs the same attributes")
            attrs = coll.branches or coll.members[0]
            if coll.four_vector is not None:
                if coll.four_vector not in CONVENTIONS:
                    raise TemplateError(
                        f"collection {name!r}: four_vector {coll.four_vector!r}, expected one of {sorted(CONVENTIONS)}"
                    )
                missing = [c for c in CONVENTIONS[coll.four_vector] if c not in attrs]
                if missing:
                    raise TemplateError(f"collection {name!r}: four_vector {coll.four_vector} needs attributes {missing}")
            required = [b for b in (coll.branches or {}).values() if b not in self.optional]
            if coll.branches and not required:
                raise TemplateError(f"collection {name!r}: every branch is optional; one must give the counts")
            if coll.link is not None and coll.link in self.optional:
                raise TemplateError(f"collection {name!r}: its link {coll.link!r} cannot be optional")
            if coll.parent != EVENT:
                if coll.parent not in self.collections:
                    raise TemplateError(f"collection {name!r}: unknown parent {coll.parent!r}")
                if (coll.link is None) == (coll.match_dr is None):
                    raise TemplateError(f"collection {name!r}: a parent other than the event needs a link branch "
                                        "or match_dr (nearest in delta R), one of the two")

    def branches(self) -> list[str]:
        """Every ROOT branch the template reads, in a stable order."""
        names = list(self.leaves.values())
        for coll in self.collections.values():
            names.extend(coll.branches.values())
            for member in coll.members or ():
                names.extend(member.values())
            if coll.link:
                names.append(coll.link)
        return list(dict.fromkeys(names))

    def branch_roles(self) -> dict[str, tuple[bool, str]]:
        """Each branch the template reads: whether it must hold a list of numbers per event (else one
        number per event) and, in words, what the template reads it as."""
        roles: dict[str, tuple[bool, str]] = {}
        for attr, branch in self.leaves.items():
            roles.setdefault(branch, (False, f"leaf {attr!r}"))
        for name, coll in self.collections.items():
            for attr, branch in coll.branches.items():
                roles.setdefault(branch, (True, f"attribute {attr!r} of collection {name!r}"))
            for i, member in enumerate(coll.members or ()):
                for attr, branch in member.items():
                    roles.setdefault(branch, (False, f"attribute {attr!r} of member {i} of collection {name!r}"))
            if coll.link:
                roles.setdefault(coll.link, (True, f"the link of collection {name!r}"))
        return roles

    def build(self, arrays: Mapping[str, Any], index: dict[str, np.ndarray],
              sample_names: tuple[str, ...] = (), overlay: Callable[[EventBatch], None] | None = None) -> EventBatch:
        """Turn one chunk of branch arrays (numpy or awkward) into an :class:`EventBatch`
        (``sample_names``: the names behind ``index["sample"]``, for expressions reading ``sample``).
        ``overlay`` (BuildEvents' background overlay) changes the batch once its collections are
        built, before any derived field is computed, so derived fields see the overlaid hits."""
        n = len(index["hash"])
        batch = EventBatch(index=index, sample_names=tuple(sample_names))
        arrays = {**{b: None for b in self.optional}, **arrays}
        for attr, branch in self.leaves.items():
            values = np.full(n, self.optional[branch]) if arrays[branch] is None else _flat(arrays[branch], branch)
            if values.ndim != 1 or len(values) != n:
                raise TemplateError(f"leaf {attr!r}: branch {branch!r} is not one value per event")
            batch.event[attr] = values
        for name in _parents_first(self.collections):
            batch.tables[name] = self._collection(name, arrays, batch, n)
        if overlay is not None:
            overlay(batch)
        for level, name, expr in self._derived:
            values = expr(Scope(batch, level))
            (batch.event if level == EVENT else batch.tables[level].fields)[name] = _compact(values)
        self.derive(batch)
        return batch

    def derive(self, batch: EventBatch) -> None:
        """Add vectorised derived fields to ``batch`` in place (override in subclasses)."""

    def _collection(self, name: str, arrays: Mapping[str, Any], batch: EventBatch, n: int) -> Table:
        coll = self.collections[name]
        if coll.members:
            return self._members(name, arrays, n)
        counts = None
        fields: dict[str, np.ndarray] = {}
        absent = {attr: branch for attr, branch in coll.branches.items() if arrays[branch] is None}
        for attr, branch in coll.branches.items():
            if attr in absent:
                continue
            c, content = _jagged(arrays[branch], branch, n)
            if counts is None:
                counts = c
            elif not np.array_equal(c, counts):
                raise TemplateError(f"collection {name!r}: branch {branch!r} has other counts than the collection's first branch")
            fields[attr] = content
        for attr, branch in absent.items():
            fields[attr] = np.full(int(counts.sum()), self.optional[branch])
        fields = {attr: fields[attr] for attr in coll.branches}
        if coll.four_vector:
            fields.update(derive_kinematics(coll.four_vector, fields, coll.added_kinematics()))
        if coll.parent == EVENT:
            return Table(counts=counts.astype(np.int64), fields=fields)
        parent = batch.tables[coll.parent]
        per_event = _items_per_event(batch, coll.parent)
        if coll.match_dr is not None:
            valid, global_parent = _nearest_parent(name, coll, fields, counts, parent)
        else:
            link_counts, link = _jagged(arrays[coll.link], coll.link, n)
            if counts is not None and not np.array_equal(link_counts, counts):
                raise TemplateError(f"collection {name!r}: link {coll.link!r} has other counts than its branches")
            event_of_item = np.repeat(np.arange(n), link_counts)
            link = link.astype(np.int64)
            valid = (link >= 0) & (link < per_event[event_of_item])
            global_parent = parent.offsets[:-1][event_of_item] + link
        keep = np.flatnonzero(valid)
        order = keep[np.argsort(global_parent[keep], kind="stable")]
        per_parent = np.bincount(global_parent[order], minlength=len(parent))
        return Table(
            counts=per_parent.astype(np.int64),
            fields={k: v[order] for k, v in fields.items()},
            parent=coll.parent,
        )

    def _members(self, name: str, arrays: Mapping[str, Any], n: int) -> Table:
        """A fixed-size collection interleaved from flat per-object branches."""
        coll = self.collections[name]
        fields = {}
        for attr in coll.members[0]:
            columns = [np.full(n, self.optional[m[attr]]) if arrays[m[attr]] is None else _flat(arrays[m[attr]], m[attr])
                       for m in coll.members]
            fields[attr] = np.stack(columns, axis=1).reshape(-1)
        if coll.four_vector:
            fields.update(derive_kinematics(coll.four_vector, fields, coll.added_kinematics()))
        return Table(counts=np.full(n, len(coll.members), dtype=np.int64), fields=fields)


def _nearest_parent(name: str, coll: Collection, fields: Mapping[str, np.ndarray], counts: np.ndarray,
                    parent: Table) -> tuple[np.ndarray, np.ndarray]:
    """For each item (``counts`` per event), whether a parent item of its event lies within
    ``coll.match_dr`` in delta R, and the nearest one's position in ``parent`` (ties: the first)."""
    for table, what in ((fields, f"collection {name!r}"), (parent.fields, f"its parent {coll.parent!r}")):
        missing = [k for k in ("eta", "phi") if k not in table]
        if missing:
            raise TemplateError(f"{what}: match_dr needs eta and phi attributes (missing {missing}); "
                                "declare them or a four_vector")
    counts = np.asarray(counts, dtype=np.int64)
    n_items = int(counts.sum())
    event_of_item = np.repeat(np.arange(len(counts)), counts)
    candidates = parent.counts[event_of_item]
    pair_item = np.repeat(np.arange(n_items), candidates)
    pair_parent = ragged_index(parent.offsets[:-1][event_of_item], candidates)
    deta = np.asarray(fields["eta"], np.float64)[pair_item] - np.asarray(parent.fields["eta"], np.float64)[pair_parent]
    dphi = wrap_phi(np.asarray(fields["phi"], np.float64)[pair_item] - np.asarray(parent.fields["phi"], np.float64)[pair_parent])
    dr = np.hypot(deta, dphi)
    order = np.lexsort((pair_parent, dr, pair_item))
    first = order[np.r_[0, np.flatnonzero(np.diff(pair_item[order])) + 1]] if len(order) else order
    valid = np.zeros(n_items, bool)
    nearest = np.zeros(n_items, np.int64)
    nearest[pair_item[first]] = pair_parent[first]
    valid[pair_item[first]] = dr[first] < coll.match_dr
    return valid, nearest


def _items_per_event(batch: EventBatch, parent: str) -> np.ndarray:
    """Items of ``parent`` per event (parent must hang directly off the event)."""
    table = batch.tables[parent]
    if table.parent != EVENT:
        raise TemplateError(f"link to {parent!r}: only one level of nesting below a collection is supported")
    return table.counts


def _parents_first(collections: Mapping[str, Collection]) -> list[str]:
    order: list[str] = []
    while len(order) < len(collections):
        before = len(order)
        for name, coll in collections.items():
            if name not in order and (coll.parent == EVENT or coll.parent in order):
                order.append(name)
        if len(order) == before:
            raise TemplateError(f"circular collection parents among {sorted(collections)}")
    return order


def _compact(values: np.ndarray) -> np.ndarray:
    """Keep derived floats in float32 and booleans as bool, for compact caches."""
    values = np.asarray(values)
    if values.dtype == np.float64:
        return values.astype(np.float32)
    return values


def _flat(values: Any, branch: str) -> np.ndarray:
    if isinstance(values, np.ndarray):
        return values
    try:
        return np.asarray(values.to_numpy() if hasattr(values, "to_numpy") else values)
    except Exception as err:
        raise TemplateError(f"branch {branch!r} is not a flat branch: {err}") from None


def _jagged(values: Any, branch: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Counts and flat content of a jagged branch (awkward list array)."""
    import awkward as ak

    layout = ak.to_layout(values)
    if not isinstance(layout, ak.contents.ListOffsetArray) or not isinstance(layout.content, ak.contents.NumpyArray):
        layout = ak.to_layout(ak.to_packed(values))
    if not isinstance(layout, ak.contents.ListOffsetArray) or layout.content.purelist_depth != 1:
        raise TemplateError(f"branch {branch!r} is not a list of numbers per event; declare flat branches as leaves")
    offsets = np.asarray(layout.offsets)
    content = np.asarray(layout.content.data)[offsets[0]:offsets[-1]]
    counts = np.diff(offsets)
    if len(counts) != n:
        raise TemplateError(f"branch {branch!r}: {len(counts)} lists for {n} events")
    return counts, content


def declared(spec: Mapping[str, Any]) -> EventTemplate:
    """Build an EventTemplate from its YAML declaration (leaves, collections, derived)."""
    collections = {
        name: Collection(
            branches=dict(c.get("branches") or {}),
            members=tuple(dict(m) for m in c["members"]) if c.get("members") else None,
            four_vector=c.get("four_vector"),
            kinematics=tuple(c["kinematics"]) if c.get("kinematics") is not None else None,
            parent=c.get("parent", EVENT),
            link=c.get("link"),
            match_dr=c.get("match_dr"),
        )
        for name, c in (spec.get("collections") or {}).items()
    }
    cls = type(
        "DeclaredEventTemplate",
        (EventTemplate,),
        {"leaves": dict(spec.get("leaves") or {}), "collections": collections, "derived": dict(spec.get("derived") or {}),
         "optional": dict(spec.get("optional") or {})},
    )
    return cls()
