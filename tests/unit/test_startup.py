"""Start-up: the command and the task classes (what ``luigi --module tracerflow.workflows`` and
every task's process import) load no machine-learning or compiler library; a stage imports
what it needs when it runs."""
from __future__ import annotations

import subprocess
import sys

HEAVY = ("torch", "numba", "tensorflow", "scipy", "matplotlib")


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
