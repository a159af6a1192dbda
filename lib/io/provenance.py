"""Provenance records: what each target digest was computed from, so a stale target can say why.

A task's digest (:meth:`tracerflow.config.Config.digest`) is the hash of a JSON payload: the
config slices the task reads (by dotted key, performance-only keys left out), the digests of the
targets it reads (``__upstream__``) and task-specific parts (``__extra__``: the sample's merged
event block, an input file's identity, ...). Targets store only the digest. This module keeps the
payload beside them:

``<output_root>/.provenance/<digest>.json``: the payload's canonical JSON, exactly the text that
was hashed. The name is the content's digest, so a record never changes once written, parallel
writers (one per task) never conflict, and records of every config a directory has seen coexist.
Tasks write their record when they start (``tasks/base.py``); ``tracerflow show`` reads the
record of a target's stored digest and compares it with today's payload (:func:`differences`).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable

DIRECTORY = ".provenance"
UPSTREAM = "__upstream__"
EXTRA = "__extra__"
MAX_SHOWN = 4


def canonical(payload: dict) -> str:
    """The text a digest is computed from."""
    return json.dumps(payload, sort_keys=True, default=str)


def record_path(output_root: str | os.PathLike, digest: str) -> Path:
    return Path(output_root) / DIRECTORY / f"{digest}.json"


def write_record(output_root: str | os.PathLike, digest: str, text: str) -> None:
    """Keep ``text`` (the canonical payload of ``digest``) unless it is already kept; atomic."""
    path = record_path(output_root, digest)
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text + "\n")
    os.replace(tmp, path)


def read_record(output_root: str | os.PathLike, digest: str) -> dict | None:
    """The payload recorded for ``digest``, or None when none (or an unreadable one) is kept."""
    try:
        return json.loads(record_path(output_root, digest).read_text())
    except (OSError, ValueError):
        return None


def differences(old: dict, new: dict) -> list[str]:
    """What differs between two payloads, one line per changed value: ``key: old -> new``.

    Config slices are named by their dotted key; an input file's identity (an ``input`` part
    of ``__extra__``) as ``input file <name> changed (...)``; upstream digests are left to
    :func:`changed_upstream`, which knows the upstream tasks.
    """
    old_extra, new_extra = old.get(EXTRA), new.get(EXTRA)
    lines: list[str] = []
    if isinstance(old_extra, dict) and isinstance(new_extra, dict) and "input" in (old_extra.keys() | new_extra.keys()):
        before, after = old_extra.get("input"), new_extra.get("input")
        if before != after:
            name = new_extra.get("file", old_extra.get("file", ""))
            parts = [f"{k} {_short(before.get(k) if before else None)} -> {_short(after.get(k) if after else None)}"
                     for k in sorted((before or {}).keys() | (after or {}).keys())
                     if (before or {}).get(k) != (after or {}).get(k)]
            lines.append(f"input file {name} changed ({', '.join(parts)})")
        old_extra = {k: v for k, v in old_extra.items() if k != "input"}
        new_extra = {k: v for k, v in new_extra.items() if k != "input"}
    old_flat = _flatten({k: v for k, v in old.items() if k not in (UPSTREAM, EXTRA)})
    new_flat = _flatten({k: v for k, v in new.items() if k not in (UPSTREAM, EXTRA)})
    old_flat.update(_flatten(old_extra, "" if isinstance(old_extra, dict) else "setting"))
    new_flat.update(_flatten(new_extra, "" if isinstance(new_extra, dict) else "setting"))
    for key in sorted(old_flat.keys() | new_flat.keys()):
        before, after = old_flat.get(key, _ABSENT), new_flat.get(key, _ABSENT)
        if before != after:
            lines.append(f"{key}: {_short(before)} -> {_short(after)}")
    return lines


def changed_upstream(old: dict, upstream: Iterable[tuple[str, str]]) -> list[str]:
    """Of ``upstream`` ((label, today's digest) pairs), those whose digest the record ``old`` does
    not hold: the upstream targets that changed since the target was made."""
    before = set(old.get(UPSTREAM) or ())
    return [label for label, digest in upstream if digest not in before]


def summary(lines: list[str]) -> str:
    """At most :data:`MAX_SHOWN` reasons on one line."""
    shown = "; ".join(lines[:MAX_SHOWN])
    return shown + (f"; and {len(lines) - MAX_SHOWN} more" if len(lines) > MAX_SHOWN else "")


class _Absent:
    def __repr__(self) -> str:
        return "(unset)"


_ABSENT = _Absent()


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Leaves of nested dicts by dotted path; lists stay whole (shown as one value)."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        if not value and prefix:
            out[prefix] = value
        return out
    return {prefix: value} if prefix else {}


def _short(value: Any, width: int = 60) -> str:
    text = repr(value) if isinstance(value, _Absent) else json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= width else text[: width - 3] + "..."
