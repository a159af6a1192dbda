"""Load a config: YAML file (or the embedded default), ``--set`` overrides, validation.

:func:`load_config` is the only way stages get their settings: it fills defaults, resolves
input paths against the config file's directory, checks that files exist and templates
build, and returns an immutable :class:`Config` whose slices give each task its digest.
"""
from __future__ import annotations

import copy
import functools
import glob
import hashlib
import importlib.util
import json
import os
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Sequence

import yaml

from tracerflow.config.checks import check_config
from tracerflow.config.schema import ABSENT_WHEN_NULL, BLOCKS, PERFORMANCE_KEYS
from tracerflow.config.spec import ConfigError, Context
from tracerflow.events.remote import is_url, missing_extra, url_problem
from tracerflow.events.remote import split as split_location
from tracerflow.io.provenance import EXTRA, UPSTREAM, canonical

EMBEDDED = "<embedded default>"


@dataclass(frozen=True)
class SampleFile:
    """One input file of a sample: where it is (a Path, or the URL of a remote file) and its logical
    name (relative to the sample root): what its outputs, event hashes and digests know it by, the
    same whether it is read from disk or from a server."""

    path: Path | str
    logical: str


def default_config_path() -> Path:
    """The default analysis shipped inside the package (configs/default.yaml)."""
    return shipped_config_path("default")


def shipped_config_path(name: str) -> Path:
    """``configs/<name>.yaml`` as shipped inside the package (it may not exist)."""
    return Path(str(resources.files("tracerflow.configs").joinpath(f"{name}.yaml")))


def _shipped(text: str) -> Path | None:
    """The shipped analysis ``text`` names, when it is a name (no path, no suffix) and no such file exists."""
    if not text or "/" in text or text.endswith((".yaml", ".yml")) or Path(text).is_file():
        return None
    path = shipped_config_path(text)
    return path if path.is_file() else None


def resolve_config(text: str) -> str:
    """What ``--config`` names: a shipped analysis's name (kept as the name, so it loads from any
    directory), else a file (made absolute; loading a missing one fails naming it)."""
    if not text or _shipped(text) is not None:
        return text
    return str(Path(text).resolve())


class Config:
    """A validated config: nested dicts with every default filled in."""

    def __init__(self, data: dict, source: str, base_dir: Path, overrides: tuple[str, ...]) -> None:
        self._data = data
        self.source = source
        self.base_dir = base_dir
        self.overrides = overrides
        self._files: dict[str, list[SampleFile]] = {}
        self._by_name: dict[str, dict[str, SampleFile]] = {}
        self._payloads: dict[str, str] = {}
        self._texts: dict[Any, str] = {}

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def get(self, dotted: str) -> Any:
        """Value at a dotted key path, e.g. ``event.chunk_size``."""
        value: Any = self._data
        for part in dotted.split("."):
            value = value[part]
        return value

    def as_dict(self) -> dict:
        return copy.deepcopy(self._data)

    @property
    def seed(self) -> int:
        return int(self._data["project"]["seed"])

    @functools.cached_property
    def remote_access(self):
        """How remote inputs are read (:class:`tracerflow.events.remote.Access` of the ``remote`` block)."""
        from tracerflow.events.remote import Access

        return Access.of(self._data["remote"])

    def samples_by_logical_name(self) -> dict:
        """The ``samples`` block with each sample's files given by logical name and no ``root``: what
        the analysis reads, wherever the files are kept (``config_ref`` digests this, so that the
        same analysis on local copies and on a server's files has one name)."""
        return {name: {**spec, "root": None, "files": [f.logical for f in self.sample_files(name)]
                       if spec["files"] else []} for name, spec in self._data["samples"].items()}

    @functools.cached_property
    def output_root(self) -> Path:
        """``<output_dir>/<project name>``: every target of this analysis lives below it."""
        project = self._data["project"]
        return (Path(project["output_dir"]).expanduser().absolute() / project["name"]).resolve()

    def digest(self, *keys: str, upstream: Sequence[str] = (), extra: Any = None) -> str:
        """16-hex-digit digest of the slices at ``keys``, upstream digests and ``extra``.

        Performance-only keys (chunk sizes, threads) are left out, so tuning them keeps caches.
        The hashed text is :func:`~tracerflow.io.provenance.canonical` of ``{key: slice, ...,
        "__upstream__": [...], "__extra__": extra}``; it is put together from parts, each config
        slice (and each :class:`Fragment` in ``extra``) serialised once per config, since a large
        analysis asks for one digest per input file and stage.
        """
        parts = {key: self._slice_text(key) for key in keys}
        parts[UPSTREAM] = canonical(list(upstream))
        parts[EXTRA] = _extra_text(extra)
        text = _joined(parts)
        digest = hashlib.blake2b(text.encode(), digest_size=8).hexdigest()
        self._payloads[digest] = text
        return digest

    def _slice_text(self, key: str) -> str:
        if key not in self._texts:
            self._texts[key] = canonical(_strip_performance(self.get(key)))
        return self._texts[key]

    def block_fragment(self, block: str, sample: str) -> Fragment:
        """:meth:`block_for` as a :class:`Fragment` for a digest's ``extra`` (serialised once)."""
        key = ("block", block, sample)
        if key not in self._texts:
            self._texts[key] = Fragment(self.block_for(block, sample)).text
        return Fragment.of_text(self._texts[key])

    def payload(self, digest: str) -> str | None:
        """The canonical payload text a :meth:`digest` of this config returned ``digest`` for
        (None when no digest call made it): what :mod:`tracerflow.io.provenance` records."""
        return self._payloads.get(digest)

    def block_for(self, block: str, sample: str) -> dict:
        """The ``event`` or ``selection`` block as ``sample`` sees it: the sample's own keys
        (``samples.<name>.<block>``) over the analysis's."""
        return {**self._data[block], **(self._data["samples"][sample][block] or {})}

    def sample_dir(self, sample: str) -> Path:
        """Where a generated sample's ROOT files are written."""
        return self.output_root / "samples" / sample

    def sample_files(self, sample: str) -> list[SampleFile]:
        """Input files of ``sample`` with logical names; planned files for generated samples."""
        if sample not in self._files:
            self._files[sample] = self._sample_files(sample)
        return list(self._files[sample])

    def _sample_files(self, sample: str) -> list[SampleFile]:
        spec = self._data["samples"][sample]
        if spec["generate"] is not None:
            from tracerflow.toy import plan_files

            gen = spec["generate"]
            plans = plan_files(gen["process"], gen["n_jets"], gen["events_per_file"], self.seed, sample)
            root = self.sample_dir(sample)
            return [SampleFile(root / p.name, p.name) for p in plans]
        if not any(is_url(f) for f in spec["files"]):
            paths = [Path(p) for p in spec["files"]]
            root = Path(spec["root"]) if spec["root"] else Path(os.path.commonpath([p.parent for p in paths]))
            return [SampleFile(p, p.relative_to(root).as_posix()) for p in paths]
        # URLs (checked by _resolve_inputs: one server, below the root): cut by path components
        origin, base = split_location(spec["root"]) if spec["root"] else _common_directory(spec["files"])
        return [SampleFile(f, "/".join(split_location(f)[1][len(base):])) for f in spec["files"]]

    def sample_file(self, sample: str, logical: str) -> SampleFile:
        """The input file of ``sample`` whose logical name is ``logical``."""
        if sample not in self._by_name:
            self._by_name[sample] = {item.logical: item for item in self.sample_files(sample)}
        try:
            return self._by_name[sample][logical]
        except KeyError:
            raise KeyError(f"sample {sample!r} has no file {logical!r}") from None


class Fragment:
    """A value for a digest's ``extra`` (as one of its top-level values), serialised once: stripped
    of performance keys and written as :func:`~tracerflow.io.provenance.canonical` writes it, so
    :meth:`Config.digest` splices the text in and the digest is the one of the plain value."""

    __slots__ = ("text",)

    def __init__(self, value: Any) -> None:
        self.text = canonical(_strip_performance(value))

    @classmethod
    def of_text(cls, text: str) -> "Fragment":
        fragment = cls.__new__(cls)
        fragment.text = text
        return fragment


def _extra_text(extra: Any) -> str:
    """``canonical(_strip_performance(extra))``, with a :class:`Fragment`'s text spliced in where
    ``extra`` is one or holds one as a top-level value of a dict with string keys."""
    if isinstance(extra, Fragment):
        return extra.text
    if isinstance(extra, dict) and all(isinstance(key, str) for key in extra):
        return _joined({key: value.text if isinstance(value, Fragment) else canonical(_strip_performance(value))
                        for key, value in extra.items() if key not in PERFORMANCE_KEYS})
    return canonical(_strip_performance(extra))


def _joined(parts: dict[str, str]) -> str:
    """The canonical text of a dict with string keys whose values are given as canonical texts
    (``json.dumps`` with ``sort_keys`` writes a dict as exactly this)."""
    return "{" + ", ".join(f"{json.dumps(key)}: {text}" for key, text in sorted(parts.items())) + "}"


def _strip_performance(value: Any) -> Any:
    """``value`` without performance-only keys (and null :data:`ABSENT_WHEN_NULL` keys), at any
    depth of dicts and lists."""
    if isinstance(value, dict):
        return {k: _strip_performance(v) for k, v in value.items()
                if k not in PERFORMANCE_KEYS and not (v is None and k in ABSENT_WHEN_NULL)}
    if isinstance(value, (list, tuple)):
        return [_strip_performance(v) for v in value]
    return value


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``a.b.c=value`` into its key path and YAML-parsed value."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError("--set", text, "expected dotted.key=value")
    return key.strip().split("."), yaml.safe_load(raw) if raw.strip() else None


def apply_overrides(data: dict, overrides: Sequence[str]) -> dict:
    """Return a copy of ``data`` with every ``dotted.key=value`` set (blocks created as needed)."""
    data = copy.deepcopy(data)
    for text in overrides:
        keys, value = parse_override(text)
        node = data
        for i, key in enumerate(keys[:-1]):
            nxt = node.get(key)
            if nxt is None:
                nxt = node[key] = {}
            if not isinstance(nxt, dict):
                raise ConfigError("--set", ".".join(keys[: i + 1]), f"is {type(nxt).__name__}, not a block")
            node = nxt
        node[keys[-1]] = value
    return data


def load_config(path: str | os.PathLike | None = None, overrides: Sequence[str] = ()) -> Config:
    """Load, override and validate a config; ``None`` means the embedded default."""
    return _load(str(path) if path else "", tuple(overrides))


@functools.lru_cache(maxsize=32)
def _load(path: str, overrides: tuple[str, ...]) -> Config:
    source_path = _shipped(path) or (Path(path) if path else default_config_path())
    source = str(source_path) if path else EMBEDDED
    if not source_path.is_file():
        raise ConfigError(source, "", "no such config file")
    raw = _read_yaml(source_path.read_text(), source)
    raw = apply_overrides(raw, overrides)
    ctx = Context(source if not overrides else f"{source} (with --set {' '.join(overrides)})")
    data = BLOCKS.validate(raw, "", ctx)
    _check_names(data, ctx)
    base_dir = source_path.parent.resolve()
    _resolve_inputs(data, base_dir, ctx)
    config = Config(data, source, base_dir, overrides)
    _check_template_modules(config, ctx)
    _check_templates(config, ctx)
    _check_overlay(config, ctx)
    _check_training_inputs(config, ctx)
    _check_predict(config, ctx)
    check_config(config, ctx)
    return config


def _read_yaml(text: str, source: str) -> dict:
    """The YAML document ``text``; a key given twice in one mapping is an error naming its path and
    lines (plain YAML would keep the second silently)."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as err:
        raise ConfigError(source, "", f"not valid YAML: {err}") from None
    _refuse_duplicates(node, "", source)
    return yaml.safe_load(text) or {}


def _refuse_duplicates(node: Any, path: str, source: str) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else str(key)
            where = f"{path}.{name}" if path else str(name)
            line = key.start_mark.line + 1
            if name in seen:
                raise ConfigError(source, where, f"given twice (lines {seen[name]} and {line}): "
                                                 "YAML would keep only the second; remove one")
            seen[name] = line
            _refuse_duplicates(value, where, source)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _refuse_duplicates(item, f"{path}[{i}]", source)


#: What a project, sample, split or class name may hold: it becomes a directory, a file or a dataset name.
NAME_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*")


def _check_names(data: dict, ctx: Context) -> None:
    """The project's, samples', splits' and classes' names are plain names (letters, digits, ``_``,
    ``-``) that do not collide on a case-insensitive file system: they become paths and dataset names."""
    resample = data["resample"] or {}
    classes = resample.get("classes") or []
    groups = {"project.name": [data["project"]["name"]], "samples": list(data["samples"]),
              "resample.splits": list(resample.get("splits") or {}), "resample.classes": list(classes)}
    for key, names in groups.items():
        folded: dict[str, str] = {}
        for name in names:
            if not NAME_PATTERN.fullmatch(name):
                keyed = key in ("samples", "resample.splits") or (key == "resample.classes" and isinstance(classes, dict))
                ctx.fail(f"{key}.{name}" if keyed else key,
                         f"{name!r} is not a plain name: use letters, digits, '_' and '-' (it names files)")
            if name.lower() in folded:
                ctx.fail(f"{key}.{name}", f"{name!r} and {folded[name.lower()]!r} differ only in case, "
                                          "and would share files on case-insensitive disks")
            folded[name.lower()] = name


def _common_directory(locations: list[str]) -> tuple[str, list[str]]:
    """``(origin, components)`` of the deepest directory holding every one of ``locations`` (all
    of one origin, see :func:`tracerflow.events.remote.split`)."""
    split = [split_location(f) for f in locations]
    dirs = [components[:-1] for _, components in split]
    common = dirs[0]
    for d in dirs[1:]:
        n = 0
        while n < min(len(common), len(d)) and common[n] == d[n]:
            n += 1
        common = common[:n]
    return split[0][0], common


def _resolve_urls(name: str, sample: dict, ctx: Context) -> None:
    """Check a sample's URLs without contacting a server: well formed, readable with what is
    installed, one server per sample (logical names are paths below one directory), below its root."""
    files = sample["files"]
    for i, url in enumerate(files):
        if not is_url(url):
            ctx.fail(f"samples.{name}.files[{i}]", f"{url}: a sample's files are all local or all URLs of one "
                                                   "server; put the others in a sample of their own")
        problem = url_problem(url) or missing_extra(url)
        if problem:
            ctx.fail(f"samples.{name}.files[{i}]", problem)
    origins = sorted({split_location(f)[0] for f in files})
    if len(origins) > 1:
        ctx.fail(f"samples.{name}.files", f"URLs of {len(origins)} servers ({', '.join(origins)}); a sample's files "
                                          "come from one server (put the others in a sample of their own)")
    if len(set(files)) != len(files):
        ctx.fail(f"samples.{name}.files", "lists the same file twice")
    if sample["root"]:
        root = sample["root"].rstrip("/")
        if not is_url(root):
            ctx.fail(f"samples.{name}.root", f"{root}: the files are URLs, so the root is a URL prefix of theirs")
        origin, base = split_location(root)
        for f in files:
            o, components = split_location(f)
            if o != origin or components[:len(base)] != base or len(components) == len(base):
                ctx.fail(f"samples.{name}.root", f"{f} is not below the sample root {root}")
        sample["root"] = root


def _resolve_inputs(data: dict, base_dir: Path, ctx: Context) -> None:
    """Expand sample globs and entry-list files against the config's directory; check they exist
    (URLs are checked for form only: no server is contacted while a config is loaded)."""
    for name, sample in data["samples"].items():
        files: list[str] = []
        if any(is_url(f) for f in sample["files"]):
            _resolve_urls(name, sample, ctx)
            continue
        for i, pattern in enumerate(sample["files"]):
            full = str((base_dir / Path(pattern).expanduser()))
            matches = sorted(glob.glob(full)) if glob.has_magic(full) else ([full] if Path(full).is_file() else [])
            if not matches:
                ctx.fail(f"samples.{name}.files[{i}]", f"no such file: {full}")
            files.extend(str(Path(m).resolve()) for m in matches)
        if len(set(files)) != len(files):
            ctx.fail(f"samples.{name}.files", "lists the same file twice")
        sample["files"] = files
        if sample["root"]:
            sample["root"] = str((base_dir / sample["root"]).resolve())
            for f in files:
                if not Path(f).is_relative_to(sample["root"]):
                    ctx.fail(f"samples.{name}.root", f"{f} is not below the sample root {sample['root']}")
    events = {"event": data["event"], **{f"samples.{name}.event": s["event"] for name, s in data["samples"].items()
                                          if s["event"]}}
    for where, event in events.items():
        for key, width in (("entry_list", 1), ("skip_entry_list", 1), ("run_event_list", 2),
                           ("skip_run_event_list", 2)):
            if isinstance(event.get(key), str):
                event[key] = _read_list_file(base_dir / event[key], width, f"{where}.{key}", ctx)
    background = data["background"]
    if background is not None and background["payload"] not in ("shipped", "trained"):
        background["payload"] = str((base_dir / Path(background["payload"]).expanduser()).resolve())


_INTEGER = re.compile(r"-?[0-9]+")


def _read_list_file(path: Path, width: int, key: str, ctx: Context) -> list:
    """The rows of an entry list (``width`` 1) or run/event list (2) file. A file that is not one is
    refused naming the file, the line and what is wrong with it, never quoting what it holds."""
    what = "an entry per line" if width == 1 else "a run and an event number per line"
    if not path.is_file():
        ctx.fail(key, f"not a file: {path}" if path.exists() else f"no such file: {path}")
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as err:
        ctx.fail(key, f"{path}: cannot be read ({err.strerror or type(err).__name__})")
    except UnicodeDecodeError as err:
        line = path.read_bytes()[: err.start].count(b"\n") + 1
        ctx.fail(key, f"{path}, line {line}: not text, where the file should hold {what}")
    rows = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        parts = line.split("#")[0].replace(",", " ").split()
        if not parts:
            continue
        if len(parts) != width:
            found = f"{len(parts)} value{'s' if len(parts) > 1 else ''}"
            ctx.fail(key, f"{path}, line {lineno}: {found} where the file should hold {what}")
        bad = [i for i, p in enumerate(parts, start=1) if not _INTEGER.fullmatch(p)]
        if bad:
            field = "" if width == 1 else f"field {bad[0]} "
            ctx.fail(key, f"{path}, line {lineno}: {field}is not an integer, where the file should hold {what}")
        numbers = [int(p) for p in parts]
        if width == 1 and numbers[0] < 0:
            ctx.fail(key, f"{path}, line {lineno}: a negative entry (entries count from 0)")
        rows.append(numbers[0] if width == 1 else numbers)
    return rows


def _check_template_modules(config: Config, ctx: Context) -> None:
    """Refuse, before anything is imported, a ``module:Class`` template from a module the config may
    not name (see :class:`~tracerflow.templates.loader.TemplateModules`)."""
    from tracerflow.templates.loader import TemplateModules

    modules = TemplateModules.of(config)
    keys = {f"{block}.template": config[block]["template"] for block in ("event", "graph", "selection")
            if config[block] is not None}
    for name, sample in config["samples"].items():
        for block in ("event", "selection"):
            if "template" in (sample[block] or {}):
                keys[f"samples.{name}.{block}.template"] = sample[block]["template"]
    for key, spec in keys.items():
        if isinstance(spec, str):
            problem = modules.refusal(spec.partition(":")[0])
            if problem:
                ctx.fail(key, problem)


def _check_templates(config: Config, ctx: Context) -> None:
    """Build every template once, for every sample that overrides it, so that a bad class path or
    expression fails now."""
    from tracerflow.templates.expressions import compile_expression
    from tracerflow.templates.loader import load_template

    def build(key: str, block: str, sample: str | None = None) -> None:
        try:
            load_template(config, block, sample)
        except ConfigError:
            raise
        except Exception as err:
            ctx.fail(key, str(err))

    if config["graph"] is not None:
        build("graph.template", "graph")
    for block in ("event", "selection"):
        for sample, spec in config["samples"].items():
            own = "template" in (spec[block] or {})
            key = f"samples.{sample}.{block}.template" if own else f"{block}.template"
            if config.block_for(block, sample)["template"] is None:
                ctx.fail(key, f"is required: give {block}.template or samples.{sample}.{block}.template")
            build(key, block, sample)
    for sample, spec in config["samples"].items():
        weight = config.block_for("event", sample)["generator_weight"]
        if weight is not None:
            own = "generator_weight" in (spec["event"] or {})
            try:
                compile_expression(weight)
            except ValueError as err:
                ctx.fail(f"samples.{sample}.event.generator_weight" if own else "event.generator_weight", str(err))
        if spec["cross_section"] is not None and config["project"]["luminosity"] is None:
            ctx.fail("project.luminosity", f"is required by samples.{sample}.cross_section")


def _check_overlay(config: Config, ctx: Context) -> None:
    """An overlay (``background.overlay``) needs, in every sample's event template, the hits
    collection directly below the event with sensor, ucell, vcell and charge, and nothing hanging
    below it; generated samples' hits in the background's geometry; and the payload it names."""
    from tracerflow.background.overlay import HIT_ATTRIBUTES
    from tracerflow.templates.event import EVENT
    from tracerflow.templates.loader import load_template
    from tracerflow.toy.pixels import geometry

    block = config["background"]
    if block is None or block["overlay"] == "none":
        return
    name = block["collection"]
    for sample, spec in config["samples"].items():
        key = f"samples.{sample}.event.template" if "template" in (spec["event"] or {}) else "event.template"
        template = load_template(config, "event", sample)
        coll = template.collections.get(name)
        if coll is None or coll.parent != EVENT:
            ctx.fail("background.collection", f"{name!r}: the event template ({key}) of sample {sample!r} has no "
                                              "collection of that name directly below the event")
        attributes = coll.branches or coll.members[0]
        missing = [a for a in HIT_ATTRIBUTES if a not in attributes]
        if missing:
            ctx.fail("background.collection", f"{name!r} in {key} (sample {sample!r}) lacks the attributes "
                                              f"{', '.join(missing)} the overlay needs")
        children = [c for c, other in template.collections.items() if other.parent == name]
        if children:
            ctx.fail("background.collection", f"{name!r} in {key}: the collections {', '.join(children)} hang below "
                                              "it; overlaid hits would leave them pointing at other rows")
        hits = (spec["generate"] or {}).get("pixel_hits")
        if hits is not None and geometry(hits) != geometry(block["geometry"]):
            ctx.fail(f"samples.{sample}.generate.pixel_hits", f"{hits!r}: the background overlay's geometry is "
                                                              f"{block['geometry']!r}; the two must be the same")
    if block["overlay"] == "generated":
        _check_payload(block, ctx)


def _check_payload(block: dict, ctx: Context) -> None:
    """The payload a generated overlay reads exists (shipped: for the model and geometry)."""
    from tracerflow.background.conditions import PayloadError, shipped_store
    from tracerflow.background.generator import payload_name
    from tracerflow.toy.pixels import geometry

    payload = block["payload"]
    if payload == "trained":
        return
    if payload != "shipped":
        if not Path(payload).is_file():
            ctx.fail("background.payload", f"{payload!r}: no such checkpoint file (shipped, trained or a path, "
                                           "relative to the config's directory)")
        return
    try:
        entry = shipped_store().entry(block["globaltag"], payload_name(block["model"]))
    except PayloadError as err:
        ctx.fail("background.payload", f"shipped: {err}; use payload: trained to train it in this run")
    built = entry["metadata"].get("model", {}).get("geometry")
    if built != geometry(block["geometry"]).as_dict():
        ctx.fail("background.payload", f"shipped: the package's {payload_name(block['model'])} is for the geometry "
                                       f"{built}, not {block['geometry']!r}; use payload: trained")


def _check_training_inputs(config: Config, ctx: Context) -> None:
    """Check that resample/write/tfrecords name columns the selection and graph templates make."""
    from tracerflow.io.umami_groups import group_names
    from tracerflow.resample.classes import resample_spec
    from tracerflow.templates.loader import load_template

    resample, write, tfrecords = config["resample"], config["write"], config["tfrecords"]
    for block, needs in (("write", "resample"), ("tfrecords", "write"), ("train", "write")):
        if config[block] is not None and config[needs] is None:
            ctx.fail(block, f"needs a {needs} block")
    if config["train"] is not None:
        _check_train(config, ctx)
    if resample is None:
        return
    selections = {s: load_template(config, "selection", s) for s in config["samples"]}
    selection = next(iter(selections.values()))
    for sample, other in selections.items():
        if other.level != selection.level:
            ctx.fail(f"samples.{sample}.selection.template.level",
                     f"{other.level!r}, but other samples select {selection.level!r} rows")
    outputs = [n for n in selection.output_names() if all(n in t.output_names() for t in selections.values())]
    try:
        classes = resample_spec(config)[1]
    except ValueError as err:
        key, _, message = str(err).partition(": ")
        ctx.fail(key, message)

    def need(key: str, names: list[str], have: list[str], what: str, indexed: bool = True) -> None:
        for i, name in enumerate(names):
            if name not in have:
                ctx.fail(f"{key}[{i}]" if indexed else key, f"{name!r} is not {what} (have: {', '.join(have) or 'none'})")

    if classes.reads_column:
        need("resample.label", [resample["label"]], outputs, "a selection output", indexed=False)
    for name in resample["variables"]:
        need(f"resample.variables.{name}", [name], outputs, "a selection output", indexed=False)
    if resample["weight"] is not None:
        need("resample.weight", [resample["weight"]], outputs, "a selection output", indexed=False)
    if write is None:
        return
    jets, tracks = write["jets"], write["tracks"]
    if config["graph"] is None:
        _check_without_graph(config, ctx)
    else:
        graph = load_template(config, "graph")
        if selection.level != graph.level:
            ctx.fail("selection.template.level",
                     f"{selection.level!r}: the train sample needs the graph level {graph.level!r}")
    need("write.jets.variables", jets["variables"], outputs, "a selection output")
    need("write.add_labels", write["add_labels"], outputs, "a selection output")
    need("write.targets", write["targets"], outputs, "a selection output")
    try:
        group_names(write["groups"])
    except ValueError as err:
        ctx.fail("write.groups", str(err).partition(": ")[2])
    if config["train"] is not None:
        _check_objective(config, classes, ctx)
    features = list(graph.node_features) if config["graph"] is not None else []
    truth = list(graph.node_truth) if config["graph"] is not None else []
    track_vars = features if tracks["variables"] is None else tracks["variables"]
    need("write.tracks.variables", track_vars, features, "a graph node feature")
    need("write.tracks.labels", tracks["labels"], truth, "a graph node truth")
    for group in ("log", "asinh", "no_norm"):
        need(f"write.jets.{group}", jets[group], jets["variables"], "in write.jets.variables")
        need(f"write.tracks.{group}", tracks[group], track_vars, "in write.tracks.variables")
    for name, block in (("jets", jets), ("tracks", tracks)):
        both = sorted(set(block["log"]) & set(block["asinh"]))
        if both:
            ctx.fail(f"write.{name}.asinh", f"{both[0]!r} is also in write.{name}.log: pick one transform")
    if isinstance(write["concat_jet_tracks"], list):
        need("write.concat_jet_tracks", write["concat_jet_tracks"], jets["variables"], "in write.jets.variables")
    if tfrecords is not None and write["format"] == "folds":
        ctx.fail("tfrecords", "converts the umami train file: needs write.format umami or both")
    if tfrecords is not None:
        need("tfrecords.splits", tfrecords["splits"], list(resample["splits"]), "a resample split")
        if tfrecords["n_add_vars"] > len(jets["variables"]):
            ctx.fail("tfrecords.n_add_vars", f"{tfrecords['n_add_vars']} exceeds the "
                     f"{len(jets['variables'])} jet variables of write.jets.variables")


def _check_without_graph(config: Config, ctx: Context) -> None:
    """An analysis without a graph block has no tracks: nothing may ask for them."""
    write, why = config["write"], "there are no tracks without a graph block"
    for key in ("variables", "labels", "log", "asinh", "no_norm"):
        if write["tracks"][key]:
            ctx.fail(f"write.tracks.{key}", why)
    if write["concat_jet_tracks"]:
        ctx.fail("write.concat_jet_tracks", why)
    if config["tfrecords"] is not None:
        ctx.fail("tfrecords", f"{why}, and TFRecords carry them: train from the umami file (train.data: h5)")
    if config["train"] is not None and config["train"]["model"].get("set"):
        ctx.fail("train.model.set", f"a set encoder reads tracks; {why} (set: null trains on the jet variables)")


def objective_of(train: dict) -> str:
    """The objective of a validated ``train`` block: ``train.model.tail.objective`` (the model
    block is ModelBuilder's, whose default objective is multiclass)."""
    return (train["model"].get("tail") or {}).get("objective", "multiclass")


def _check_objective(config: Config, classes: Any, ctx: Context) -> None:
    """The objective against the classes and targets: binary needs two classes and a positive one,
    regression its targets, classifiers none."""
    objective, train, targets = objective_of(config["train"]), config["train"], config["write"]["targets"]
    key = "train.model.tail.objective"
    if objective == "regression":
        if not targets:
            ctx.fail("write.targets", "the regression objective needs targets (selection outputs to learn)")
        if train["data"] == "tfrecords":
            ctx.fail("train.data", "a regression trains from the umami train file (h5): TFRecords hold no targets")
    elif targets:
        ctx.fail("write.targets", f"targets are for the regression objective ({key} is {objective!r})")
    if objective == "binary" and len(classes.names) != 2:
        ctx.fail(key, f"binary needs exactly two classes, resample.classes has {len(classes.names)} "
                      f"({', '.join(classes.names)})")
    if train["positive"] is not None:
        if objective != "binary":
            ctx.fail("train.positive", f"names the class a binary objective scores ({key} is {objective!r})")
        if train["positive"] not in classes.names:
            ctx.fail("train.positive", f"{train['positive']!r} is not among the classes ({', '.join(classes.names)})")


def _check_train(config: Config, ctx: Context) -> None:
    """The train block: umami files or TFRecords to read, folds that exist, a model block ModelBuilder
    accepts (its spec, :func:`~tracerflow.models.spec.model_spec`, which needs no torch)."""
    from tracerflow.models.spec import model_spec
    from tracerflow.write.columns import train_columns

    train, write = config["train"], config["write"]
    if write["format"] == "folds":
        ctx.fail("train", "reads the umami train file: needs write.format umami or both")
    if train["tensorboard"] and importlib.util.find_spec("tensorboard") is None:
        ctx.fail("train.tensorboard", "needs the tensorboard package: pip install 'tracerflow[tensorboard]'")
    tfrecords = config["tfrecords"]
    if train["data"] == "tfrecords" and tfrecords is None:
        ctx.fail("train.data", "'tfrecords' needs a tfrecords block that converts the train split")
    if train["data"] == "tfrecords" and "train" not in tfrecords["splits"]:
        ctx.fail("train.data", f"'tfrecords' needs tfrecords.splits to hold train "
                               f"(has: {', '.join(tfrecords['splits']) or 'none'})")
    for i, fold in enumerate(train["folds"] or ()):
        if fold >= write["n_folds"]:
            ctx.fail(f"train.folds[{i}]", f"fold {fold} does not exist (write.n_folds is {write['n_folds']})")
    columns = train_columns(config)
    concat = write["concat_jet_tracks"]
    n_concat = len(columns.jet_vars) if concat is True else len(concat or ())
    try:
        model_spec(train["model"], n_jet_vars=len(columns.jet_vars), n_track_vars=len(columns.track_vars) + n_concat)
    except ValueError as err:
        key, _, message = str(err).partition(": ")
        ctx.fail(key, message)


def _check_predict(config: Config, ctx: Context) -> None:
    """Predict samples: samples of the config that leave some to train on; export formats that can run."""
    predict, samples = config["predict"], list(config["samples"])
    names = predict["samples"]
    for i, name in enumerate(names):
        if name not in samples:
            ctx.fail(f"predict.samples[{i}]", f"{name!r} is not a sample (have: {', '.join(samples)})")
        if name in names[:i]:
            ctx.fail(f"predict.samples[{i}]", f"{name!r} is named twice")
    if names and config["train"] is None:
        ctx.fail("predict.samples", "needs a train block: the fold models score the samples")
    if names and len(set(names)) == len(samples):
        ctx.fail("predict.samples", "names every sample: none is left to resample and train on")
    if "onnx" in predict["export"] and config["train"] is not None:
        from tracerflow.evaluate.export import onnx_missing

        missing = onnx_missing()
        if missing:
            ctx.fail("predict.export", f"onnx needs {', '.join(missing)}: pip install 'tracerflow[onnx]'")
        if (config["train"]["model"].get("set") or {}).get("type") == "gnn":
            ctx.fail("predict.export", "onnx: the GNN set encoder builds its graph from the data, "
                     "which has no ONNX export")
    # The discriminant names classes of the analysis; regression bins name a stored column.
    train, write, resample = config["train"], config["write"], config["resample"]
    objective = objective_of(train) if train is not None else None
    discriminant, binning = predict["discriminant"], predict["regression_bins"]
    if resample is not None and (discriminant is not None or predict["reference"] is not None):
        from tracerflow.resample.classes import resample_spec

        classes = list(resample_spec(config)[1].names)
    if discriminant is not None and resample is not None:
        if objective == "regression":
            ctx.fail("predict.discriminant", "a regression has no classes to tag (train.model.tail.objective "
                     "is regression); remove the block")
        if discriminant["signal"] not in classes:
            ctx.fail("predict.discriminant.signal", f"{discriminant['signal']!r} is not a class "
                     f"(resample.classes: {', '.join(classes) or 'none'})")
        for name in discriminant["fractions"]:
            if name not in classes or name == discriminant["signal"]:
                ctx.fail(f"predict.discriminant.fractions.{name}", f"{name!r} is not a background class "
                         f"(resample.classes: {', '.join(classes)}; signal {discriminant['signal']!r})")
        if sum(discriminant["fractions"].values()) > 1.0:
            ctx.fail("predict.discriminant.fractions", f"fractions sum to {sum(discriminant['fractions'].values())}"
                     ", more than 1")
    reference = predict["reference"]
    if reference is not None:
        if train is None:
            ctx.fail("predict.reference", "needs a train block: the reference is compared with the fold models")
        if objective == "regression":
            ctx.fail("predict.reference", "ranks one class against another; a regression has no classes "
                     "(train.model.tail.objective is regression)")
        if objective == "multiclass" and len(classes) != 2:
            ctx.fail("predict.reference", f"ranks one class against another: needs a binary objective or exactly "
                     f"two classes (resample.classes has {len(classes)}: {', '.join(classes)})")
        if reference["score"] not in write["add_labels"]:
            ctx.fail("predict.reference.score", f"{reference['score']!r} is not stored in the train file "
                     f"(write.add_labels: {', '.join(write['add_labels']) or 'none'})")
    if binning is not None and train is not None:
        if objective != "regression":
            ctx.fail("predict.regression_bins", f"bins residuals of a regression; train.model.tail.objective "
                     f"is {objective}")
        stored = [*write["targets"], *write["add_labels"], *write["jets"]["variables"]]
        if binning["variable"] not in stored:
            ctx.fail("predict.regression_bins.variable", f"{binning['variable']!r} is not stored in the train "
                     f"file (write.targets, write.add_labels, write.jets.variables: {', '.join(stored) or 'none'})")
