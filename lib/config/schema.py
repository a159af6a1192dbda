"""The config blocks of an analysis and what each key accepts.

This is the reference for every key: types, defaults and choices live here and nowhere
else. Input paths are relative to the config file; ``project.output_dir`` to the directory
tracerflow runs in.
"""
from __future__ import annotations

import re
from urllib.parse import urlsplit

from tracerflow.config.spec import REQUIRED, Block, Context, ListOf, MapOf, OneOf, Partial, Scalar

TOY_PROCESSES = ("ttbar", "zprime")
COMPRESSION = Scalar((str,), default=None, choices=(None, "lzf", "gzip"), doc="HDF5 filter, built into h5py")
CHUNK = Scalar((int,), default=100_000, minimum=1, doc="events per chunk: bounds memory")


_IDENTIFIER = r"[A-Za-z_][A-Za-z0-9_]*"
_MODULE = re.compile(rf"{_IDENTIFIER}(\.{_IDENTIFIER})*")


def _field_name(name: str) -> str | None:
    """A name a template gives a field, a collection, a cut or an output: expressions read it and it
    names a dataset, so it is a plain identifier."""
    if re.fullmatch(_IDENTIFIER, name):
        return None
    return f"{name!r} is not a field name: use letters, digits and '_', not starting with a digit"


def _derived_name(name: str) -> str | None:
    """'name' (an event field) or 'collection.name'."""
    if re.fullmatch(rf"({_IDENTIFIER}\.)?{_IDENTIFIER}", name):
        return None
    return f"{name!r} is not 'name' or 'collection.name' (letters, digits and '_', not starting with a digit)"


def _expression_map(doc: str, key_check=_field_name) -> MapOf:
    return MapOf(Scalar((str, int, float, bool)), doc=doc, key_check=key_check)


def _class_path(value: str) -> str | None:
    module, colon, name = value.partition(":")
    if not colon:
        return "expected 'module:Class' or a declared template block"
    if not _MODULE.fullmatch(module) or not re.fullmatch(_IDENTIFIER, name):
        return f"{value!r} is not 'module:Class' (a dotted module name, a colon, a class name)"
    return None


def _module_name(value: str) -> str | None:
    return None if _MODULE.fullmatch(value) else f"{value!r} is not a module name (dotted Python names)"


def _port(value: int) -> str | None:
    return None if value <= 65535 else f"expected a TCP port (1 to 65535), got {value!r}"


def scheduler_url_problem(value: str) -> str | None:
    """What is wrong with a central scheduler's URL (``http[s]://host[:port][/path]``), or None."""
    parts = urlsplit(value)
    try:
        port = parts.port
    except ValueError:
        return f"{value!r} has no valid port (1 to 65535)"
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        return f"{value!r} is not a scheduler URL such as http://127.0.0.1:8082"
    if port == 0:
        return f"{value!r} has no valid port (1 to 65535)"
    return None


def _files_per_task(value: object) -> str | None:
    if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        return None
    return f"expected 'auto' or a whole number >= 1, got {value!r}"


CLASS_PATH = Scalar((str,), check=_class_path)

DISTRIBUTED_BACKENDS = ("auto", "gloo", "nccl")
DISTRIBUTED = Block({
    "world_size": Scalar((int,), default=1, minimum=1,
                         doc="processes training each fold together with torch DistributedDataParallel, "
                             "each on its own share of the train file's blocks; 1: one process"),
    "backend": Scalar((str,), default="auto", choices=DISTRIBUTED_BACKENDS,
                      doc="how the processes talk: auto (nccl when the training runs on CUDA, else gloo), "
                          "gloo (CPU, or CUDA tensors through the host), nccl (one CUDA GPU per process)"),
    "timeout": Scalar((float,), default=1800.0, minimum=1.0,
                      doc="seconds a process waits for the others (to start, or in one exchange) before "
                          "the fold fails naming it"),
}, doc="train.batch_size is the global batch: each of the world_size processes trains on "
       "batch_size / world_size jets of every step. How the processes start: spawned by TrainFold, or, "
       "under torchrun or srun (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT), one per process "
       "started there")


def _train_check(train: dict, path: str, ctx: Context) -> None:
    """What ``train.distributed`` asks of the rest of the block and of this machine (read without
    torch: the training checks CUDA again with it before any process starts)."""
    distributed = train["distributed"]
    world = distributed["world_size"]
    if world > 1 and train["batch_size"] % world:
        ctx.fail(f"{path}.batch_size", f"{train['batch_size']} does not divide by {path}.distributed.world_size "
                                       f"({world}): it is the global batch, and each of the {world} processes "
                                       "trains on batch_size / world_size jets of every step")
    if distributed["backend"] != "nccl":
        return
    if train["device"] == "cpu":
        ctx.fail(f"{path}.distributed.backend", f"nccl runs on CUDA GPUs and {path}.device is cpu: "
                                                "use gloo or auto")
    from tracerflow.config.gpus import visible_cuda_gpus

    if not visible_cuda_gpus():
        ctx.fail(f"{path}.distributed.backend", "nccl needs CUDA GPUs and none is visible here "
                                                "(a CPU-only torch, no NVIDIA device, or CUDA_VISIBLE_DEVICES "
                                                "hides them): use gloo or auto")

#: The stages of the DAG in order, as tracerflow.tasks names their task families (its STAGES; a test
#: keeps the two equal): ``batch.families`` takes these names.
STAGE_NAMES = ("GenerateSample", "TrainBackgroundGenerator", "BuildEvents", "BuildGraphs", "ApplySelections",
               "Resample", "WriteTrainSample", "ConvertTFRecords", "TrainFold", "PrepareSample", "Predict")
#: The background generator's models (tracerflow.background.models.MODELS; a test keeps the two equal).
BACKGROUND_MODELS = ("convnet", "resnet", "conditioned", "clusters")
#: What BuildEvents overlays on each event's hits (``background.overlay``).
OVERLAYS = ("none", "simulated", "generated")
#: The keys of the ``background`` block that say how BuildEvents overlays, not what is trained:
#: TrainBackgroundGenerator's digest leaves them out.
OVERLAY_KEYS = ("overlay", "payload", "collection")


def _geometry_name(value: str) -> str | None:
    from tracerflow.toy.pixels import GEOMETRIES

    return None if value in GEOMETRIES else f"no pixel geometry named {value!r} (known: {', '.join(GEOMETRIES)})"


def _background_check(block: dict, path: str, ctx: Context) -> None:
    geometry = block["geometry"]
    if isinstance(geometry, dict):
        if not geometry["layers"] or min(geometry["layers"]) < 1:
            ctx.fail(f"{path}.geometry.layers", "every layer needs at least one sensor")


BACKGROUND = Block({
    "geometry": OneOf((Scalar((str,), check=_geometry_name),
                       Block({"layers": ListOf(Scalar((int,), minimum=1)), "height": Scalar((int,), minimum=1),
                              "width": Scalar((int,), minimum=1)})),
                      default="default",
                      doc="the pixel detector: 'default' (10 sensors of 32 x 96), 'belle2' (40 of 250 x 768) or "
                          "{layers: [sensors per layer], height, width}"),
    "model": Scalar((str,), default="clusters", choices=BACKGROUND_MODELS,
                    doc="convnet and resnet as in Belle II; conditioned: knows each sensor and correlates an event's; "
                        "clusters: sparse, cluster by cluster, fitted by maximum likelihood"),
    "globaltag": Scalar((str,), default="tracerflow-background",
                        doc="the conditions store's global tag the payload BackgroundGenerator_<model> is kept under"),
    "seed": Scalar((int,), default=None, nullable=True,
                   doc="the generator's seed; null: Belle II's rule, sha512 of project.seed"),
    "overlay": Scalar((str,), default="none", choices=OVERLAYS,
                      doc="what BuildEvents adds to each event's hits: none; simulated: the reference simulation's "
                          "background; generated: the generator's (payload), each keyed by the event's hash"),
    "payload": Scalar((str,), default="shipped",
                      doc="the generator overlay: generated uses: shipped (the package's payload for the model and "
                          "geometry), trained (TrainBackgroundGenerator's, trained in this run), or the path of a "
                          "checkpoint file (a state dict; relative to the config's directory)"),
    "collection": Scalar((str,), default="hits",
                         doc="the event template's collection the background digits are overlaid on (attributes "
                             "sensor, ucell, vcell, charge; is_background is added)"),
    "nintra": Scalar((int,), default=1, minimum=1, doc="torch intra-op threads of the generator"),
    "ninter": Scalar((int,), default=1, minimum=1, doc="torch inter-op threads of the generator"),
    "physics": Block({
        "clusters_per_sensor": ListOf(Scalar((float,), minimum=0.0), default=lambda: [9.0, 5.0],
                                      doc="mean background clusters per sensor and event at intensity 1, by layer "
                                          "(the last value for the layers beyond)"),
        "ladder_modulation": Scalar((float,), default=0.3, minimum=0.0,
                                    doc="relative variation of the rate around a layer's ring of sensors"),
        "intensity_shape": Scalar((float,), default=6.0, minimum=0.01,
                                  doc="k of the per-event intensity Gamma(k, 1/k), which correlates an event's sensors"),
        "charge_mpv": Scalar((float,), default=30.0, minimum=0.0, doc="cluster charge: Moyal location, ADU"),
        "charge_width": Scalar((float,), default=7.0, minimum=0.0, doc="cluster charge: Moyal scale, ADU"),
        "noise": Scalar((float,), default=1.5, minimum=0.0, doc="Gaussian noise per pixel, ADU"),
        "threshold": Scalar((float,), default=7.0, minimum=0.0, doc="zero suppression, ADU"),
    }, doc="the toy's reference background simulation (lib/toy/pixel_background.py)"),
    "train": Block({
        "steps": Scalar((int,), default=2000, minimum=1, doc="generator steps (WGAN-GP)"),
        "batch_size": Scalar((int,), default=32, minimum=1, doc="events per step"),
        "critic_steps": Scalar((int,), default=5, minimum=1, doc="critic steps per generator step"),
        "learning_rate": Scalar((float,), default=1e-4, minimum=0.0),
        "gradient_penalty": Scalar((float,), default=10.0, minimum=0.0),
        "checkpoint_every": Scalar((int,), default=100, minimum=1, doc="steps between checkpoints (resume from the last)"),
        "fit_events": Scalar((int,), default=20_000, minimum=1,
                             doc="simulated events the clusters model is fitted to (maximum likelihood)"),
        "evaluation_events": Scalar((int,), default=10_000, minimum=2,
                                    doc="events generated and simulated for the quality report"),
    }, doc="TrainBackgroundGenerator"),
}, default=None, nullable=True, check=_background_check,
    doc="the background generator (lib/background): TrainBackgroundGenerator trains it on the reference simulation; "
        "null: none")

_WALLTIME = re.compile(r"(?:(\d+)-(\d+)(?::(\d+)(?::(\d+))?)?|(\d+)(?::(\d+)(?::(\d+))?)?)")
_MEMORY = re.compile(r"(\d+)([KMGT]?)")


def walltime_seconds(value: str) -> int | None:
    """A wall time as Slurm writes it ("minutes", "minutes:seconds", "hours:minutes:seconds",
    "days-hours", "days-hours:minutes", "days-hours:minutes:seconds") in seconds; None if it is none."""
    match = _WALLTIME.fullmatch(value.strip())
    if match is None:
        return None
    days, d_hours, d_minutes, d_seconds, first, second, third = match.groups()
    if days is not None:
        return ((int(days) * 24 + int(d_hours)) * 60 + int(d_minutes or 0)) * 60 + int(d_seconds or 0)
    if third is not None:
        return (int(first) * 60 + int(second)) * 60 + int(third)
    return int(first) * 60 + int(second or 0)


def memory_mb(value: str) -> int | None:
    """A memory size as Slurm writes it (a number with an optional K, M, G or T; megabytes without)
    in megabytes, rounded up; None if it is none."""
    match = _MEMORY.fullmatch(value.strip())
    if match is None:
        return None
    number, unit = int(match.group(1)), match.group(2) or "M"
    kib = number * {"K": 1, "M": 1 << 10, "G": 1 << 20, "T": 1 << 30}[unit]
    return -(-kib // 1024)


def _walltime(value: str | int) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool):
        # YAML 1.1 reads an unquoted 4:00:00 as the number 14400 and 90 as 90: the two cannot be told apart
        return (f"got the number {value}: quote the wall time, e.g. '90' (minutes) or '4:00:00' (YAML reads an "
                f"unquoted h:mm:ss as a number of seconds)")
    seconds = walltime_seconds(value)
    if seconds is None:
        return (f"{value!r} is not a wall time: minutes, minutes:seconds, hours:minutes:seconds, days-hours, "
                f"days-hours:minutes or days-hours:minutes:seconds (e.g. 90, 4:00:00, 1-12:00:00)")
    return None if seconds > 0 else f"{value!r} is no time at all"


def _memory(value: str) -> str | None:
    mb = memory_mb(value)
    if mb is None:
        return f"{value!r} is not a memory size: a number with K, M, G or T (megabytes without), e.g. 4G or 500M"
    return None if mb > 0 else f"{value!r} is no memory at all"


#: What one batch job asks for: ``batch.job`` for every job, ``batch.families.<Family>`` over it.
BATCH_JOB = Block({
    "partition": Scalar((str,), default=None, nullable=True,
                        doc="Slurm partition or LSF queue (HTCondor: put requirements in extra); null: the system's default"),
    "time": Scalar((str, int), default=None, nullable=True, check=_walltime,
                   doc="wall time limit as Slurm writes it, quoted (e.g. '30', '4:00:00', '1-00:00:00'); null: the "
                       "partition's default"),
    "mem": Scalar((str,), default=None, nullable=True, check=_memory,
                  doc="memory per job, e.g. 4G or 500M; null: the partition's default"),
    "cpus": Scalar((int,), default=1, minimum=1, doc="CPU cores per job"),
    "gpus": Scalar((int,), default=0, minimum=0, doc="GPUs per job"),
    "extra": ListOf(Scalar((str,)), default=list,
                    doc="further options, each as one line of the job file takes it: '--account=abc' or "
                        "'--qos=short' (Slurm), '+JobFlavour = \"longlunch\"' (HTCondor), '-P project' (LSF)"),
})

COLLECTION = Block({
    "branches": MapOf(Scalar((str,)), default=dict, doc="attribute -> jagged ROOT branch", key_check=_field_name),
    "members": ListOf(MapOf(Scalar((str,)), key_check=_field_name), default=None, nullable=True,
                      doc="fixed-size collection from flat branches: one attribute -> branch map per object"),
    "four_vector": Scalar((str,), default=None, choices=(None, "pxpypze", "pxpypzm", "ptetaphim", "ptetaphie")),
    "kinematics": ListOf(Scalar((str,), choices=("pt", "eta", "phi", "mass", "px", "py", "pz", "e")), default=None, nullable=True),
    "parent": Scalar((str,), default="event"),
    "link": Scalar((str,), default=None, nullable=True, doc="branch with each item's parent index in the event"),
    "match_dr": Scalar((float,), default=None, minimum=0.0, nullable=True,
                       doc="without a link: attach each item to its event's parent item nearest in delta R, "
                           "within this cone"),
})

EVENT_TEMPLATE = Block({
    "leaves": MapOf(Scalar((str,)), doc="attribute -> ROOT branch, one value per event", key_check=_field_name),
    "collections": MapOf(COLLECTION, key_check=_field_name),
    "derived": _expression_map("'name' or 'collection.name' -> expression", _derived_name),
    "optional": MapOf(Scalar((int, float, bool)),
                      doc="branch -> value filling it in files without it (truth branches in collision data)"),
})

TOPOLOGY = Block({
    "type": Scalar((str,), default="fully_connected", choices=("fully_connected", "knn", "delta_r")),
    "k": Scalar((int,), default=None, minimum=1, nullable=True),
    "max_dr": Scalar((float,), default=None, minimum=0.0, nullable=True),
    "eta": Scalar((str,), default=None, nullable=True),
    "phi": Scalar((str,), default=None, nullable=True),
    "self_loops": Scalar((bool,), default=None, nullable=True),
})

GRAPH_TEMPLATE = Block({
    "level": Scalar((str,), default="event", doc="one graph per row of this level"),
    "nodes": Scalar((str,), doc="collection whose rows are the nodes"),
    "topology": TOPOLOGY,
    **{kind: _expression_map(kind) for kind in
       ("node_features", "edge_features", "graph_features", "node_truth", "edge_truth", "graph_truth")},
})

SELECTION_TEMPLATE = Block({
    "level": Scalar((str,), default="event"),
    "cuts": _expression_map("name -> boolean expression, applied in order"),
    "outputs": _expression_map("name -> expression kept for passing rows"),
    "weight": Scalar((str,), default=None, nullable=True, doc="expression for the weighted cutflow"),
})

GENERATE = Block({
    "process": Scalar((str,), choices=TOY_PROCESSES),
    "n_jets": Scalar((int,), minimum=1),
    "events_per_file": Scalar((int,), default=100_000, minimum=1),
    "pixel_hits": Scalar((str,), default=None, nullable=True, check=_geometry_name,
                         doc="a pixel geometry ('default', 'belle2'): each event's tracks leave signal hits in that "
                             "detector, written as the hit_* branches (lib/toy/pixel_hits.py); null: no hits"),
}, default=None, nullable=True)


def _sample_check(sample: dict, path: str, ctx: Context) -> None:
    if not sample["files"] and sample["generate"] is None:
        ctx.fail(path, "needs files or a generate block")
    if sample["files"] and sample["generate"] is not None:
        ctx.fail(f"{path}.generate", "a sample either lists files or is generated, not both")





def _entries(default: object) -> OneOf:
    """An entry list given inline or as a text file of entries, one per line."""
    return OneOf((ListOf(Scalar((int,), minimum=0)), Scalar((str,))), default=default)


def _run_events(default: object) -> OneOf:
    """(run, event) pairs given inline or as a text file of 'run event' lines."""
    return OneOf((ListOf(ListOf(Scalar((int,)), length=2)), Scalar((str,))), default=default)

def _fraction_or_auto(value: object) -> str | None:
    if value == "auto" or (isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0):
        return None
    return "expected a number > 0 or 'auto'"


def _bins(value: object) -> str | None:
    if isinstance(value, dict) and set(value) == {"bins"}:
        value = value["bins"]
    ok = isinstance(value, list) and value and all(
        isinstance(r, list) and len(r) == 3 and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in r)
        and isinstance(r[2], int) and r[2] >= 1 and r[1] > r[0] for r in value)
    if not ok:
        return "expected bins as [[low, high, n], ...] with low < high and n >= 1"
    for (_, high, _), (low, _, _) in zip(value, value[1:]):
        if low != high:
            return f"ranges must be contiguous: one ends at {high}, the next starts at {low}"
    return None


VARIABLE_GROUP = Block({
    "variables": ListOf(Scalar((str,)), default=list, doc="input variables, in column order"),
    "log": ListOf(Scalar((str,)), default=list, doc="normalised as log(x)"),
    "asinh": ListOf(Scalar((str,)), default=list, doc="normalised as asinh(x): signed, heavy-tailed variables"),
    "no_norm": ListOf(Scalar((str,)), default=list, doc="left unscaled (shift 0, scale 1)"),
})

EVENT_FIELDS = {
    "template": OneOf((Scalar((str,), nullable=True, check=_class_path), EVENT_TEMPLATE), default=None,
                      doc="null: every sample gives its own (samples.<name>.event.template)"),
    "chunk_size": CHUNK,
    "threads": Scalar((int,), default=1, minimum=1, doc="uproot decompression threads"),
    "compression": COMPRESSION,
    "non_finite": Scalar((str,), default="fail", choices=("fail", "keep", "drop", "fill"),
                         doc="NaN or infinity in a branch read: stop naming it, keep it, leave the event out, "
                             "or fill it with fill_value"),
    "fill_value": Scalar((float,), default=0.0, doc="what non_finite: fill puts in place of NaN and infinities"),
    "event_start": Scalar((int,), default=None, minimum=0, nullable=True),
    "event_stop": Scalar((int,), default=None, minimum=0, nullable=True),
    "n_skip": Scalar((int,), default=0, minimum=0),
    "entry_list": _entries(None),
    "skip_entry_list": _entries(list),
    "run_event_list": _run_events(None),
    "skip_run_event_list": _run_events(list),
    "run_event_branches": ListOf(Scalar((str,)), length=2, default=lambda: ["run", "event_number"]),
    "generator_weight": Scalar((str,), default=None, nullable=True,
                               doc="event-level expression of the generator weight (NanoAOD: genWeight); "
                                   "null: 1 per event"),
    "negative_weights": Scalar((str,), default="keep", choices=("keep", "abs", "zero"),
                               doc="what negative generator weights become, in sums and per event alike"),
}

SELECTION_FIELDS = {
    "template": OneOf((CLASS_PATH, SELECTION_TEMPLATE)),
    "chunk_size": CHUNK,
}


def _overrides(fields: dict) -> Partial:
    """A sample's override of an analysis block: the same keys, none required, nothing filled in
    (what a sample leaves out comes from the analysis's block, see ``Config.block_for``)."""
    return Partial(Block(fields), doc="overrides the analysis's block of the same name for this sample")


SAMPLE = Block({
    "files": ListOf(Scalar((str,)), default=list,
                    doc="ROOT files or globs, relative to the config file, or root:// and http(s):// URLs "
                        "(read in place; no wildcards)"),
    "tree": Scalar((str,), default="events"),
    "root": Scalar((str,), default=None, nullable=True,
                   doc="directory (or URL prefix) logical file names are relative to; null: the files' "
                       "deepest common directory"),
    "generate": GENERATE,
    "event": _overrides(EVENT_FIELDS),
    "selection": _overrides(SELECTION_FIELDS),
    "label": Scalar((str,), default=None, nullable=True,
                    doc="class of every row of this sample (resample.classes names it)"),
    "cross_section": Scalar((float,), default=None, minimum=0.0, nullable=True,
                            doc="pb: rows weigh cross_section * project.luminosity * w / sum(w)"),
}, check=_sample_check)


BLOCKS = Block({
    "project": Block({
        "name": Scalar((str,), default="tracerflow"),
        "output_dir": Scalar((str,), default="tracerflow-output"),
        "seed": Scalar((int,), default=42),
        "luminosity": Scalar((float,), default=None, minimum=0.0, nullable=True,
                             doc="pb^-1, for samples with a cross_section"),
        "template_modules": ListOf(Scalar((str,), check=_module_name), default=list,
                                   doc="modules (with their submodules) that 'module:Class' templates may name "
                                       "besides tracerflow's and those below the config's directory"),
    }),
    "samples": MapOf(SAMPLE, default=REQUIRED),
    "event": Block(EVENT_FIELDS),
    "graph": Block({
        "template": OneOf((CLASS_PATH, GRAPH_TEMPLATE)),
        "precision": Scalar((str,), default="float32", choices=("float16", "float32")),
        "compression": COMPRESSION,
        "chunk_size": CHUNK,
    }, default=None, nullable=True, doc="absent: no graphs, so the train files have no track inputs (jets only)"),
    "selection": Block(SELECTION_FIELDS),
    "resample": Block({
        "label": Scalar((str,), default=None, nullable=True,
                        doc="selection output holding the class label (null: classes come from the samples)"),
        "classes": OneOf((MapOf(OneOf((Scalar((int,)), ListOf(Scalar((str,)))))), ListOf(Scalar((str,)))),
                         default=None,
                         doc="class name -> label value or the samples it holds, or a list of class names "
                             "(each sample then names its class in samples.<name>.label); class index = "
                             "order; null: one class (regression)"),
        "target": Scalar((str,), default=None, nullable=True,
                         doc="class whose distribution the others follow (null: the first class)"),
        "method": Scalar((str,), default="countup", choices=("pdf", "countup", "weighting", "none")),
        "variables": MapOf(Scalar((list, dict), check=_bins), default=lambda: {
            "pt": [[20.0, 250.0, 23], [250.0, 1000.0, 15]], "abs_eta": [[0.0, 2.5, 5]]},
            doc="selection output -> bins [[low, high, n], ...]"),
        "sampling_fraction": Scalar((float, str), default="auto", check=_fraction_or_auto),
        "max_upsampling_ratio": Scalar((float,), default=10.0, minimum=1.0),
        "upscale_pdf": Scalar((int,), default=1, minimum=1),
        "splits": MapOf(Scalar((float,), minimum=0.0), default=lambda: {"train": 0.8, "val": 0.1, "test": 0.1}),
        "untouched_splits": ListOf(Scalar((str,)), default=None, nullable=True,
                                   doc="splits kept as they are (default: test)"),
        "weight": Scalar((str,), default=None, nullable=True, doc="selection output multiplied into the weight"),
        "balance_weights": Scalar((bool,), default=False,
                                  doc="scale each class's weights in resampled splits to the target class's total "
                                      "(class balance on top of physics weights)"),
        "chunk_size": Scalar((int,), default=500_000, minimum=1, doc="jets per chunk: bounds memory"),
        "plots": Scalar((bool,), default=True),
    }, default=None, nullable=True, doc="absent: the analysis ends at ApplySelections"),
    "write": Block({
        "format": Scalar((str,), default="both", choices=("umami", "folds", "both")),
        "jets": VARIABLE_GROUP,
        "tracks": Block({
            "variables": ListOf(Scalar((str,)), default=None, nullable=True,
                                doc="graph node features, in column order (default: all)"),
            "log": ListOf(Scalar((str,)), default=list),
            "asinh": ListOf(Scalar((str,)), default=list),
            "no_norm": ListOf(Scalar((str,)), default=list),
            "labels": ListOf(Scalar((str,)), default=list, doc="graph node truth columns"),
            "max_tracks": Scalar((int,), default=40, minimum=1),
        }),
        "add_labels": ListOf(Scalar((str,)), default=list, doc="selection outputs stored unscaled, NaN -> 0"),
        "groups": Block({
            "jets": Scalar((str,), default="jets", doc="the train file's group of per-row datasets"),
            "tracks": Scalar((str,), default="tracks", doc="the train file's group of the rows' sets (graph nodes)"),
        }, doc="group names of the umami train file (umami's by default; e.g. events and jets for event-level rows)"),
        "targets": ListOf(Scalar((str,)), default=list,
                          doc="selection outputs a regression learns (jets/targets, stored unscaled)"),
        "n_folds": Scalar((int,), default=5, minimum=2),
        "precision": Scalar((str,), default="float16", choices=("float16", "float32")),
        "compression": COMPRESSION,
        "concat_jet_tracks": OneOf((Scalar((bool,)), ListOf(Scalar((str,)))), default=False),
        "chunk_size": Scalar((int,), default=100_000, minimum=1, doc="jets per chunk: bounds memory"),
    }, default=None, nullable=True, doc="needs resample"),
    "tfrecords": Block({
        "splits": ListOf(Scalar((str,)), default=lambda: ["train", "val"], doc="splits converted"),
        "chunk_size": Scalar((int,), default=10_000, minimum=1, doc="jets per shard"),
        "n_add_vars": Scalar((int,), default=0, minimum=0, doc="first n jet variables as X_add_vars"),
    }, default=None, nullable=True, doc="needs write"),
    "train": Block({
        "model": Scalar((dict,), default=lambda: {
            "body": {"widths": [64, 64], "activation": "relu"},
            "tail": {"objective": "multiclass"},
            "set": {"type": "deepsets", "phi_widths": [64, 64], "rho_widths": [64]},
        }, doc="ModelBuilder block: head, body, tail, set (deepsets | transformer | gnn | null)"),
        "positive": Scalar((str,), default=None, nullable=True,
                           doc="binary objective: the class the one output scores (null: the last class)"),
        "folds": ListOf(Scalar((int,), minimum=0), default=None, nullable=True,
                        doc="kFold: the folds to train (default: all write.n_folds)"),
        "epochs": Scalar((int,), default=5, minimum=1),
        "batch_size": Scalar((int,), default=1024, minimum=1),
        "data": Scalar((str,), default="h5", choices=("h5", "tfrecords"),
                       doc="what TrainFold reads: the umami train file or its TFRecords (tfrecords.splits has train)"),
        "sort_by_nodes": Scalar((bool,), default=False,
                                doc="SortByNodes: batches of jets of similar track count, padding trimmed"),
        "optimizer": Scalar((str,), default="ADAM", choices=("SGD", "ADAM", "ADAMW")),
        "optimizer_params": MapOf(Scalar((int, float, bool, list)), default=lambda: {"lr": 0.001}),
        "scheduler": Scalar((str,), default=None, nullable=True, choices=(None, "ExponentialLR", "CyclicLR", "OneCycle")),
        "scheduler_params": MapOf(Scalar((int, float, bool, str, list)), default=dict),
        "early_stopping": Scalar((int,), default=3, minimum=1, nullable=True, doc="patience in epochs"),
        "grad_clip": Scalar((float,), default=None, minimum=0.0, nullable=True),
        "device": Scalar((str,), default="auto", choices=("auto", "cpu", "cuda")),
        "continue_training": Scalar((bool,), default=False, doc="ContinueTraining: resume from the last checkpoint"),
        "loader_workers": Scalar((int,), default=0, minimum=0,
                                 doc="DataLoader processes reading batches (0: the training process)"),
        "tensorboard": Scalar((bool,), default=False,
                              doc="also log to train/fold_<k>/tensorboard (needs the tensorboard package)"),
        "distributed": DISTRIBUTED,
    }, default=None, nullable=True, check=_train_check, doc="needs write (umami format)"),
    "predict": Block({
        "ensemble": Scalar((str,), default="uniform", choices=("uniform", "reciprocal"),
                           doc="fold weights: equal, or 1 / best validation loss"),
        "discriminant": Block({
            "signal": Scalar((str,), doc="class the discriminant tags"),
            "fractions": MapOf(Scalar((float,), minimum=0.0), default=dict,
                               doc="background class -> fraction f in D = log(p_s / (sum f p_f + "
                                   "(1 - sum f) sum(p_other)))"),
            "working_points": ListOf(Scalar((float,), check=lambda v: None if 0.0 < v < 1.0 else
                                            f"expected a signal efficiency in (0, 1), got {v!r}"),
                                     default=lambda: [0.60, 0.70, 0.77, 0.85],
                                     doc="signal efficiencies at which each background's rejection is reported"),
        }, default=None, nullable=True,
            doc="a tagging discriminant and its rejections (classification only); null: none"),
        "reference": Block({
            "score": Scalar((str,), doc="a write.add_labels column, higher for rows more like the positive class "
                                        "(binary: train.positive; two-class multiclass: the discriminant's "
                                        "signal, else the last class)"),
            "name": Scalar((str,), default="reference", doc="the reference's name in the report and the ROC plot"),
        }, default=None, nullable=True,
            doc="a score the model is compared with (two classes): its pair AUC and, binary, its rejections at "
                "50, 80, 90% positive-class efficiency in every metrics block; null: none"),
        "calibration_bins": Scalar((int,), default=10, minimum=1,
                                   doc="equal-width bins of predicted probability in the calibration curves"),
        "regression_bins": Block({
            "variable": Scalar((str,), doc="a write.targets, write.add_labels or write.jets.variables name"),
            "bins": Scalar((list,), check=_bins, doc="[[low, high, n], ...]"),
        }, default=None, nullable=True,
            doc="regression: bias and resolution also in bins of this variable; null: overall only"),
        "samples": ListOf(Scalar((str,)), default=list,
                          doc="samples scored by the fold ensemble, never resampled or trained on"),
        "export": ListOf(Scalar((str,), choices=("torchscript", "onnx")), default=lambda: ["torchscript"],
                         doc="formats of the exported fold models; onnx needs the onnx extra"),
    }),
    "scheduler": Block({
        "workers": Scalar((int,), default=1, minimum=1),
        "local": Scalar((bool,), default=True, doc="false: use the central scheduler luigid at url (or host:port)"),
        "host": Scalar((str,), default="127.0.0.1", doc="where the central scheduler listens"),
        "port": Scalar((int,), default=8082, minimum=1, check=_port),
        "url": Scalar((str,), default=None, nullable=True, check=scheduler_url_problem,
                      doc="the central scheduler's address, e.g. http://luigi.example.org:8082 (null: http://host:port)"),
        "files_per_task": Scalar((int, str), default="auto", check=_files_per_task,
                                 doc="input files one BuildEvents, BuildGraphs or ApplySelections task runs: "
                                     "'auto' (one file per task up to 16 files of a sample, then "
                                     "ceil(files / 16)), or a number; outputs stay one per file, so changing it "
                                     "keeps every finished file"),
        "progress_interval": Scalar((float,), default=30.0, minimum=0.1,
                                    doc="seconds between progress lines of `tracerflow run` when its output is not "
                                        "a terminal"),
        "dir": Scalar((str,), default="~/.tracerflow/scheduler",
                      doc="where `tracerflow scheduler start` keeps luigid's state, task history and logs "
                          "(relative: to the directory tracerflow runs in)"),
    }),
    "batch": Block({
        "retries": Scalar((int,), default=2, minimum=0,
                          doc="times a failed job (exit code, killed, cancelled, timed out) is submitted again"),
        "poll_interval": Scalar((float,), default=0.5, minimum=0.1,
                                doc="seconds between two looks at a stage's jobs' exit files: how soon a finished "
                                    "job is noticed (the batch system itself is asked at most every 2 s a job)"),
        "parallel_jobs": Scalar((int,), default=None, minimum=1, nullable=True,
                                doc="most jobs of one stage and sample queued or running at once (null: no limit)"),
        "job": BATCH_JOB,
        "families": Block({name: Partial(BATCH_JOB, doc=f"job settings of {name} over batch.job")
                           for name in STAGE_NAMES},
                          doc="per task family, the batch.job keys that differ for its jobs"),
    }, doc="`tracerflow run --batch slurm|htcondor|lsf`: one job per task (per file group for the per-file "
           "stages); how a run is executed, so left out of config_ref and of every target's digest"),
    "background": BACKGROUND,
    "remote": Block({
        "retries": Scalar((int,), default=3, minimum=0,
                          doc="times a failed request to a server (stat, open, a read mid-file) is tried again, on "
                              "a new connection, before the task fails naming the URL"),
        "retry_wait": Scalar((float,), default=2.0, minimum=0.0,
                             doc="seconds before the first retry; the n-th waits n times as long"),
        "timeout": Scalar((float,), default=60.0, minimum=1.0,
                          doc="seconds a connection or a request may take before it counts as failed"),
    }, doc="how samples' root:// (XRootD) and http(s):// files are read (in place, through fsspec; the remote "
           "extra); how a run is executed, so left out of config_ref and of every target's digest"),
})

#: Keys that change how fast a result comes, not the result, left out of every digest (at any
#: depth). ``distributed`` is here so that a config without it keeps its digests; the world size,
#: which does change the batches each step sees, goes back into TrainFold's own digest when > 1.
#: The background generator's threads and checkpoint interval change no bit it makes.
PERFORMANCE_KEYS = ("chunk_size", "threads", "distributed", "nintra", "ninter", "checkpoint_every")
#: Keys added after caches existed whose null value means what their absence meant: left out of
#: every digest while null, so configs without them keep their digests.
ABSENT_WHEN_NULL = ("pixel_hits",)
