"""The conditions store: the background generator's weight payloads, keyed by global tag, name and
revision, as basf2's conditions database keeps them, in a local directory.

Layout of a store at ``<root>``::

    <root>/index.json                         the index (below)
    <root>/<globaltag>/<name>/r0001.pt        revision 1 of payload <name> in <globaltag>
    <root>/<globaltag>/<name>/r0002.pt        ...

``index.json`` is ``{"layout": "tracerflow.conditions", "version": 1, "payloads": {globaltag:
{name: [{"revision", "file", "sha256", "size", "metadata"}, ...]}}}``, every revision of a payload
in ascending order, ``file`` relative to the root, written with sorted keys (``indent=1``, a trailing
newline). A payload file is a state dict (``str`` -> tensor) written by ``torch.save``; revisions
count from 1 per (global tag, name) and a revision, once written, is never rewritten.

Determinism: the same state dicts and metadata put in the same order give byte-identical stores.
``torch.save`` depends on its input alone once three things are fixed, which :meth:`ConditionsStore.put`
does: the archive name (torch names the zip archive after the file it writes to, for an atomic write
the temporary file; payloads are serialised into memory, where the archive is always named
``archive``, so a payload's bytes do not depend on its file name), the tensors' storages (a view would save its whole
storage and tensors sharing one storage save it once; every tensor is copied to its own contiguous
CPU storage) and the mapping (a plain ``dict`` and a module's ``OrderedDict`` pickle differently;
payloads are always an ``OrderedDict`` in the caller's key order, carrying the module versions of
``state_dict()._metadata`` when the caller's mapping has them). The zip entries carry a fixed
timestamp and the archive's serialization id is a checksum of its records. The bytes do depend on
the torch version (pinned by the project).

Reading verifies before it trusts: :meth:`ConditionsStore.get` checks the file's size and sha256
against the index before ``torch.load(weights_only=True, map_location="cpu")``; every refusal is a
:class:`PayloadError` naming the global tag, the payload name (and revision), the store and what is
wrong. :func:`load_into` loads a payload into a model strictly (every key, every shape) and leaves the
model untouched when they differ.

Contract with its neighbours: the generator models and their training (:mod:`tracerflow.background`)
put and get state dicts and record in the metadata what they need (the geometry,
:meth:`tracerflow.toy.pixels.PixelGeometry.as_dict`, the model's configuration); the tasks name a
store, a global tag and a payload and call in here. Listing a store (:meth:`ConditionsStore.globaltags`,
:meth:`ConditionsStore.revisions`) reads only the index and does not import torch. Nothing here
imports luigi.
"""
from __future__ import annotations

import fcntl
import functools
import hashlib
import io
import json
import os
import re
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tracerflow.io.atomic import write_atomic

if TYPE_CHECKING:  # torch is imported where a payload is written or read
    import torch

INDEX_LAYOUT = "tracerflow.conditions"
INDEX_VERSION = 1
INDEX_NAME = "index.json"
SHIPPED_PACKAGE = "tracerflow.background"
SHIPPED_DIR = "payloads"

NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*")
"""A global tag or payload name: letters, digits, ``_ . + -``, not starting with ``.``, ``+`` or ``-``
(it becomes a directory name) and without ``..``."""
SHA256 = re.compile(r"[0-9a-f]{64}")
SHOWN_KEYS = 5
"""How many offending keys of each kind :func:`load_into` names."""


class PayloadError(Exception):
    """A payload that cannot be given: unknown, missing, corrupted, not loadable or not fitting a model;
    or a store index that cannot be read. The message names the global tag, the payload, the store
    and what is wrong."""


@dataclass(frozen=True)
class Payload:
    """One revision of a payload as read from a store: its state dict on the CPU and its metadata."""

    globaltag: str
    name: str
    revision: int
    state_dict: "OrderedDict[str, torch.Tensor]"
    metadata: dict[str, Any]
    path: Path
    sha256: str

    def describe(self) -> str:
        """``payload 'name' (global tag 'tag', revision 3) at <path>``, how errors name it."""
        return f"payload {self.name!r} (global tag {self.globaltag!r}, revision {self.revision}) at {self.path}"


def payload_file(globaltag: str, name: str, revision: int) -> str:
    """Where revision ``revision`` of ``name`` in ``globaltag`` lies, relative to a store's root."""
    return f"{globaltag}/{name}/r{revision:04d}.pt"


def check_name(value: Any, what: str) -> str:
    """``value`` if it is a valid global tag or payload name (``what`` says which), else ValueError."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"a conditions {what} must be a non-empty string, got {value!r}")
    if "/" in value or "\\" in value or ".." in value or not NAME.fullmatch(value):
        raise ValueError(f"invalid conditions {what} {value!r}: use letters, digits and '_', '.', '+', '-' "
                         "(not first), without '/' or '..' (it names a directory of the store)")
    return value


class ConditionsStore:
    """A directory of payloads keyed by global tag, name and revision (see the module's docstring).

    A store that does not exist yet is empty; the first :meth:`put` creates it. ``read_only`` refuses
    :meth:`put` (the store shipped inside the package, :func:`shipped_store`)."""

    def __init__(self, root: str | os.PathLike, *, read_only: bool = False) -> None:
        self.root = Path(root)
        self.read_only = read_only

    def __repr__(self) -> str:
        return f"ConditionsStore({str(self.root)!r}{', read_only=True' if self.read_only else ''})"

    @property
    def index_path(self) -> Path:
        return self.root / INDEX_NAME

    # -- reading ---------------------------------------------------------------------------------

    def globaltags(self) -> list[str]:
        """The store's global tags, sorted."""
        return sorted(self._index()["payloads"])

    def names(self, globaltag: str) -> list[str]:
        """The payload names in ``globaltag``, sorted (PayloadError for an unknown global tag)."""
        return sorted(self._tag(self._index(), globaltag, None))

    def revisions(self, globaltag: str, name: str) -> list[int]:
        """The revisions of ``name`` in ``globaltag``, ascending (PayloadError for an unknown tag or name)."""
        return [entry["revision"] for entry in self._entries(self._index(), globaltag, name)]

    def entry(self, globaltag: str, name: str, revision: int | None = None) -> dict[str, Any]:
        """The index's record of a revision (the newest when None): revision, file, size, sha256,
        metadata; nothing is loaded or checked (PayloadError when the index has none)."""
        entries = self._entries(self._index(), globaltag, name)
        found = entries[-1:] if revision is None else [e for e in entries if e["revision"] == revision]
        if not found:
            raise PayloadError(f"{self._where(globaltag, name, revision)}: no such revision "
                               f"(revisions: {', '.join(str(e['revision']) for e in entries)})")
        return dict(found[0])

    def get(self, globaltag: str, name: str, revision: int | None = None) -> Payload:
        """Revision ``revision`` of payload ``name`` in ``globaltag``, the newest when None; its size and
        sha256 are checked against the index before it is loaded (weights only, onto the CPU)."""
        entries = self._entries(self._index(), globaltag, name)
        if revision is None:
            entry = entries[-1]
        else:
            found = [e for e in entries if e["revision"] == revision]
            if not found:
                known = ", ".join(str(e["revision"]) for e in entries)
                raise PayloadError(f"{self._where(globaltag, name, revision)}: no such revision "
                                   f"(revisions: {known})")
            entry = found[0]
        revision = entry["revision"]
        where = self._where(globaltag, name, revision)
        path = self.root / entry["file"]
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise PayloadError(f"{where}: its file {path} is missing") from None
        except OSError as exc:
            raise PayloadError(f"{where}: its file {path} cannot be read ({exc})") from None
        if len(data) != entry["size"]:
            raise PayloadError(f"{where}: its file {path} has {len(data)} bytes where the index records "
                               f"{entry['size']}: corrupted or replaced")
        found_sha = hashlib.sha256(data).hexdigest()
        if found_sha != entry["sha256"]:
            raise PayloadError(f"{where}: checksum mismatch for its file {path}: the index expects sha256 "
                               f"{entry['sha256']}, the file has {found_sha}: corrupted or replaced")
        import torch

        try:
            state = torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
        except Exception as exc:  # noqa: BLE001 - whatever torch raises, the payload is refused by name
            raise PayloadError(f"{where}: its file {path} does not load with torch.load(weights_only=True): "
                               f"{type(exc).__name__}: {_one_line(str(exc))}") from exc
        if not isinstance(state, Mapping) or not all(
                isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
            raise PayloadError(f"{where}: its file {path} holds a {type(state).__name__}, not a state dict "
                               "of named tensors")
        return Payload(globaltag=globaltag, name=name, revision=revision, state_dict=state,
                       metadata=entry["metadata"], path=path, sha256=found_sha)

    # -- writing ---------------------------------------------------------------------------------

    def put(self, globaltag: str, name: str, state_dict: Mapping[str, "torch.Tensor"],
            metadata: Mapping[str, Any] | None = None) -> int:
        """Add ``state_dict`` with ``metadata`` (JSON: it is kept in the index) as the next revision of
        ``name`` in ``globaltag``; returns that revision. The payload file, then the index, are written
        atomically; writers of one store take turns (an exclusive lock on its directory)."""
        check_name(globaltag, "global tag")
        check_name(name, "payload name")
        if self.read_only:
            raise PermissionError(f"{self._where(globaltag, name, None)}: this store is read-only "
                                  "(open ConditionsStore(root) to add payloads to it)")
        data = serialise(state_dict, f"payload {name!r} for global tag {globaltag!r}")
        metadata = _json_metadata(metadata, f"payload {name!r} for global tag {globaltag!r}")
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            index = self._index()
            entries = index["payloads"].setdefault(globaltag, {}).setdefault(name, [])
            revision = entries[-1]["revision"] + 1 if entries else 1
            file = payload_file(globaltag, name, revision)
            write_atomic(self.root / file, data)
            entries.append({"revision": revision, "file": file, "sha256": hashlib.sha256(data).hexdigest(),
                            "size": len(data), "metadata": metadata})
            write_atomic(self.index_path, index_text(index["payloads"]))
        finally:
            os.close(fd)  # releases the lock
        return revision

    # -- the index -------------------------------------------------------------------------------

    def _index(self) -> dict[str, Any]:
        """The index, checked; an empty one for a store without an index file."""
        path = self.index_path
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {"layout": INDEX_LAYOUT, "version": INDEX_VERSION, "payloads": {}}
        except (OSError, UnicodeDecodeError) as exc:
            raise PayloadError(f"conditions store index {path} cannot be read: {exc}") from None
        try:
            index = json.loads(text)
        except json.JSONDecodeError as exc:
            raise PayloadError(f"conditions store index {path} is not valid JSON: {exc}") from None
        if not isinstance(index, dict) or (index.get("layout"), index.get("version")) != (INDEX_LAYOUT, INDEX_VERSION):
            found = (f"layout {index.get('layout')!r} version {index.get('version')!r}" if isinstance(index, dict)
                     else f"a JSON {type(index).__name__}")
            raise PayloadError(f"conditions store index {path} has {found}; this tracerflow reads layout "
                               f"{INDEX_LAYOUT!r} version {INDEX_VERSION}")
        _check_payloads(index.get("payloads"), path)
        return index

    def _where(self, globaltag: str, name: str, revision: int | None) -> str:
        rev = "" if revision is None else f", revision {revision}"
        return f"payload {name!r} (global tag {globaltag!r}{rev}) in conditions store {self.root}"

    def _tag(self, index: dict[str, Any], globaltag: str, name: str | None) -> dict[str, list]:
        tags = index["payloads"]
        if globaltag not in tags:
            where = (f"global tag {globaltag!r} in conditions store {self.root}" if name is None
                     else self._where(globaltag, name, None))
            if tags:
                known = f"global tags: {', '.join(sorted(tags))}"
            elif self.index_path.exists():
                known = "the store has no global tags"
            else:
                known = f"the store has no index {self.index_path}"
            raise PayloadError(f"{where}: no such global tag ({known})")
        return tags[globaltag]

    def _entries(self, index: dict[str, Any], globaltag: str, name: str) -> list[dict[str, Any]]:
        names = self._tag(index, globaltag, name)
        if name not in names:
            raise PayloadError(f"{self._where(globaltag, name, None)}: no payload of that name in the global tag "
                               f"(its payloads: {', '.join(sorted(names))})")
        return names[name]


def index_text(payloads: Mapping[str, Any]) -> str:
    """The index file's text for ``payloads`` (``{globaltag: {name: [entry, ...]}}``): sorted keys,
    ``indent=1``, a trailing newline."""
    index = {"layout": INDEX_LAYOUT, "version": INDEX_VERSION, "payloads": payloads}
    return json.dumps(index, sort_keys=True, indent=1, allow_nan=False) + "\n"


def _check_payloads(payloads: Any, path: Path) -> None:
    """PayloadError naming the index ``path`` and the place unless ``payloads`` has the index's shape;
    entries are left in ascending revision order."""
    def bad(where: str, what: str) -> PayloadError:
        return PayloadError(f"conditions store index {path}: {where} {what}")

    if not isinstance(payloads, dict):
        raise bad("'payloads'", "is not an object")
    for tag, names in payloads.items():
        _index_name(tag, "global tag", path)
        if not isinstance(names, dict):
            raise bad(f"payloads[{tag!r}]", "is not an object")
        for name, entries in names.items():
            _index_name(name, "payload name", path)
            at = f"payloads[{tag!r}][{name!r}]"
            if not isinstance(entries, list) or not entries:
                raise bad(at, "is not a non-empty list of revisions")
            for i, entry in enumerate(entries):
                here = f"{at}[{i}]"
                if not isinstance(entry, dict):
                    raise bad(here, "is not an object")
                missing = sorted({"revision", "file", "sha256", "size", "metadata"} - set(entry))
                if missing:
                    raise bad(here, f"lacks {', '.join(missing)}")
                revision = entry["revision"]
                if type(revision) is not int or revision < 1:
                    raise bad(f"{here}['revision']", f"is {revision!r}, not a positive integer")
                if entry["file"] != payload_file(tag, name, revision):
                    raise bad(f"{here}['file']", f"is {entry['file']!r}, expected "
                                                 f"{payload_file(tag, name, revision)!r}")
                if not isinstance(entry["sha256"], str) or not SHA256.fullmatch(entry["sha256"]):
                    raise bad(f"{here}['sha256']", f"is {entry['sha256']!r}, not 64 lowercase hex digits")
                if type(entry["size"]) is not int or entry["size"] < 0:
                    raise bad(f"{here}['size']", f"is {entry['size']!r}, not a byte count")
                if not isinstance(entry["metadata"], dict):
                    raise bad(f"{here}['metadata']", "is not an object")
            entries.sort(key=lambda e: e["revision"])
            revisions = [e["revision"] for e in entries]
            if len(set(revisions)) != len(revisions):
                raise bad(at, f"repeats a revision ({revisions})")


def _index_name(value: Any, what: str, path: Path) -> None:
    try:
        check_name(value, what)
    except ValueError as exc:
        raise PayloadError(f"conditions store index {path}: {exc}") from None


def serialise(state_dict: Mapping[str, "torch.Tensor"], what: str) -> bytes:
    """The bytes of ``torch.save`` for ``state_dict``, depending on its keys, tensors and module
    versions alone (see the module's docstring); ValueError naming ``what`` and the key for anything
    that is not a mapping of names to tensors."""
    import torch

    if not isinstance(state_dict, Mapping):
        raise ValueError(f"{what}: a state dict maps names to tensors, got a {type(state_dict).__name__}")
    canonical: OrderedDict[str, torch.Tensor] = OrderedDict()
    for key, value in state_dict.items():
        if not isinstance(key, str):
            raise ValueError(f"{what}: state dict key {key!r} is not a string")
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"{what}: state dict entry {key!r} is a {type(value).__name__}, not a tensor")
        canonical[key] = value.detach().to("cpu").clone(memory_format=torch.contiguous_format)
    versions = getattr(state_dict, "_metadata", None)
    if versions is not None:
        canonical._metadata = {prefix: dict(meta) for prefix, meta in versions.items()}  # type: ignore[attr-defined]
    buffer = io.BytesIO()  # in memory: torch names an archive written to a path after the path
    torch.save(canonical, buffer)
    return buffer.getvalue()


def _json_metadata(metadata: Mapping[str, Any] | None, what: str) -> dict[str, Any]:
    """``metadata`` as the index will give it back (JSON); ValueError naming ``what`` otherwise."""
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise ValueError(f"{what}: metadata must be a mapping, got a {type(metadata).__name__}")
    try:
        return json.loads(json.dumps(dict(metadata), sort_keys=True, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what}: metadata is not JSON ({exc})") from None


def _one_line(text: str) -> str:
    return " ".join(text.split())


def load_into(model: "torch.nn.Module", payload: Payload) -> "torch.nn.Module":
    """Load ``payload`` into ``model`` strictly and return the model: the state dict must have exactly
    the model's keys with the model's shapes, else a PayloadError naming the payload and the first
    offending keys, with the model left as it was."""
    expected = model.state_dict()
    given = payload.state_dict
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    shapes = [f"{k} (payload {list(given[k].shape)}, model {list(expected[k].shape)})"
              for k in expected if k in given and given[k].shape != expected[k].shape]
    problems = []
    for label, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes)):
        if keys:
            more = f" (and {len(keys) - SHOWN_KEYS} more)" if len(keys) > SHOWN_KEYS else ""
            problems.append(f"{label}: {', '.join(keys[:SHOWN_KEYS])}{more}")
    if problems:
        raise PayloadError(f"{payload.describe()} does not fit {type(model).__name__}: {'; '.join(problems)}")
    try:
        model.load_state_dict(given, strict=True)
    except RuntimeError as exc:  # a module's own checks (its _load_from_state_dict)
        raise PayloadError(f"{payload.describe()} does not load into {type(model).__name__}: "
                           f"{_one_line(str(exc))}") from exc
    return model


def shipped_store() -> ConditionsStore:
    """The store shipped inside the package (``tracerflow/background/payloads``), read-only."""
    root = resources.files(SHIPPED_PACKAGE) / SHIPPED_DIR
    if not isinstance(root, Path):
        raise PayloadError(f"the conditions store shipped with {SHIPPED_PACKAGE} is not on the file system "
                           f"({root!r}); install tracerflow as files, not as a zip")
    if not (root / INDEX_NAME).is_file():
        raise PayloadError(f"the conditions store shipped with {SHIPPED_PACKAGE} has no index {root / INDEX_NAME}: "
                           "the installation is incomplete")
    return ConditionsStore(root, read_only=True)


@functools.lru_cache(maxsize=64)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def checkpoint_sha256(path: str | os.PathLike) -> str:
    """The sha256 of a checkpoint file's bytes (kept per file version: path, size, mtime), for
    digests of what a checkpoint makes; PayloadError naming the file when it cannot be read."""
    try:
        stat = os.stat(path)
        return _file_sha256(str(Path(path).absolute()), stat.st_size, stat.st_mtime_ns)
    except OSError as exc:
        raise PayloadError(f"background checkpoint {path}: cannot be read ({exc.strerror or exc})") from None
