"""Faults of the file system are errors, never crashes.

The end-to-end cases (marked slow) run the command on a copy of one small analysis made once
(``made``, up to WriteTrainSample) and check: exit code 1, one block naming the path and the cause,
no traceback, no segmentation fault, no temporary file left, and every file that was there before
byte-identical:

- a full disk, from a small tmpfs mounted as the output directory (needs root, as here and in CI):
  inside WriteTrainSample, once in the train file (space reserved for the placed writes of the
  compiled engine) and once in the fold file (HDF5's own writes, where a failed write used to
  crash libhdf5), and inside BuildEvents;
- a read-only output directory (the tmpfs remounted read-only; root ignores permission bits) and an
  immutable stage directory (``chattr +i``), refused before any task runs and at run time;
- an output_dir that is a file, refused before any task runs;
- corrupt HDF5 targets (garbage, truncated): ``show`` says unreadable and a run rebuilds just them;
- a corrupt ``last.pt`` with train.continue_training: an error naming it.

Fast cases, on the code itself: HDF5 writes the disk refuses (and handles dropped meanwhile, which
crashed libhdf5), how a failed writer reports, Resample's memory-mapped scratch files on a full
disk, and the log file on a full disk.
"""
from __future__ import annotations

import errno
import hashlib
import logging
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest

from tracerflow.workflows import reporting

from .helpers import SMALL, datasets, tracerflow

PROJECT = "toy-ftag"
TEMPORARY = re.compile(r"^\..+\.tmp")


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> Path:
    """The output root of the small analysis run up to WriteTrainSample."""
    work = tmp_path_factory.mktemp("made")
    tracerflow("run", *SMALL, "--until", "WriteTrainSample", "--set", f"project.output_dir={work / 'out'}",
               cwd=work, check=True)
    return work / "out" / PROJECT


@pytest.fixture
def small_disk(tmp_path):
    """Mount a tmpfs (``mount(name)``), resize it to what it holds plus ``margin`` bytes
    (``resize(point, margin)``) or make it read-only (``resize(point, None)``); unmounted after."""
    points: list[Path] = []

    def mount(name: str) -> Path:
        point = tmp_path / name
        point.mkdir()
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256m", "tmpfs", str(point)],
                              capture_output=True, text=True)
        if proc.returncode:
            pytest.skip(f"cannot mount a tmpfs here (needs root): {proc.stderr.strip()}")
        points.append(point)
        return point

    def resize(point: Path, margin: int | None) -> None:
        if margin is None:
            option = "remount,ro"
        else:
            disk = os.statvfs(point)
            used = (disk.f_blocks - disk.f_bfree) * disk.f_frsize
            option = f"remount,size={(used + margin) // 4096 * 4}k"
        subprocess.run(["mount", "-o", option, str(point)], check=True, capture_output=True)

    yield mount, resize
    for point in reversed(points):
        subprocess.run(["umount", "-l", str(point)], capture_output=True)


def copy_outputs(made: Path, output_dir: Path, leave_out: tuple[str, ...] = ()) -> Path:
    """Copy ``made``'s targets, but the top-level entries ``leave_out``, to ``output_dir/<project>``."""
    root = output_dir / PROJECT
    root.mkdir(parents=True)
    for entry in made.iterdir():
        if entry.name not in leave_out:
            (shutil.copytree if entry.is_dir() else shutil.copy2)(entry, root / entry.name)
    return root


def hashes(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def run(output_dir: Path, *args: str, cwd: Path):
    return tracerflow("run", *SMALL, "--set", f"project.output_dir={output_dir}", *args, cwd=cwd)


def assert_clean_failure(proc, output_dir: Path, before: dict[str, str]) -> None:
    """Exit 1 with failure blocks and no traceback or crash; no temporary file; every file that
    was there before as it was; every new HDF5 file a complete target."""
    assert proc.returncode == 1, proc.stderr
    assert "Segmentation fault" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert [p for p in output_dir.rglob("*") if TEMPORARY.match(p.name)] == []
    root = output_dir / PROJECT
    after = hashes(root)
    assert {k: after.get(k) for k in before} == before
    for name in set(after) - set(before):
        if name.endswith(".h5"):
            with h5py.File(root / name, "r") as f:
                assert f.attrs["complete"], name


def disk_full_paths(stderr: str) -> list[str]:
    return re.findall(r"disk full: cannot write (\S+) \(No space left on device\)", stderr)


HANDLES_DROPPED = textwrap.dedent("""
    import sys
    import numpy as np
    from tracerflow.io.faults import OutputError
    from tracerflow.io.h5target import H5Writer

    try:
        with H5Writer(sys.argv[1], "test", 1, "digest", "test") as w:
            for i in range(10000):
                w.append("x", np.random.default_rng(i).random(5000))
                w.file["x"].shape  # a handle dropped at once: HDF5 writes the cached chunks out
    except OutputError as err:
        print(f"error: {err}")
""")


def test_writes_the_disk_refuses_are_an_error_never_a_crash_of_libhdf5(small_disk, tmp_path):
    """Dropping a dataset handle makes HDF5 write the chunks it caches; when that write failed,
    libhdf5 freed the dataset but kept its id, and the next release of the id crashed the process."""
    mount, resize = small_disk
    disk = mount("disk")
    resize(disk, 1 << 20)
    target = disk / "x.h5"
    proc = subprocess.run([sys.executable, "-c", HANDLES_DROPPED, str(target)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"error: disk full: cannot write {target} (No space left on device)\n", proc.stderr
    assert list(disk.iterdir()) == []


@pytest.mark.parametrize("raised, reported", [
    (OSError(errno.ENOSPC, "No space left on device"), "disk full: cannot write {target} (No space left on device)"),
    (PermissionError(errno.EACCES, "Permission denied", "/data/in.root"), "[Errno 13] Permission denied: '/data/in.root'"),
    (KeyError("x"), "'x'"),
])
def test_a_failed_writer_leaves_nothing_and_names_what_failed(tmp_path, raised, reported):
    """A fault naming no file is the target's (an OutputError naming it); one naming another file
    (an input it read) and any other error go on as they are."""
    from tracerflow.io.h5target import H5Writer

    target = tmp_path / "x.h5"
    with pytest.raises(type(raised)) as caught:
        with H5Writer(target, "test", 1, "digest", "test") as w:
            w.append("x", np.arange(10))
            raise raised
    assert str(caught.value) == reported.format(target=target)
    assert list(tmp_path.iterdir()) == []


def test_scratch_arrays_take_their_disk_before_they_are_mapped(small_disk, monkeypatch):
    """Resample scatters large splits into memory-mapped scratch files; a store into a mapped page
    the disk has no room for kills the process (SIGBUS), so the space is taken first."""
    from tracerflow.resample import gather

    mount, resize = small_disk
    disk = mount("disk")
    resize(disk, 64 << 10)
    monkeypatch.setattr(gather, "IN_MEMORY_BYTES", 0)
    target = disk / "train.h5"
    with pytest.raises(OSError) as raised:
        with gather._scratch_directory(target) as tmp:
            scratch = gather._Scratch(tmp)
            fits = scratch.array("fits", (4096,), np.dtype(np.int64))
            fits[:] = 7
            assert isinstance(fits, np.memmap) and os.stat(tmp / "fits.bin").st_blocks * 512 >= fits.nbytes
            scratch.array("too_big", (1 << 20,), np.dtype(np.float64))
    assert raised.value.errno == errno.ENOSPC
    assert str(raised.value) == f"disk full: cannot write {target} (No space left on device)"
    assert list(disk.iterdir()) == []


def test_a_log_file_on_a_full_disk_is_given_up_with_one_line(small_disk, capsys):
    mount, resize = small_disk
    disk = mount("disk")
    resize(disk, 16 << 10)
    handler = reporting._LogFile(disk / "run.log")
    logger = logging.getLogger("tracerflow.test-faults")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        for i in range(200):
            logger.warning("record %d %s", i, "x" * 200)
    finally:
        logger.removeHandler(handler)
        handler.close()
    lines = capsys.readouterr().err.splitlines()
    assert lines == [f"tracerflow: the log file is no longer written (disk full: {disk / 'run.log'} "
                     "(No space left on device))"]
    assert handler.failed and 0 < (disk / "run.log").stat().st_size <= 16 << 10


@pytest.mark.slow
@pytest.mark.parametrize("fails_in", ["train.h5", "train_folds.h5"])
def test_a_full_disk_in_write_train_sample_is_an_error_naming_the_file(made, small_disk, tmp_path, fails_in):
    """train.h5: the placed writes find the disk full when they reserve their space; train_folds.h5:
    HDF5's own writes of the fold file find it full (they used to end in a segmentation fault)."""
    mount, resize = small_disk
    disk = mount("disk")
    root = copy_outputs(made, disk, leave_out=("train_sample",))
    written = made / "train_sample"
    train, json = (written / "train.h5").stat().st_size, (written / "scale_dict.json").stat().st_size
    folds = (written / "train_folds.h5").stat().st_size
    resize(disk, train // 2 if fails_in == "train.h5" else train + json + folds // 3)
    before = hashes(root)
    proc = run(disk, "--until", "WriteTrainSample", cwd=tmp_path)
    assert_clean_failure(proc, disk, before)
    assert disk_full_paths(proc.stderr) == [str(root / "train_sample" / fails_in)], proc.stderr
    assert "tracerflow: WriteTrainSample(split=train) failed" in proc.stderr
    assert "hint: free space on that file system" in proc.stderr


@pytest.mark.slow
def test_a_full_disk_in_build_events_fails_the_files_that_do_not_fit(made, small_disk, tmp_path):
    mount, resize = small_disk
    disk = mount("disk")
    root = copy_outputs(made, disk, leave_out=("events", "graphs", "selections", "resample", "train_sample"))
    events = sum(p.stat().st_size for p in (made / "events").rglob("*.h5"))
    resize(disk, events // 2)
    before = hashes(root)
    proc = run(disk, "--until", "BuildEvents", cwd=tmp_path)
    assert_clean_failure(proc, disk, before)
    failed = disk_full_paths(proc.stderr)
    assert failed and all(Path(p).parent.parent == root / "events" for p in failed), proc.stderr
    assert proc.stderr.count("tracerflow: BuildEvents(") == len(failed)
    made_now = {p.name for p in (root / "events").rglob("*.h5")}
    assert made_now and not made_now & {Path(p).name for p in failed}


@pytest.mark.slow
def test_a_read_only_output_directory_is_refused_before_any_task_runs(made, small_disk, tmp_path):
    mount, resize = small_disk
    disk = mount("disk")
    root = copy_outputs(made, disk, leave_out=("events", "graphs", "selections", "resample", "train_sample"))
    resize(disk, None)
    before = hashes(root)
    proc = run(disk, "--until", "BuildEvents", cwd=tmp_path)
    assert_clean_failure(proc, disk, before)
    assert f"tracerflow: cannot write outputs to {root}: {root} is on a read-only file system" in proc.stderr
    assert "Luigi Execution Summary" not in proc.stdout


@pytest.mark.slow
def test_an_immutable_stage_directory_fails_the_task_naming_the_file(made, tmp_path):
    output_dir = tmp_path / "out"
    root = copy_outputs(made, output_dir, leave_out=("graphs", "selections", "resample", "train_sample"))
    target = root / "events" / "ttbar" / "ttbar_0000.h5"
    target.unlink()
    locked = subprocess.run(["chattr", "+i", str(target.parent)], capture_output=True, text=True)
    if locked.returncode:
        pytest.skip(f"chattr +i is not supported here: {locked.stderr.strip()}")
    try:
        before = hashes(root)
        proc = run(output_dir, "--until", "BuildEvents", cwd=tmp_path)
    finally:
        subprocess.run(["chattr", "-i", str(target.parent)], check=True)
    assert_clean_failure(proc, output_dir, before)
    assert "tracerflow: BuildEvents(sample=ttbar, file=ttbar_0000.root) failed" in proc.stderr
    assert f"not permitted: cannot write {target} (Operation not permitted)" in proc.stderr
    assert proc.stderr.count(" failed\n") == 1


@pytest.mark.slow
def test_an_output_dir_that_is_a_file_is_refused_before_any_task_runs(tmp_path):
    blocker = tmp_path / "out"
    blocker.write_text("not a directory\n")
    proc = run(blocker, "--until", "BuildEvents", cwd=tmp_path)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert f"tracerflow: cannot write outputs to {blocker / PROJECT}: {blocker} is not a directory" in proc.stderr
    assert "hint: a file is where tracerflow needs a directory" in proc.stderr
    assert blocker.read_text() == "not a directory\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


@pytest.mark.slow
def test_corrupt_targets_are_shown_unreadable_and_rebuilt_alone(made, tmp_path):
    """An events file of garbage and its graphs file cut in half: BuildGraphs needs both, so a run
    up to BuildGraphs rebuilds both (holding what they held), and nothing else."""
    output_dir = tmp_path / "out"
    root = copy_outputs(made, output_dir, leave_out=("resample", "train_sample"))
    garbage, truncated = root / "events" / "ttbar" / "ttbar_0001.h5", root / "graphs" / "ttbar" / "ttbar_0001.h5"
    garbage.write_bytes(os.urandom(garbage.stat().st_size))
    os.truncate(truncated, truncated.stat().st_size // 2)
    before = hashes(root)
    times = {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}

    shown = tracerflow("show", *SMALL, "--set", f"project.output_dir={output_dir}", "--until", "BuildGraphs",
                       cwd=tmp_path, check=True).stdout
    states = {line.split("-> ")[1]: line for line in shown.splitlines() if "-> " in line}
    for path in (garbage, truncated):
        assert "[pending (unreadable: " in states[str(path)], shown
    assert sum("unreadable" in line for line in shown.splitlines()) == 2

    proc = run(output_dir, "--until", "BuildGraphs", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    after = hashes(root)
    for path in (garbage, truncated):
        name = path.relative_to(root).as_posix()
        assert after[name] != before[name]
        rebuilt, original = datasets(path), datasets(made / name)
        assert rebuilt.keys() == original.keys()
        for key, values in original.items():
            np.testing.assert_array_equal(rebuilt[key], values, err_msg=f"{name}: {key}")
    unchanged = {p for p in times if p not in (garbage, truncated)}
    assert {p: p.stat().st_mtime_ns for p in unchanged} == {p: times[p] for p in unchanged}


@pytest.mark.slow
def test_a_corrupt_checkpoint_to_continue_is_an_error_naming_it(made, tmp_path):
    output_dir = tmp_path / "out"
    root = copy_outputs(made, output_dir)
    last = root / "train" / "fold_0" / "last.pt"
    last.parent.mkdir(parents=True)
    last.write_bytes(b"PK\x03\x04 not a checkpoint" + os.urandom(2000))
    before = hashes(root)
    proc = run(output_dir, "--until", "TrainFold", "--set", "train.folds=[0]", "--set", "train.continue_training=true",
               cwd=tmp_path)
    assert_clean_failure(proc, output_dir, before)
    assert "tracerflow: TrainFold(fold=0) failed" in proc.stderr
    assert f"{last}: not a readable checkpoint (" in proc.stderr
    assert "delete it or set train.continue_training: false" in proc.stderr
    assert not (last.parent / "model.h5").exists()
