"""SIGKILL at chosen moments of a small default pipeline, rerun after each kill: the outputs end byte for
byte as those of a run that was never interrupted, and nothing a killed writer left stays behind.

One directory is killed and rerun in a chain (each rerun is killed at the next moment, then one run goes
through) while another gets an uninterrupted run. Every run is ``tracerflow.workflows.cli.main`` in a process
of its own process group, forked from a server process that imported tracerflow once (so a run takes
seconds, not an import's worth more), and is killed with SIGKILL to its whole group at one of two kinds of
moments:

* seen from outside, polling the output tree: a temporary file of the running process appears (mid-write;
  the kill counts only if the file is still there after it), a target completes, a fold's ``epochs.csv``
  gains its second row;
* inside the run, at the instant it is about to rename a finished temporary file into place (an audit
  hook on ``os.rename``/``os.replace`` kills the group, for writes too short to catch from outside).

Each moment must be hit where it is meant (a write moment missed by a kill that came too late is tried
again in the next run, at most :data:`ATTEMPTS` times); a moment that never arrives fails the test.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tracerflow.io.atomic import TEMPORARY

from .helpers import SMALL, output_root

ARGS = (*SMALL, "--set", "train.epochs=3")
ROOT = Path(__file__).resolve().parents[2]
ATTEMPTS = 3
RUN_TIMEOUT = 300.0
POLL = 0.002
VOLATILE = ("*.timings.csv", "*.log")


@dataclass(frozen=True)
class Moment:
    """A moment to kill a run at; ``path`` is a regular expression of paths below the output root.

    ``kind``: ``publish`` (inside the run: it is about to rename a temporary file matching ``path``
    into place), ``write`` (from outside: a temporary file of the running process matching ``path``
    exists, ``{pid}`` standing for its process id), ``count`` (from outside: ``count`` files match
    ``path``; fewer did when the run started) or ``rows`` (from outside: a CSV file matching ``path``
    has ``count`` rows). ``show``: check what ``tracerflow show`` says right after the kill.
    """

    label: str
    kind: str
    path: str
    count: int = 1
    show: bool = False


MOMENTS = (
    Moment("GenerateSample: mid-write of a toy ROOT file", "write", r"samples/ttbar/\.ttbar_0001\.root\.tmp-{pid}-\d+"),
    Moment("GenerateSample: publishing a sample's manifest", "publish", r"samples/\w+/\.manifest\.h5\.tmp-\d+"),
    Moment("BuildEvents: mid-write of an events file", "write", r"events/\w+/\.\w+\.h5\.tmp-{pid}", show=True),
    Moment("BuildGraphs: publishing a graphs file", "publish", r"graphs/\w+/\.\w+\.h5\.tmp-\d+"),
    Moment("ApplySelections: publishing a selections file", "publish", r"selections/\w+/\.\w+\.h5\.tmp-\d+"),
    Moment("per-file stages: the fourth selections file is done", "count", r"selections/\w+/\w+_\d{4}\.h5", count=4),
    Moment("Resample: publishing a split's report", "publish", r"resample/\.report_\w+\.json\.tmp-\d+"),
    Moment("Resample: publishing a resampling plot", "publish", r"resample/plots/\.resample_\w+\.png\.tmp-\d+"),
    Moment("Resample: mid-write of a resampled split (scratch arrays or file)", "write",
           r"resample/\.\w+\.h5\.tmp-{pid}(-\d+)?"),
    Moment("WriteTrainSample: mid-write of a umami train file", "write", r"train_sample/\.[a-z]+\.h5\.tmp-{pid}"),
    Moment("WriteTrainSample: publishing the scale dict", "publish", r"train_sample/\.scale_dict\.json\.tmp-\d+"),
    Moment("WriteTrainSample: publishing a LUMIN fold file", "publish", r"train_sample/\.\w+_folds\.h5\.tmp-\d+"),
    Moment("ConvertTFRecords: publishing a shard", "publish", r"tfrecords/\w+/\.shard_\d+\.tfrecord\.tmp-\d+"),
    Moment("ConvertTFRecords: publishing metadata.json", "publish", r"tfrecords/\w+/\.metadata\.json\.tmp-\d+"),
    Moment("TrainFold: publishing the best weights after the first epoch", "publish",
           r"train/fold_\d/\.best\.pt\.tmp-\d+"),
    Moment("TrainFold: publishing the checkpoint at an epoch's end", "publish", r"train/fold_\d/\.last\.pt\.tmp-\d+"),
    Moment("TrainFold: between epochs (epochs.csv has its second row)", "rows", r"train/fold_\d/epochs\.csv", count=2),
    Moment("TrainFold: publishing a model file", "publish", r"train/fold_\d/\.model\.h5\.tmp-\d+", show=True),
    Moment("TrainFold: the third fold's model is done", "count", r"train/fold_\d/model\.h5", count=3),
    Moment("Predict: publishing an exported model", "publish", r"predict/models/\.fold_\d\.torchscript\.pt\.tmp-\d+"),
    Moment("Predict: publishing an ensemble's predictions file", "publish", r"predict/\.(val|test)\.h5\.tmp-\d+"),
    Moment("Predict: publishing the out-of-fold predictions (its target)", "publish",
           r"predict/\.out_of_fold\.h5\.tmp-\d+", show=True),
)


# ------------------------------------------------------------------ the server runs are forked from

def serve() -> None:
    """Read one JSON request a line: ``{"run": {...}}`` forks a run and answers its pid; ``{"wait": pid}``
    answers its exit code once it ends (negative: the signal that ended it)."""
    from tracerflow.workflows.cli import main

    for line in sys.stdin:
        request = json.loads(line)
        if "wait" in request:
            _, status = os.waitpid(request["wait"], 0)
            answer = {"returncode": os.waitstatus_to_exitcode(status)}
        else:
            pid = os.fork()
            if pid == 0:
                _child(main, **request["run"])
            try:
                os.setpgid(pid, pid)
            except (PermissionError, ProcessLookupError):  # the child has done it (or has exec'd)
                pass
            answer = {"pid": pid}
        print(json.dumps(answer), flush=True)


def _child(main, argv: list[str], cwd: str, output: str, publish: str = "", root: str = "", marker: str = ""):
    code = 70
    try:
        os.setpgid(0, 0)
        os.chdir(cwd)
        out = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        os.dup2(out, 1)
        os.dup2(out, 2)
        if publish:
            _kill_when_publishing(re.compile(publish), root, marker)
        code = main(argv)
    except BaseException:  # noqa: BLE001 - reported in the run's output, which the test shows
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _kill_when_publishing(pattern: re.Pattern, root: str, marker: str) -> None:
    """SIGKILL this process group as it is about to rename a temporary file matching ``pattern``
    (relative to ``root``) into place, after noting the file in ``marker``."""
    prefix = os.path.abspath(root) + os.sep

    def hook(event: str, args: tuple) -> None:
        if event != "os.rename":
            return
        source = os.path.abspath(os.fsdecode(args[0]))
        if source.startswith(prefix) and pattern.fullmatch(source[len(prefix):]):
            Path(marker).write_text(source[len(prefix):])
            os.killpg(0, signal.SIGKILL)

    sys.addaudithook(hook)


class Server:
    """The test's side of :func:`serve`."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", "from tests.workflow.test_kill_harness import serve; serve()"],
                                     cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     env={**os.environ, "PYTHONHASHSEED": "0"})
        self.buffer = b""
        self.current: Run | None = None

    def ask(self, request: dict) -> None:
        self.proc.stdin.write(json.dumps(request).encode() + b"\n")
        self.proc.stdin.flush()

    def answer(self, timeout: float) -> dict | None:
        """The next answer, or None when none came within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left < 0 or not select.select([self.proc.stdout], [], [], left)[0]:
                return None
            chunk = os.read(self.proc.stdout.fileno(), 4096)
            if not chunk:
                raise AssertionError(f"the run server ended (exit code {self.proc.wait()})")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line)

    def start(self, *argv: str, cwd: Path, **kill) -> "Run":
        output = cwd / f"run-{time.monotonic_ns()}.out"
        self.ask({"run": {"argv": list(argv), "cwd": str(cwd), "output": str(output), **kill}})
        pid = self.answer(RUN_TIMEOUT)["pid"]
        self.ask({"wait": pid})
        self.current = Run(self, pid, output)
        return self.current

    def close(self) -> None:
        """End the server, killing a run still going (a failed check leaves one)."""
        if self.current is not None and not self.current.ended():
            self.current.kill()
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise


@dataclass
class Run:
    server: Server
    pid: int
    output: Path
    returncode: int | None = None

    def ended(self, timeout: float = 0.0) -> bool:
        if self.returncode is None:
            answer = self.server.answer(timeout)
            if answer is not None:
                self.returncode = answer["returncode"]
        return self.returncode is not None

    def kill(self) -> None:
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.ended(timeout=60)

    def text(self) -> str:
        return self.output.read_text(errors="replace")[-3000:]


# ------------------------------------------------------------------ moments

def _matching(root: Path, pattern: str) -> list[Path]:
    """Paths below ``root`` whose relative path matches ``pattern``, looking only where it can match."""
    parts = pattern.split("/")
    found = [root]
    for depth, part in enumerate(parts):
        regex = re.compile(part)
        found = [p / e.name for p in found for e in _scan(p) if regex.fullmatch(e.name)
                 and (depth == len(parts) - 1 or e.is_dir(follow_symlinks=False))]
    return found


def _scan(directory: Path) -> list[os.DirEntry]:
    try:
        with os.scandir(directory) as entries:
            return list(entries)
    except (FileNotFoundError, NotADirectoryError):
        return []


def _rows(path: Path) -> int:
    try:
        return max(0, len(path.read_text().splitlines()) - 1)
    except FileNotFoundError:
        return 0


def _seen(moment: Moment, root: Path, pid: int) -> list[str]:
    """What of ``moment`` is there now (relative paths; for ``rows`` the CSV files with enough rows)."""
    found = _matching(root, moment.path.replace("{pid}", str(pid)))
    if moment.kind == "rows":
        return sorted(f"{p.relative_to(root).as_posix()} ({_rows(p)} rows)" for p in found if _rows(p) >= moment.count)
    return sorted(p.relative_to(root).as_posix() for p in found)


def _arrived(moment: Moment, seen: list[str]) -> bool:
    return len(seen) >= moment.count if moment.kind == "count" else bool(seen)


@dataclass
class Kill:
    moment: Moment
    attempt: int
    hit: bool
    where: list[str]
    leftovers: list[str]
    seconds: float


def _kill_at(server: Server, work: Path, moment: Moment, attempt: int) -> Kill:
    """Run in ``work`` until ``moment``, kill, and tell whether the kill hit it.

    A write moment is hit when the temporary file is still there after the kill, a count or rows
    moment when nothing more of it is there after the kill than when it arrived (so the kill came
    right after it), a publish moment when the file the run was about to rename is there unrenamed.
    """
    root = output_root(work)
    marker = work / "published.txt"
    marker.unlink(missing_ok=True)
    if moment.kind in ("count", "rows") and _arrived(moment, _seen(moment, root, 0)):
        pytest.fail(f"{moment.label}: already past when the run started; the moments are out of order")
    kill = {"publish": moment.path, "root": str(root), "marker": str(marker)} if moment.kind == "publish" else {}
    started = time.monotonic()
    run = server.start("run", *ARGS, cwd=work, **kill)
    deadline = started + RUN_TIMEOUT
    seen: list[str] = []
    while not run.ended(timeout=0.2 if moment.kind == "publish" else 0.0):
        if moment.kind != "publish":
            seen = _seen(moment, root, run.pid)
            if _arrived(moment, seen):
                run.kill()
                break
        if time.monotonic() > deadline:
            run.kill()
            pytest.fail(f"{moment.label}: not reached within {RUN_TIMEOUT:.0f} s")
        time.sleep(POLL)
    if run.returncode != -signal.SIGKILL:
        pytest.fail(f"{moment.label}: never arrived; the run ended with exit code {run.returncode}:\n{run.text()}")
    after = _seen(moment, root, run.pid)
    if moment.kind == "publish":
        where = [marker.read_text()] if marker.exists() else []
        hit = bool(where) and (root / where[0]).exists()
    elif moment.kind == "write":
        where, hit = after, bool(after)
    else:
        where, hit = seen, after == seen
    leftovers = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if TEMPORARY.match(p.name))
    return Kill(moment, attempt, hit, where, leftovers, time.monotonic() - started)


# ------------------------------------------------------------------ checks

def _digests(root: Path) -> dict[str, str]:
    out = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if not any(path.match(pattern) for pattern in VOLATILE):
            out[path.relative_to(root).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def _check_show(server: Server, work: Path, kill: Kill) -> None:
    """``tracerflow show`` right after a kill: no target it calls done is missing or unfinished, and the
    target whose write was cut is not done."""
    from tracerflow.io.h5target import read_root_attrs

    run = server.start("show", *ARGS, cwd=work)
    assert run.ended(timeout=RUN_TIMEOUT) and run.returncode == 0, run.text()
    states: dict[str, str] = {}
    for line in run.output.read_text().splitlines():
        match = re.match(r"\s*\[(?P<state>[^\]]+)\] .* -> (?P<path>\S+)$", line)
        if match:
            states[match["path"]] = match["state"]
    root = output_root(work)
    for path, state in states.items():
        if state == "done":
            assert Path(path).is_file(), f"show calls {path} done"
            if path.endswith(".h5"):
                assert read_root_attrs(path)["complete"], f"show calls the unfinished {path} done"
    for temporary in kill.where:
        final = root / Path(temporary).parent / TEMPORARY.match(Path(temporary).name)["name"]
        assert states.get(str(final), "done") != "done", f"after {kill.moment.label}: show calls {final} done"


@pytest.mark.slow
def test_killed_runs_resume_to_the_outputs_of_an_uninterrupted_run(tmp_path):
    chain, clean = tmp_path / "chain", tmp_path / "clean"
    chain.mkdir()
    clean.mkdir()
    started = time.monotonic()
    servers = [Server(), Server()]
    try:
        whole = servers[1].start("run", *ARGS, cwd=clean)  # meanwhile, the chain of kills
        kills: list[Kill] = []
        for moment in MOMENTS:
            for attempt in range(1, ATTEMPTS + 1):
                kills.append(_kill_at(servers[0], chain, moment, attempt))
                if kills[-1].hit:
                    break
            assert kills[-1].hit, f"{moment.label}: missed {ATTEMPTS} times: {kills[-ATTEMPTS:]}"
            if moment.show:
                _check_show(servers[0], chain, kills[-1])
        resumed = servers[0].start("run", *ARGS, cwd=chain)
        assert resumed.ended(timeout=RUN_TIMEOUT) and resumed.returncode == 0, resumed.text()
        assert whole.ended(timeout=RUN_TIMEOUT) and whole.returncode == 0, whole.text()
    finally:
        for server in servers:
            server.close()
    report = "\n".join(f"{k.seconds:5.1f} s  {k.moment.label} (attempt {k.attempt}): {'hit' if k.hit else 'missed'}, "
                       f"{', '.join(k.where)}" for k in kills)
    print(f"\n{len(kills)} kills, {time.monotonic() - started:.0f} s in all\n{report}")
    assert sum(k.hit for k in kills) == len(MOMENTS) >= 20

    root = output_root(chain)
    assert not [p for p in root.rglob("*") if TEMPORARY.match(p.name)], "temporary files left behind"
    log = (chain / "tracerflow-output" / "logs" / "toy-ftag.log").read_text()
    cleared = set(re.findall(r"removed (\S+), left by an interrupted write", log))
    left = {str(root / path) for k in kills for path in k.leftovers}
    assert left and left <= cleared, f"removed without a log line: {sorted(left - cleared)}"

    resumed_digests, clean_digests = _digests(root), _digests(output_root(clean))
    assert resumed_digests.keys() == clean_digests.keys()
    differ = sorted(name for name in clean_digests if resumed_digests[name] != clean_digests[name])
    assert not differ, f"outputs that differ from the uninterrupted run's: {differ}"
