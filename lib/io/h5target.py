"""Atomic, self-describing HDF5 targets.

Every file a stage writes goes to a temporary name beside its final path, grows chunk by
chunk through :class:`H5Writer`, receives ``complete = True`` last and is renamed into place,
so a crash never leaves a file that looks finished. Root attributes name the schema, its
version, the library version, the digest of the config slice it was made from and the task.
"""
from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import h5py
import numpy as np

from tracerflow import __version__
from tracerflow.io import status_index
from tracerflow.io.faults import OutputError, fault_of, output_error

COMPRESSIONS = (None, "lzf", "gzip")
_CHUNK_ROWS = 32768
_RAW_MIN_CHUNK_BYTES = 16 * 1024
_RAW_MAX_CHUNK_BYTES = 8 * 1024 * 1024
GZIP_LEVEL = 1


class SchemaMismatch(RuntimeError):
    """Raised when a file's schema or version is not the one a reader expects."""


@dataclass(frozen=True)
class TargetStatus:
    """Whether a target file exists, is complete and was made from the current config."""

    exists: bool
    complete: bool
    digest_matches: bool
    reason: str

    @property
    def ok(self) -> bool:
        return self.exists and self.complete and self.digest_matches


class H5Writer:
    """Write one HDF5 target atomically, appending datasets chunk by chunk.

    Use as a context manager; leaving the block with an exception removes the temporary
    file and leaves any earlier file at ``path`` untouched. ``compression`` applies to
    integer-valued datasets, and to real-valued floats only with ``compress_floats``.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        schema: str,
        schema_version: int,
        config_digest: str,
        created_by: str,
        compression: str | None = None,
        attrs: Mapping[str, Any] | None = None,
        compress_floats: bool = False,
    ) -> None:
        if compression not in COMPRESSIONS:
            raise ValueError(f"compression must be one of {COMPRESSIONS}, got {compression!r}")
        self.path = Path(path)
        self.tmp_path = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        self.compression = compression
        self.compress_floats = compress_floats
        self._root_attrs = {
            "schema": schema,
            "schema_version": int(schema_version),
            "tracerflow_version": __version__,
            "config_digest": config_digest,
            "created_by": created_by,
            **dict(attrs or {}),
        }
        self.file: h5py.File | None = None
        self._disk: _Disk | None = None

    def __enter__(self) -> "H5Writer":
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._disk = _Disk(self.tmp_path)
            self.file = _create_without_times(self._disk)
        except BaseException as err:
            self._remove_tmp()
            if isinstance(err, OSError):
                raise output_error(err, self.path) or err
            raise
        try:
            for key, value in self._root_attrs.items():
                self.file.attrs[key] = _attr_value(value)
            self.file.attrs["complete"] = False
            self.check()
        except BaseException as err:
            self.__exit__(type(err), err, err.__traceback__)
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        """Rename the finished file into place; after an error, or when a write failed, remove it
        and raise a file-system fault (disk full, ...) as an :class:`OutputError` naming ``path``."""
        assert self.file is not None and self._disk is not None
        file, self.file = self.file, None
        error = exc if isinstance(exc, Exception) else None
        try:
            if exc_type is None:
                file.attrs["complete"] = True
            file.close()  # no write of it fails (see _Disk), so neither does the close
        except Exception as err:
            _hold_open(file)
            error = error or err
        try:
            if exc_type is None and error is None:
                self.check()
                self._disk.close()
                os.replace(self.tmp_path, self.path)
                _remember_published(self.path, {**{key: _attr_value(self._root_attrs.get(key)) for key in STATUS_ATTRS},
                                                 "complete": True})
                return
        except Exception as err:
            error = err
        refused = self._disk.refused
        self._remove_tmp()
        if error is None:
            return  # KeyboardInterrupt and the like go on as they are
        fault = output_error(error, self.path) or (output_error(refused, self.path) if refused else None)
        if isinstance(fault, OutputError) and fault is not fault_of(error):
            raise fault from error
        if error is not exc:
            raise error

    def _remove_tmp(self) -> None:
        if self._disk is not None:
            self._disk.close()
        try:
            self.tmp_path.unlink(missing_ok=True)
        except OSError:  # its directory is gone or not one: there is no file to remove
            pass

    def check(self) -> None:
        """Raise, naming ``path``, the first write the disk refused (disk full, I/O error): HDF5 is
        never told of it (see :class:`_Disk`), so writers ask after each batch of rows."""
        if self._disk is not None and self._disk.refused is not None:
            raise output_error(self._disk.refused, self.path) or self._disk.refused

    def append(self, name: str, data: np.ndarray) -> None:
        """Append rows to dataset ``name``, creating it resizable on first use."""
        assert self.file is not None, "H5Writer used outside its context"
        data = np.asarray(data)
        if name not in self.file:
            self._parents(name)
            tail = data.shape[1:]
            compression = self.compression if self.compress_floats or _integral(data) else None
            self.file.create_dataset(
                name,
                data=data,
                maxshape=(None,) + tuple(d if d else None for d in tail),
                chunks=(_chunk_rows(data, compression),) + tuple(max(d, 1) for d in tail),
                compression=compression,
                compression_opts=GZIP_LEVEL if compression == "gzip" else None,
                shuffle=compression is not None and data.dtype.itemsize > 1,
                track_times=False,
            )
            return
        dset = self.file[name]
        if dset.shape[1:] != data.shape[1:]:
            raise ValueError(f"{name}: appending shape {data.shape} to {dset.shape}")
        start = dset.shape[0]
        dset.resize(start + len(data), axis=0)
        dset[start:] = data
        self.check()

    def _parents(self, name: str) -> None:
        """Create the groups above ``name`` without timestamps (h5py's implicit ones carry them)."""
        parts = name.strip("/").split("/")[:-1]
        for depth in range(1, len(parts) + 1):
            group = "/".join(parts[:depth])
            if group not in self.file:
                h5py.h5g.create(self.file.id, group.encode(), gcpl=_untimed(h5py.h5p.GROUP_CREATE))

    def group(self, name: str) -> None:
        """Create the group ``name`` (and those above it) if missing, without timestamps."""
        assert self.file is not None
        self._parents(f"{name.strip('/')}/-")

    def ensure(self, name: str, dtype: np.dtype, shape_tail: tuple[int, ...] = ()) -> None:
        """Create ``name`` empty if no chunk has added rows to it (empty input, empty selection)."""
        assert self.file is not None
        if name not in self.file:
            self.append(name, np.zeros((0,) + tuple(shape_tail), dtype=dtype))

    def set_attrs(self, name: str, **attrs: Any) -> None:
        """Set attributes on a group or dataset (``/`` for the root)."""
        assert self.file is not None
        obj = self.file[name] if name != "/" else self.file
        for key, value in attrs.items():
            obj.attrs[key] = _attr_value(value)

    def write(self, name: str, data: np.ndarray) -> None:
        """Write a whole dataset at once (small tables such as a cutflow)."""
        assert self.file is not None
        self._parents(name)
        self.file.create_dataset(name, data=np.asarray(data), track_times=False)


class _Disk(io.FileIO):
    """The file on disk that HDF5 writes a target through (h5py's ``fileobj`` driver); no write to
    it ever fails.

    libhdf5 does not survive a write that fails while it closes a dataset, which any dropped
    dataset handle does (it flushes the dataset's cached chunks): the dataset is freed but its
    id kept, and releasing that id again (Python dropping another handle, or HDF5 itself at exit)
    reads freed memory and crashes the process. So a write the disk refuses (full, I/O error)
    is kept in memory instead, where later reads find it, and HDF5 carries on unaware; the first
    refusal is :attr:`refused`, which :meth:`H5Writer.check` raises at the writer's next step.
    Such a file is never renamed into place.
    """

    def __init__(self, path: Path) -> None:
        super().__init__(path, "w+")
        self.refused: OSError | None = None
        self._kept: list[tuple[int, bytes]] = []  # (position, bytes) of refused writes, in order

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        size = len(view)
        position = self.tell()
        if self.refused is None:
            try:
                while view:
                    done = super().write(view)
                    view, position = view[done:], position + done
                return size
            except OSError as err:
                self.refused = err
        self._kept.append((position, bytes(view)))
        self.seek(position + len(view))
        return size

    def readinto(self, buffer: Any) -> int:
        """Fill ``buffer`` from here with the bytes as HDF5 last wrote them; zeros past the end of
        the file, as HDF5's own driver reads them."""
        view = memoryview(buffer).cast("B")
        position, size = self.tell(), len(view)
        done = 0
        while done < size:
            got = super().readinto(view[done:])
            if not got:
                view[done:] = bytes(size - done)
                break
            done += got
        for start, kept in self._kept:
            lo, hi = max(start, position), min(start + len(kept), position + size)
            if lo < hi:
                view[lo - position:hi - position] = kept[lo - start:hi - start]
        self.seek(position + size)
        return size

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            return super().read(size)
        data = bytearray(size)
        self.readinto(data)
        return bytes(data)

    def truncate(self, size: int | None = None) -> int:
        if self.refused is None:
            try:
                return super().truncate(size)
            except OSError as err:
                self.refused = err
        return self.tell() if size is None else size


#: The open objects of files whose closing failed (see :func:`_hold_open`).
_UNCLOSABLE: list[list[Any]] = []


def _hold_open(file: h5py.File) -> None:
    """Keep a reference to every open object of a file whose closing failed, one never given back,
    so that dropping the Python objects over them closes nothing twice (HDF5 frees an object whose
    close failed but keeps its id; the ids go once, when HDF5 shuts down at exit)."""
    try:
        held = h5py.h5f.get_obj_ids(file.id, h5py.h5f.OBJ_ALL)  # each takes a reference of its own
    except Exception:
        return
    for object_id in held:
        object_id.locked = True  # a locked id is not released when its Python object goes
    _UNCLOSABLE.append(held)


def _untimed(kind: h5py.h5p.PropClassID) -> h5py.h5p.PropID:
    """A creation property list whose objects carry no modification times."""
    plist = h5py.h5p.create(kind)
    plist.set_obj_track_times(False)
    return plist


def _create_without_times(disk: _Disk) -> h5py.File:
    """An HDF5 file (latest format) written through ``disk``, with an untimed root group: equal
    inputs, equal bytes."""
    fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    fapl.set_libver_bounds(h5py.h5f.LIBVER_LATEST, h5py.h5f.LIBVER_LATEST)
    fapl.set_fileobj_driver(h5py.h5fd.fileobj_driver, disk)
    fid = h5py.h5f.create(repr(disk).encode("ascii", "replace"), h5py.h5f.ACC_TRUNC,
                          fcpl=_untimed(h5py.h5p.FILE_CREATE), fapl=fapl)
    return h5py.File(fid)


def _chunk_rows(data: np.ndarray, compression: str | None) -> int:
    """Rows per HDF5 chunk: 32768 when compressed; for raw data, the first append's rows.

    HDF5 stores the last, partly filled chunk whole; compression shrinks its empty tail to
    nothing, raw storage does not. Raw chunks as long as the first append (a whole file when
    it is one chunk, the usual case) waste nothing there and cost one write per dataset; they
    stay between 16 KiB and 8 MiB so that small first appends and huge chunks stay efficient.
    """
    if compression is not None:
        return _CHUNK_ROWS
    row_bytes = max(1, data.dtype.itemsize * int(np.prod(data.shape[1:], dtype=np.int64)))
    return int(min(max(len(data), _RAW_MIN_CHUNK_BYTES // row_bytes, 1), max(1, _RAW_MAX_CHUNK_BYTES // row_bytes)))


def _integral(data: np.ndarray) -> bool:
    """Whether a new dataset holds integer values (ints, bools, or floats that are whole numbers).

    Only those are worth compressing: lzf shrinks measured real-valued float columns by 4-14%
    and gzip by 12-18% at 2-10x the write time, but labels, counts and indices by 4-10x.
    """
    if data.dtype.kind != "f":
        return True
    return bool(np.all(np.isfinite(data))) and bool(np.array_equal(data, np.trunc(data)))


class SchemaFile:
    """A complete target of one schema, open for reading; use as a context manager.

    Readers of each layout subclass it with their ``SCHEMA`` and ``SCHEMA_VERSION``.
    """

    SCHEMA = ""
    SCHEMA_VERSION = 0

    def __init__(self, path: str | os.PathLike, **h5_options: Any) -> None:
        self.path = Path(path)
        self._file = h5py.File(self.path, "r", **h5_options)
        try:
            check_schema(self._file, self.SCHEMA, self.SCHEMA_VERSION)
        except SchemaMismatch:
            self._file.close()
            raise

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._file.close()

    @property
    def attrs(self) -> h5py.AttributeManager:
        return self._file.attrs


def _attr_value(value: Any) -> Any:
    """Store lists and dicts as JSON text so plain h5py users can read every attribute."""
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value)
    if value is None:
        return "null"
    return value


def read_root_attrs(path: str | os.PathLike) -> dict[str, Any]:
    """Return the root attributes of an HDF5 file as plain Python values."""
    with h5py.File(path, "r") as f:
        return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in f.attrs.items()}


STATUS_ATTRS = ("schema", "schema_version", "complete", "config_digest")


def _published_attrs(path: Path) -> dict[str, Any]:
    """The root attributes that say whether a target is done (:data:`STATUS_ATTRS`), read once per
    version of the file: targets are written under a temporary name and renamed into place, so a
    file of the same inode, size, modification and change time holds the same attributes (a
    scheduler asks several times per task, and :mod:`tracerflow.io.status_index` keeps them
    between runs). Only these few are read: reading all of an events file's attributes takes
    2.1 ms against 0.8 ms."""
    return _attrs_of_version(str(path), *status_index.version_of(path.stat()))


def _remember_published(path: Path, attrs: dict[str, Any]) -> None:
    """Keep the status attributes of a target this process has just renamed into place, so that
    the checks after it (the next stage's, the wrapper's, the next run's) need not open it again."""
    try:
        version = status_index.version_of(path.stat())
    except OSError:
        return
    status_index.remember(path, version, attrs)


def _attrs_of_version(path: str, *version: int) -> dict[str, Any]:
    """Kept by :mod:`tracerflow.io.status_index` (in this process, and between runs)."""
    known = status_index.lookup(path, version)  # type: ignore[arg-type]
    if known is not None:
        return known
    with h5py.File(path, "r") as f:
        attrs = f.attrs
        found = {key: attrs.get(key) for key in STATUS_ATTRS}
    found = {key: (value.item() if isinstance(value, np.generic) else value) for key, value in found.items()}
    status_index.remember(path, version, found)  # type: ignore[arg-type]
    return found


def stored_digest(path: str | os.PathLike) -> str | None:
    """The ``config_digest`` attribute of the file at ``path``; None when it has none or cannot be read."""
    try:
        digest = _published_attrs(Path(path)).get("config_digest")
    except (OSError, ValueError):
        return None
    return digest if isinstance(digest, str) else None


def target_status(path: str | os.PathLike, config_digest: str, schema: str | None = None,
                  version: int | None = None) -> TargetStatus:
    """Tell whether ``path`` is a finished target made from ``config_digest`` (of ``schema`` and its
    ``version`` when given: a file of another layout version is out of date whatever its digest)."""
    path = Path(path)
    if not path.exists():
        return TargetStatus(False, False, False, "missing")
    try:
        attrs = _published_attrs(path)
    except Exception as err:  # garbage, a truncated file, a directory: OSError; damaged metadata: anything
        return TargetStatus(True, False, False, f"unreadable: {err}")
    if schema is not None and attrs.get("schema") != schema:
        return TargetStatus(True, False, False, f"schema {attrs.get('schema')!r}, expected {schema!r}")
    if version is not None and attrs.get("schema_version") != version:
        return TargetStatus(True, False, False,
                            f"layout version {attrs.get('schema_version')}, this tracerflow writes {version}")
    complete = bool(attrs.get("complete", False))
    matches = attrs.get("config_digest") == config_digest
    reason = "ok" if complete and matches else ("incomplete" if not complete else "config changed")
    return TargetStatus(True, complete, matches, reason)


def check_schema(f: h5py.File, schema: str, version: int) -> None:
    """Raise :class:`SchemaMismatch` unless ``f`` is a complete ``schema`` file of ``version``."""
    got = f.attrs.get("schema")
    if got != schema:
        raise SchemaMismatch(f"{f.filename}: schema {got!r}, expected {schema!r}")
    if int(f.attrs.get("schema_version", -1)) != version:
        raise SchemaMismatch(
            f"{f.filename}: {schema} version {f.attrs.get('schema_version')}, this tracerflow reads {version}"
        )
    if not bool(f.attrs.get("complete", False)):
        raise SchemaMismatch(f"{f.filename}: file is not complete (its writer did not finish)")
