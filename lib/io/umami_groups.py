"""Group names of the umami train file: umami's ``jets`` and ``tracks``, or the analysis's own.

A train file may call its groups otherwise (``write.groups``: event-level rows as ``events`` with
their jets as the set, say); its root attribute ``groups`` (JSON) maps umami's names to the file's.
Every reader asks for datasets by umami's names (``jets/inputs``) and finds them through
:func:`path_in`; files without the attribute use umami's names. This module is the one home of that
mapping, light enough for training's reader processes (no write engine behind it).
"""
from __future__ import annotations

import json
from typing import Any, Mapping

GROUPS = ("jets", "tracks")
ATTRIBUTE = "groups"


def group_names(groups: Mapping[str, str] | None) -> dict[str, str]:
    """umami's group names mapped to a file's (umami's own by default); ValueError names what is wrong."""
    names = {g: g for g in GROUPS} | dict(groups or {})
    unknown = sorted(set(names) - set(GROUPS))
    if unknown:
        raise ValueError(f"groups: {unknown[0]!r} is not one of umami's groups {GROUPS}")
    if len(set(names.values())) != len(names):
        raise ValueError(f"groups: two groups share a name ({names})")
    bad = [n for n in names.values() if not n.isidentifier() or n == "scale_dict"]
    if bad:
        raise ValueError(f"groups: {bad[0]!r} is not a plain group name")
    return names


def groups_of(attrs: Mapping[str, Any]) -> dict[str, str]:
    """The mapping stored in a file's root attributes (empty: umami's names)."""
    return dict(json.loads(attrs[ATTRIBUTE])) if ATTRIBUTE in attrs else {}


def path_in(groups: Mapping[str, str], name: str) -> str:
    """Where the dataset umami calls ``name`` lives in a file with ``groups``."""
    group, sep, rest = name.partition("/")
    return f"{groups.get(group, group)}{sep}{rest}"


def name_in(groups: Mapping[str, str], path: str) -> str:
    """umami's name of the dataset at ``path`` in a file with ``groups``."""
    group, sep, rest = path.partition("/")
    umami = {name: g for g, name in groups.items()}
    return f"{umami.get(group, group)}{sep}{rest}"
