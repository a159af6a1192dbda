"""umami-preprocessing (UPP) as the anchor of the Resample benchmark.

The benchmark compares tracerflow's Resample stage with UPP, the ATLAS flavour-tagging
preprocessing package, on the same jets in the same run. UPP lives in its own virtualenv
(``benchmarks/.upp-venv``, git-ignored) because it pins its own numpy, h5py and plotting stack;
this module talks to it only through subprocesses, so the project's environment never imports it.

Installation (what :func:`install_upp` runs; about a minute on a 2-core machine, ~800 MB)::

    python3 -m venv benchmarks/.upp-venv
    benchmarks/.upp-venv/bin/python -m pip install -r benchmarks/upp_requirements.txt

``upp_requirements.txt`` pins ``umami-preprocessing==0.3.3`` and every package it pulled in.
UPP 0.3.3 does not depend on torch, so no torch is installed there. After installation
everything here works offline.

What a measurement is:

1. :func:`write_upp_inputs` writes the jets (pt in GeV, abs_eta, eta, flavour label 0/4/5, ...)
   into UPP's input format: an HDF5 file with a structured ``jets`` dataset named like the
   training-dataset-dumper output (``pt_btagJes`` in MeV, ``absEta_btagJes``, ``eta_btagJes``,
   ``HadronConeExclTruthLabelID``, ``eventNumber``) and optionally a structured ``tracks``
   dataset of shape (n_jets, n_tracks) with a ``valid`` field.
2. :func:`run_upp` writes a UPP config whose resampling block uses the same method, variables
   and bins (converted to UPP's units), with b-jets as the target, runs UPP's histogram stage
   (``--prep``, untimed) and then times UPP's resampling stage alone (``--resample``) as a
   subprocess of the UPP virtualenv.

Throughput is defined as input jets processed per second of the resampling step: the number of
jets UPP's resampling stream read from the inputs (every jet when ``n_jets_per_class`` is None),
divided by the wall time of the ``--resample`` subprocess. The same count divided by the time
spent inside UPP's ``Resampling.run`` (interpreter start, imports and config parsing excluded) is
reported alongside, with how much of it went to reading, selecting and writing output files.
Timing uses a monotonic performance counter; no outcome depends on the clock: UPP seeds its own
random generators, so the selected jets are the same on every run.

Run ``python benchmarks/upp_anchor.py`` for the stand-alone measurement on synthetic jets.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import h5py
import numpy as np
import yaml

from anchor_venv import interpreter, runs_in

HERE = Path(__file__).resolve().parent
UPP_VENV = HERE / ".upp-venv"
UPP_REQUIREMENTS = HERE / "upp_requirements.txt"
UPP_DISTRIBUTION = "umami-preprocessing"
NTUPLE_DIR = "ntuples"
RUNS_DIR = "runs"
DRIVER_FLAG = "--upp-driver"
MEV_PER_GEV = 1000.0
TARGET_CLASS = "bjets"
CLASS_OF_LABEL = {5: "bjets", 4: "cjets", 0: "ujets"}
INPUT_COMPRESSION = "lzf"
JET_CHUNK = 10_000
TRACK_CHUNK = 1_000
DEFAULT_BATCH_SIZE = 100_000

# tracerflow jet column -> (UPP/dumper field name, factor applied when writing)
JET_FIELDS: dict[str, tuple[str, float | None]] = {
    "pt": ("pt_btagJes", MEV_PER_GEV),
    "abs_eta": ("absEta_btagJes", None),
    "eta": ("eta_btagJes", None),
    "flavour": ("HadronConeExclTruthLabelID", None),
    "event_number": ("eventNumber", None),
}
LABEL_ALIASES = ("flavour", "label", "flavour_label", "HadronConeExclTruthLabelID")
LABEL_FIELD = "HadronConeExclTruthLabelID"

Method = Literal["pdf", "countup"]


def venv_python(venv: Path = UPP_VENV) -> Path:
    """The interpreter of the UPP virtualenv."""
    return interpreter(venv)


def upp_available(venv: Path = UPP_VENV) -> bool:
    """Whether UPP is installed in ``venv``, so the benchmark can say "n/a" instead of failing.

    Asks the venv's interpreter whether the ``upp`` package can be found, without importing it
    (importing UPP pulls in matplotlib and takes seconds).
    """
    return runs_in(venv, "import importlib.util, sys; sys.exit(importlib.util.find_spec('upp') is None)", timeout=60)


def upp_version(venv: Path = UPP_VENV) -> str:
    """Installed version of umami-preprocessing in ``venv``, from the package metadata."""
    probe = f"import importlib.metadata as m; print(m.version({UPP_DISTRIBUTION!r}))"
    done = subprocess.run(
        [str(venv_python(venv)), "-c", probe], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def install_upp(
    venv: Path = UPP_VENV, python: str = "python3", requirements: Path = UPP_REQUIREMENTS
) -> float:
    """Create the UPP virtualenv from the pinned requirements; returns the seconds it took.

    Runs ``python -m venv VENV`` and ``VENV/bin/python -m pip install -r upp_requirements.txt``.
    An existing venv is reused (pip then only checks the pins), so the call is idempotent.
    """
    start = time.perf_counter()
    if not venv_python(venv).exists():
        subprocess.run([python, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(venv_python(venv)), "-m", "pip", "install", "--quiet", "-r", str(requirements)],
        check=True,
    )
    return time.perf_counter() - start


def _label_key(jets: Mapping[str, np.ndarray]) -> str:
    for key in LABEL_ALIASES:
        if key in jets:
            return key
    raise KeyError(f"jets need a flavour label column, one of {LABEL_ALIASES}")


def _jet_array(jets: Mapping[str, np.ndarray], rows: np.ndarray) -> np.ndarray:
    """The structured ``jets`` array UPP reads, for the jets at ``rows``.

    Known tracerflow columns are renamed to the dumper's names and pt goes from GeV to MeV
    (UPP's bins, cuts and shipped configs are in MeV). Other numeric columns, such as a
    weight, are carried under their own names.
    """
    label_key = _label_key(jets)
    columns: dict[str, np.ndarray] = {}
    for key, values in jets.items():
        values = np.asarray(values)
        if not (np.issubdtype(values.dtype, np.number) or values.dtype == np.bool_):
            continue
        values = values[rows]
        if key == label_key:
            columns[LABEL_FIELD] = values.astype(np.int32)
            continue
        name, factor = JET_FIELDS.get(key, (key, None))
        if factor is not None:
            values = (values.astype(np.float64) * factor).astype(np.float32)
        columns[name] = values
    if "absEta_btagJes" not in columns and "eta_btagJes" in columns:
        columns["absEta_btagJes"] = np.abs(columns["eta_btagJes"]).astype(np.float32)
    if "eventNumber" not in columns:
        columns["eventNumber"] = rows.astype(np.int64)
    out = np.empty(len(rows), dtype=[(name, col.dtype) for name, col in columns.items()])
    for name, col in columns.items():
        out[name] = col
    return out


def _track_array(
    tracks: Mapping[str, np.ndarray], valid: np.ndarray, rows: np.ndarray
) -> np.ndarray:
    """The structured (n_jets, n_tracks) ``tracks`` array UPP reads, with its ``valid`` field."""
    shape = (len(rows), valid.shape[1])
    fields = [(name, np.asarray(col).dtype) for name, col in tracks.items() if name != "valid"]
    out = np.empty(shape, dtype=[*fields, ("valid", np.bool_)])
    for name, _ in fields:
        out[name] = np.asarray(tracks[name])[rows]
    out["valid"] = valid[rows]
    return out


def write_upp_inputs(
    out_dir: Path | str,
    jets: Mapping[str, np.ndarray],
    tracks: Mapping[str, np.ndarray] | None = None,
    valid: np.ndarray | None = None,
    *,
    compression: str | None = INPUT_COMPRESSION,
) -> list[Path]:
    """Write jets (and tracks) as a UPP input file under ``out_dir/ntuples``; returns the files.

    ``jets`` maps tracerflow column names to per-jet arrays: ``pt`` in GeV, ``abs_eta``, ``eta``,
    a flavour label (``flavour``, 5=b, 4=c, 0=light), optionally ``event_number`` and ``weight``;
    non-numeric columns (such as a sample name) are left out. ``tracks`` maps track variable
    names to (n_jets, n_tracks) arrays whose dtypes are kept (float16 stays float16 on disk) and
    ``valid`` marks the real tracks. The jets are written in input order, LZF-compressed like
    tracerflow's own files unless ``compression`` names another h5py filter (None: raw).

    All jets go into one file, which UPP reads as one pooled sample. Several files (one per
    sample, say) would each be read in a batch share proportional to their size, which leaves
    each file a small last batch; UPP's countup method fails on a batch that holds too few jets
    of a flavour (it draws from an empty selection), so one file with balanced batches (see
    :func:`run_upp`) is what makes every method run on any jet count. Existing files in
    ``out_dir/ntuples`` are removed first so a run never mixes inputs.
    """
    if (tracks is None) != (valid is None):
        raise ValueError("tracks and valid go together")
    ntuple_dir = Path(out_dir) / NTUPLE_DIR
    if ntuple_dir.exists():
        shutil.rmtree(ntuple_dir)
    ntuple_dir.mkdir(parents=True)
    rows = np.arange(len(np.asarray(jets[_label_key(jets)])))
    path = ntuple_dir / "jets.h5"
    with h5py.File(path, "w") as f:
        jet_rows = _jet_array(jets, rows)
        f.create_dataset(
            "jets",
            data=jet_rows,
            compression=compression,
            chunks=(max(min(JET_CHUNK, len(rows)), 1),),
        )
        del jet_rows
        if tracks is not None and valid is not None:
            track_rows = _track_array(tracks, np.asarray(valid, dtype=bool), rows)
            f.create_dataset(
                "tracks",
                data=track_rows,
                compression=compression,
                chunks=(max(min(TRACK_CHUNK, len(rows)), 1), track_rows.shape[1]),
            )
    return [path]


def balanced_batch_size(n_jets: int, batch_size: int) -> int:
    """The largest batch size not above ``batch_size`` that splits ``n_jets`` into equal batches.

    UPP reads its input in batches of ``batch_size`` jets; with a plain division the last batch
    can hold a handful of jets, on which the countup method fails. Splitting into the same
    number of batches of (nearly) equal size avoids that and changes nothing else.
    """
    n_batches = max(-(-n_jets // batch_size), 1)
    return max(-(-n_jets // n_batches), 1)


def _upp_variable(name: str) -> tuple[str, float]:
    """UPP field name of a resampling variable and the factor that converts its bin edges."""
    field, factor = JET_FIELDS.get(name, (name, None))
    return field, factor or 1.0


def _input_layout(files: Sequence[Path]) -> tuple[list[str], list[str], int | None, int]:
    """Jet fields, track fields, tracks per jet (None without tracks) and number of input jets."""
    with h5py.File(files[0], "r") as f:
        jet_fields = list(f["jets"].dtype.names)
        track_fields: list[str] = []
        n_tracks = None
        if "tracks" in f:
            track_fields = [n for n in f["tracks"].dtype.names if n != "valid"]
            n_tracks = int(f["tracks"].shape[1])
    n_jets = 0
    for path in files:
        with h5py.File(path, "r") as f:
            n_jets += len(f["jets"])
    return jet_fields, track_fields, n_tracks, n_jets


def upp_config(
    run_dir: Path,
    files: Sequence[Path],
    method: Method,
    variables: Mapping[str, Sequence[Sequence[float]]],
    *,
    n_jets_per_class: int | None,
    sampling_fraction: float,
    with_tracks: bool,
    batch_size: int,
    hist_jets: int,
    event_number_split: bool,
) -> dict[str, Any]:
    """The UPP config of one measurement, as the dict that is written to YAML.

    One region spanning the resampling range, one sample holding every input file (UPP allows a
    single target component per region, so one pooled sample is what resamples the same jets as
    a stage that sees them all at once), one component per flavour and b-jets as the target.
    ``n_jets_per_class=None`` becomes UPP's ``num_global_objects: -1``: keep every selected jet,
    so the resampling stream reads all inputs. The train split has no eventNumber cut unless
    ``event_number_split`` asks for UPP's usual 80/10/10 modulo split.
    """
    jet_fields, track_fields, _, _ = _input_layout(files)
    bins: dict[str, Any] = {}
    for name, ranges in variables.items():
        field, factor = _upp_variable(name)
        if field not in jet_fields:
            raise KeyError(f"resampling variable {name!r} ({field}) is not in the input jets")
        bins[field] = {
            "bins": [[float(lo) * factor, float(hi) * factor, int(n)] for lo, hi, n in ranges]
        }
    first, first_bins = next(iter(bins.items()))
    region_cuts = [
        [first, ">", first_bins["bins"][0][0]],
        [first, "<", first_bins["bins"][-1][1]],
    ]
    split_cuts: dict[str, list[list[Any]]] = {"train": [], "val": [], "test": []}
    if event_number_split:
        split_cuts = {
            "train": [["eventNumber", "%10<=", 7]],
            "val": [["eventNumber", "%10==", 8]],
            "test": [["eventNumber", "%10==", 9]],
        }
    variables_block: dict[str, Any] = {
        "jets": {
            "inputs": [f for f in jet_fields if f != LABEL_FIELD],
            "labels": [LABEL_FIELD],
        }
    }
    if with_tracks:
        if not track_fields:
            raise ValueError("with_tracks=True but the inputs have no tracks dataset")
        variables_block["tracks"] = {"inputs": track_fields}
    return {
        "variables": variables_block,
        "global_cuts": split_cuts,
        "components": [
            {
                "region": {"name": "inclusive", "cuts": region_cuts},
                "sample": {
                    "name": "pooled",
                    "pattern": [str(p) for p in files],
                    "equal_global_objects": False,
                },
                "classes": list(CLASS_OF_LABEL.values()),
                "num_global_objects": -1 if n_jets_per_class is None else int(n_jets_per_class),
            }
        ],
        "resampling": {
            "target": TARGET_CLASS,
            "method": method,
            "sampling_fraction": float(sampling_fraction),
            "variables": bins,
        },
        "global": {
            "global_name": "jets",
            "batch_size": int(batch_size),
            "num_global_objects_estimate": int(hist_jets),
            "base_dir": str(run_dir),
            "ntuple_dir": str(Path(files[0]).parent),
            "out_dir": "output",
        },
    }


def _elapsed_seconds(log: str) -> float | None:
    """UPP's own "Elapsed time: H:MM:SS" line (whole seconds), if it logged one."""
    match = re.search(r"Elapsed time: (\d+):(\d\d):(\d\d)", log)
    if match is None:
        return None
    hours, minutes, seconds = (int(g) for g in match.groups())
    return float(hours * 3600 + minutes * 60 + seconds)


def _last_line(done: subprocess.CompletedProcess[str]) -> str:
    """Last non-empty line a failed UPP command printed: usually the exception."""
    lines = [line.strip() for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    return lines[-1] if lines else f"exit code {done.returncode}"


def _count_output(run_dir: Path) -> int:
    """Jets UPP wrote into its per-component files of the train split."""
    total = 0
    for path in sorted((run_dir / "components" / "train").glob("*.h5")):
        with h5py.File(path, "r") as f:
            total += len(f["jets"])
    return total


def run_upp(
    work_dir: Path | str,
    method: Method,
    *,
    variables: Mapping[str, Sequence[Sequence[float]]],
    n_jets_per_class: int | None = None,
    sampling_fraction: float = 1.0,
    with_tracks: bool = False,
    max_tracks: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    hist_jets: int | None = None,
    event_number_split: bool = False,
    instrument: bool = True,
    venv: Path = UPP_VENV,
) -> dict[str, Any]:
    """Run UPP's resampling stage on the inputs in ``work_dir/ntuples`` and time it.

    ``variables`` maps tracerflow names (``pt`` in GeV, ``abs_eta``, ``eta``) to UPP-style bin
    lists ``[[low, high, n_bins], ...]``; pt edges are converted to MeV. ``n_jets_per_class``
    is the number of jets UPP writes per flavour (None: every selected jet, the whole input is
    read); ``sampling_fraction`` is how many jets UPP draws per non-target jet of each batch.
    ``with_tracks`` makes UPP read and write the tracks too; ``max_tracks``, when given, must
    equal the tracks per jet stored in the inputs (UPP carries the stored track dimension as it
    is and has no option to truncate it). ``hist_jets`` is how many jets per flavour UPP's
    ``--prep`` stage uses for the histograms the resampling draws from (all by default).
    ``batch_size`` is UPP's read batch, lowered to :func:`balanced_batch_size` so that no batch
    is a near-empty remainder.

    UPP's ``--prep`` runs first, untimed (``prep_seconds`` reports it). Then ``--resample``
    runs as a subprocess of the UPP virtualenv and its wall time is ``seconds``. With
    ``instrument`` it runs through this module's driver, which calls UPP's own command-line
    entry point after wrapping a timer around ``Resampling.run``, the batch stream, the
    selection functions and the output writer; the plain ``python -m upp.main`` command is used
    otherwise. Returns jets_in (jets the resampling stream read, after UPP's split and range
    cuts: all input jets inside the bins by default), jets_out (jets it wrote), seconds,
    jets_per_s = jets_in / seconds, upp_version, command, and with ``instrument`` the
    in-process breakdown (``stage_seconds``, ``stage_jets_per_s``, ``read_seconds``,
    ``select_seconds``, ``write_seconds``, ``check_seconds``, ``other_seconds``,
    ``import_seconds``, ``peak_rss_mib``). read covers UPP's batch stream (HDF5 reads, cuts,
    concatenation and shuffling), select the pdf/countup index choice, write the per-component
    output files (UPP's resampling step writes them itself, LZ4-compressed, every float as
    float32 so float16 track variables double in size), check UPP's
    availability estimate, other the rest (per-batch copies of the selected jets and tracks,
    bookkeeping).
    """
    work_dir = Path(work_dir).resolve()
    files = sorted((work_dir / NTUPLE_DIR).glob("*.h5"))
    if not files:
        raise FileNotFoundError(f"no UPP inputs in {work_dir / NTUPLE_DIR}; run write_upp_inputs")
    if method not in ("pdf", "countup"):
        raise ValueError(f"method must be 'pdf' or 'countup', not {method!r}")
    _, _, n_tracks, n_input = _input_layout(files)
    if with_tracks and max_tracks is not None and max_tracks != n_tracks:
        raise ValueError(f"inputs hold {n_tracks} tracks per jet, max_tracks={max_tracks}")

    tag = f"{method}_{'tracks' if with_tracks else 'jets'}"
    run_dir = work_dir / RUNS_DIR / tag
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    config = upp_config(
        run_dir,
        files,
        method,
        variables,
        n_jets_per_class=n_jets_per_class,
        sampling_fraction=sampling_fraction,
        with_tracks=with_tracks,
        batch_size=balanced_batch_size(n_input, batch_size),
        hist_jets=hist_jets or n_input,
        event_number_split=event_number_split,
    )
    config_path = run_dir / f"upp_{tag}.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))

    python = str(venv_python(venv))
    env = {**os.environ, "UPP_LOG_LEVEL": "INFO", "COLUMNS": "200"}
    prep = [python, "-m", "upp.main", "--config", str(config_path), "--prep", "--skip-sample-check"]
    start = time.perf_counter()
    prep_done = subprocess.run(prep, cwd=run_dir, env=env, capture_output=True, text=True)
    prep_seconds = time.perf_counter() - start
    (run_dir / "prep.log").write_text(prep_done.stdout + prep_done.stderr)
    if prep_done.returncode != 0:
        raise RuntimeError(f"UPP --prep failed ({_last_line(prep_done)}), see {run_dir}/prep.log")

    timings_path = run_dir / "timings.json"
    upp_args = ["--config", str(config_path), "--resample"]
    if instrument:
        command = [python, str(Path(__file__).resolve()), DRIVER_FLAG, str(timings_path), *upp_args]
    else:
        command = [python, "-m", "upp.main", *upp_args]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=run_dir, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    log = done.stdout + done.stderr
    (run_dir / "resample.log").write_text(log)
    if done.returncode != 0:
        raise RuntimeError(
            f"UPP --resample failed ({_last_line(done)}), see {run_dir}/resample.log"
        )

    result: dict[str, Any] = {
        "method": method,
        "with_tracks": with_tracks,
        "tracks_per_jet": n_tracks if with_tracks else 0,
        "jets_in_files": n_input,
        "jets_in": n_input,
        "jets_out": _count_output(run_dir),
        "seconds": seconds,
        "prep_seconds": prep_seconds,
        "upp_logged_elapsed_s": _elapsed_seconds(log),
        "upp_version": upp_version(venv),
        "command": command,
        "config": str(config_path),
    }
    if instrument:
        timings = json.loads(timings_path.read_text())
        result["jets_in"] = timings["jets_streamed"]
        result.update(
            {
                "stage_seconds": timings["resample_seconds"],
                "stage_jets_per_s": timings["jets_streamed"] / timings["resample_seconds"],
                "read_seconds": timings["read_seconds"],
                "select_seconds": timings["select_seconds"],
                "write_seconds": timings["write_seconds"],
                "check_seconds": timings["check_seconds"],
                "other_seconds": timings["resample_seconds"]
                - timings["read_seconds"]
                - timings["select_seconds"]
                - timings["write_seconds"]
                - timings["check_seconds"],
                "import_seconds": timings["import_seconds"],
                "peak_rss_mib": timings["peak_rss_mib"],
            }
        )
    result["jets_per_s"] = result["jets_in"] / seconds
    return result


def _driver(timings_path: str, upp_args: list[str]) -> None:
    """Run UPP's command-line entry point with timers around the parts of its resampling.

    Runs inside the UPP virtualenv. The wrappers only measure and count: each calls the
    original UPP or ftag function with the same arguments and returns its result unchanged.
    """
    start = time.perf_counter()
    import ftag.hdf5
    import upp.classes.components
    import upp.main
    import upp.stages.resampling

    import_seconds = time.perf_counter() - start
    totals = {"resample": 0.0, "read": 0.0, "select": 0.0, "write": 0.0, "check": 0.0}
    counts = {"jets_streamed": 0}

    def timed(key: str, func: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return func(*args, **kwargs)
            finally:
                totals[key] += time.perf_counter() - t0

        return wrapper

    def counted(stream: Iterator[dict[str, np.ndarray]], name: str) -> Iterator[dict[str, Any]]:
        while True:
            t0 = time.perf_counter()
            try:
                batch = next(stream)
            except StopIteration:
                totals["read"] += time.perf_counter() - t0
                return
            totals["read"] += time.perf_counter() - t0
            counts["jets_streamed"] += len(batch[name])
            yield batch

    resampling = upp.stages.resampling.Resampling
    original_sample = resampling.sample

    def sample(self: Any, components: Any, stream: Any, *args: Any, **kwargs: Any) -> Any:
        return original_sample(self, components, counted(stream, self.global_name), *args, **kwargs)

    resampling.sample = sample
    resampling.run = timed("resample", resampling.run)
    resampling.pdf_select_func = timed("select", resampling.pdf_select_func)
    resampling.countup_select_func = timed("select", resampling.countup_select_func)
    component = upp.classes.components.Component
    component.check_num_global_objects = timed("check", component.check_num_global_objects)
    writer = ftag.hdf5.H5Writer
    writer.write = timed("write", writer.write)
    writer.close = timed("write", writer.close)
    component.setup_writer = timed("write", component.setup_writer)

    upp.main.main(upp_args)

    status = Path("/proc/self/status").read_text()
    match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    peak_kib = float(match.group(1)) if match else float("nan")
    Path(timings_path).write_text(
        json.dumps(
            {
                "import_seconds": import_seconds,
                "resample_seconds": totals["resample"],
                "read_seconds": totals["read"],
                "select_seconds": totals["select"],
                "write_seconds": totals["write"],
                "check_seconds": totals["check"],
                "jets_streamed": counts["jets_streamed"],
                "peak_rss_mib": peak_kib / 1024.0,
            }
        )
    )


def synthetic_jets(
    n_jets: int, n_tracks: int = 40, seed: int = 7
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], np.ndarray]:
    """Toy jets for the stand-alone measurement: jets, tracks and the valid mask.

    Three flavours (b 25%, c 15%, light 60%) in two samples (ttbar 60%, zprime 40%), pt between
    20 and 1000 GeV from truncated exponentials whose slope depends on flavour and sample (so
    the flavours' spectra differ and the resampling has work to do), |eta| uniform below 2.5.
    The sample column is informational: :func:`write_upp_inputs` pools the jets.
    Tracks: ``n_tracks`` slots of ten variables, six float32 and four float16, with a
    flavour-dependent number of valid ones.
    """
    rng = np.random.default_rng(seed)
    flavour = rng.choice(np.array([5, 4, 0], dtype=np.int32), size=n_jets, p=[0.25, 0.15, 0.6])
    is_zprime = rng.random(n_jets) < 0.4
    scale = np.select([flavour == 5, flavour == 4], [120.0, 90.0], 60.0) * np.where(is_zprime, 4, 1)
    lo, hi = 20.0, 1000.0
    u = rng.random(n_jets)
    pt = lo - scale * np.log1p(-u * (1.0 - np.exp(-(hi - lo) / scale)))
    eta = rng.uniform(-2.5, 2.5, n_jets).astype(np.float32)
    jets = {
        "pt": pt.astype(np.float32),
        "eta": eta,
        "abs_eta": np.abs(eta),
        "flavour": flavour,
        "weight": np.ones(n_jets, dtype=np.float32),
        "sample": np.where(is_zprime, "zprime", "ttbar"),
    }
    mean = np.select([flavour == 5, flavour == 4], [12.0, 9.0], 6.0)
    n_valid = np.minimum(rng.poisson(mean), n_tracks)
    valid = np.arange(n_tracks)[None, :] < n_valid[:, None]
    track_vars = {
        "d0": np.float32,
        "z0SinTheta": np.float32,
        "dphi": np.float16,
        "deta": np.float16,
        "qOverP": np.float32,
        "IP3D_signed_d0_significance": np.float32,
        "IP3D_signed_z0_significance": np.float32,
        "phiUncertainty": np.float16,
        "thetaUncertainty": np.float16,
        "qOverPUncertainty": np.float32,
    }
    tracks: dict[str, np.ndarray] = {}
    for name, dtype in track_vars.items():
        values = rng.standard_normal((n_jets, n_tracks), dtype=np.float32).astype(dtype)
        values[~valid] = 0
        tracks[name] = values
    return jets, tracks, valid


MAIN_VARIABLES = {"pt": [[20, 250, 50], [250, 1000, 50]], "abs_eta": [[0, 2.5, 20]]}


def main(argv: Sequence[str] | None = None) -> int:
    """Measure UPP's resampling (pdf and countup, with and without tracks) on synthetic jets."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jets", type=int, default=1_000_000)
    parser.add_argument("--tracks", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    parser.add_argument("--work-dir", type=Path, default=HERE / "work" / "upp")
    parser.add_argument("--methods", nargs="+", default=["pdf", "countup"])
    parser.add_argument("--no-tracks", action="store_true", help="skip the runs with tracks")
    parser.add_argument(
        "--input-compression", default=INPUT_COMPRESSION, help="h5py filter of the inputs, or none"
    )
    parser.add_argument("--install", action="store_true", help="create the UPP venv first")
    args = parser.parse_args(argv)

    if args.install:
        print(f"installed UPP venv in {install_upp():.1f} s")
    if not upp_available():
        print("n/a (UPP not installed): run with --install, or see this module's docstring")
        return 0

    start = time.perf_counter()
    jets, tracks, valid = synthetic_jets(args.jets, args.tracks)
    compression = None if args.input_compression == "none" else args.input_compression
    files = write_upp_inputs(args.work_dir, jets, tracks, valid, compression=compression)
    del jets, tracks, valid
    print(f"wrote {len(files)} UPP input files in {time.perf_counter() - start:.1f} s")

    results = []
    for with_tracks in (False,) if args.no_tracks else (False, True):
        for method in args.methods:
            result = run_upp(
                args.work_dir,
                method,
                variables=MAIN_VARIABLES,
                with_tracks=with_tracks,
                max_tracks=args.tracks if with_tracks else None,
                batch_size=args.batch_size,
            )
            results.append(result)
            print(
                f"UPP {result['upp_version']} {method:8s} tracks={result['tracks_per_jet']:2d}: "
                f"{result['jets_in']:,} in -> {result['jets_out']:,} out, "
                f"{result['seconds']:.1f} s ({result['jets_per_s']:,.0f} jets/s); "
                f"in-process {result['stage_seconds']:.1f} s "
                f"({result['stage_jets_per_s']:,.0f} jets/s): read {result['read_seconds']:.1f} s, "
                f"select {result['select_seconds']:.1f} s, write {result['write_seconds']:.1f} s, "
                f"other {result['other_seconds']:.1f} s; prep {result['prep_seconds']:.1f} s; "
                f"peak RSS {result['peak_rss_mib']:,.0f} MiB"
            )
    (args.work_dir / "results.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == DRIVER_FLAG:
        _driver(sys.argv[2], sys.argv[3:])
    else:
        sys.exit(main())
