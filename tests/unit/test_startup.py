"""Start-up: the command and the task classes (what ``luigi --module tracerflow.workflows`` and
every task's process import) load no machine-learning or compiler library, nor the batch layer
(law, which patches luigi as it is imported: only ``tracerflow run --batch`` loads it); a stage
imports what it needs when it runs."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


HEAVY = ("torch", "numba", "tensorflow", "scipy", "matplotlib", "law")


def test_the_command_and_every_task_class_import_no_heavy_library():
    code = ("import sys, tracerflow.workflows.cli, tracerflow.tasks; "
            f"print([m for m in {HEAVY!r} if m in sys.modules])")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_help_answers_without_them():
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "tracerflow.workflows.cli", "--help"],
                          capture_output=True, text=True)
    assert proc.returncode == 0 and "usage: tracerflow" in proc.stdout
    imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    assert not imported & set(HEAVY)


# Runs in a fresh interpreter: records, for each heavy library, the project's frames that first
# imported it, then loads every config and runs ``tracerflow validate`` or ``tracerflow show`` on
# each (the DAG is built and its targets checked; nothing runs).
PROBE = r"""
import contextlib, io, json, sys, traceback

heavy, command, configs = json.loads(sys.argv[1])
outside = tuple(p for p in {sys.prefix, sys.base_prefix, sys.exec_prefix} if p) + ("<",)
first = {}


class Watch:
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if top in heavy and top not in first:
            frames = [f"{f.filename}:{f.lineno} ({f.name})" for f in traceback.extract_stack()[:-1]
                      if not f.filename.startswith(outside)]
            first[top] = [f"import {name}", *frames]
        return None


sys.meta_path.insert(0, Watch())
from tracerflow.config import load_config
from tracerflow.workflows import cli

codes = {}
for config in configs:
    if command == "validate":
        load_config(config or None)
    with contextlib.redirect_stdout(io.StringIO()):
        codes[config or "<embedded default>"] = cli.main([command, "--config", config] if config else [command])
print(json.dumps({"codes": codes, "first": first, "loaded": [m for m in heavy if m in sys.modules]}))
"""


def _shipped_configs() -> list[str]:
    """The embedded default and every YAML config under the shipped ``configs`` directory."""
    from importlib import resources

    root = Path(str(resources.files("tracerflow.configs")))
    return ["", *sorted(str(p) for p in root.rglob("*.yaml"))]


def _probe(command: str, cwd: Path) -> tuple[dict, dict, list]:
    args = json.dumps([list(HEAVY), command, _shipped_configs()])
    proc = subprocess.run([sys.executable, "-c", PROBE, args], capture_output=True, text=True, cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return result["codes"], result["first"], result["loaded"]


def _chains(first: dict) -> str:
    return "\n".join(f"{module}:\n  " + "\n  ".join(frames) for module, frames in first.items())


def test_every_shipped_config_validates_without_them(tmp_path):
    codes, first, loaded = _probe("validate", tmp_path)
    assert len(codes) >= 3 and set(codes.values()) == {0}, codes
    assert not first and not loaded, _chains(first)


def test_show_builds_the_dag_of_every_shipped_config_without_them(tmp_path):
    codes, first, loaded = _probe("show", tmp_path)
    assert len(codes) >= 3 and set(codes.values()) == {0}, codes
    assert not list(tmp_path.iterdir()), "show only reads"
    assert not first and not loaded, _chains(first)
