"""Running the tracerflow command and reading its outputs in workflow tests."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np

SMALL = ("--set", "samples.ttbar.generate.n_jets=3000", "--set", "samples.zprime.generate.n_jets=2000",
         "--set", "samples.ttbar.generate.events_per_file=200", "--set", "samples.zprime.generate.events_per_file=300")


def tracerflow(*args: str, cwd: Path, check: bool = False, hash_seed: str = "0",
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``tracerflow ARGS`` as a user would, in ``cwd`` (Python's string hash seed ``hash_seed``),
    with this process's environment and ``env`` (variables added or replaced)."""
    cmd = [str(Path(sys.executable).with_name("tracerflow")), *args]
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **(env or {}), "PYTHONHASHSEED": hash_seed})
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def datasets(path: Path) -> dict[str, np.ndarray]:
    """Every dataset of an HDF5 file, by path."""
    out: dict[str, np.ndarray] = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return out


def output_root(work: Path, project: str = "toy-ftag") -> Path:
    """Where ``tracerflow run`` in ``work`` puts the targets of ``project`` (the default output_dir)."""
    return work / "tracerflow-output" / project


def file_mtimes(root: Path) -> dict[Path, int]:
    """Modification time of every file below ``root`` (hidden temporary files included)."""
    return {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


def config_error(stderr: str, source: str) -> tuple[str, str]:
    """The key path and message of the config error ``tracerflow`` printed for ``source``.

    ``source`` is what the message starts with: the config file, or ``<embedded default> (with
    --set ...)``, which repeats the overrides, so a key is only found where the error names it.
    """
    prefix = f"tracerflow: config error: {source}: "
    line = next((line for line in stderr.splitlines() if line.startswith(prefix)), None)
    if line is None:
        raise AssertionError(f"no config error for {source!r} in:\n{stderr}")
    key, _, message = line[len(prefix):].partition(": ")
    return key, message
