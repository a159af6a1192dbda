"""The separate virtualenvs the anchor tools (UPP, LUMIN) run in: their interpreter, and whether code runs there."""
from __future__ import annotations

import subprocess
from pathlib import Path


def interpreter(venv: Path) -> Path:
    """The Python interpreter of ``venv``."""
    return venv / "bin" / "python"


def runs_in(venv: Path, code: str, timeout: float) -> bool:
    """Whether ``python -c code`` exits 0 in ``venv`` (False when the venv is missing or the probe fails)."""
    python = interpreter(venv)
    if not python.exists():
        return False
    try:
        done = subprocess.run([str(python), "-c", code], capture_output=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0
