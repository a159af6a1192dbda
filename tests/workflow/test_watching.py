"""What a user sees while a run goes: progress of running tasks through a real luigid's API, task
parameters that read as the analysis, progress lines in the terminal, and file groups
(``scheduler.files_per_task``)."""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tracerflow.tasks import STAGES

from .helpers import SMALL, output_root, tracerflow

#: One big file per sample, read in small chunks (BuildEvents runs for seconds, reporting as it
#: goes), and one fold trained for many short epochs (TrainFold reports epoch after epoch).
WATCHED = ("--set", "samples.ttbar.generate.n_jets=60000", "--set", "samples.zprime.generate.n_jets=30000",
           "--set", "samples.ttbar.generate.events_per_file=100000",
           "--set", "samples.zprime.generate.events_per_file=100000", "--set", "event.chunk_size=500",
           "--set", "train.epochs=10", "--set", "train.early_stopping=null", "--set", "train.folds=[0]")


def _tasks(url: str, status: str) -> dict[str, dict]:
    query = urllib.parse.quote(json.dumps({"status": status, "upstream_status": "", "search": ""}))
    with urllib.request.urlopen(f"{url}/api/task_list?data={query}", timeout=10) as resp:
        return json.load(resp)["response"]


@pytest.mark.slow
def test_running_tasks_show_progress_through_the_scheduler_api_and_web_page(scheduler, chromium, tmp_path):
    """One run through luigid, watched as it goes: the API's running tasks every 0.1 s, and once,
    while a TrainFold runs with some progress, the web page's workers tab in headless Chromium."""
    cmd = [str(Path(sys.executable).with_name("tracerflow")), "run", *WATCHED, "--until", "TrainFold",
           "--scheduler-url", scheduler.url]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    seen: dict[str, list[tuple[int | None, str | None]]] = {}
    pages: list[str] = []
    render = None  # Chromium takes seconds on a loaded machine: it renders beside the polling
    try:
        while proc.poll() is None:
            running = _tasks(scheduler.url, "RUNNING").values()
            for task in running:
                seen.setdefault(task["name"], []).append((task["progress_percentage"], task["status_message"]))
            if render is None and any(t["name"] == "TrainFold" and (t["progress_percentage"] or 0) > 0
                                      for t in running):
                render = threading.Thread(target=lambda: pages.append(_rendered(
                    chromium, f"{scheduler.url}/static/visualiser/index.html#tab=workers", tmp_path / "chromium")))
                render.start()
            time.sleep(0.1)
    finally:
        out, err = proc.communicate(timeout=600)
        if render is not None:
            render.join()
    assert proc.returncode == 0, out + err
    page = pages[0] if pages else None

    assert page is not None, "no TrainFold was seen running with progress"
    assert re.search(r"<td>TrainFold\(config_ref=default@[0-9a-f]{10}, fold=0\)</td>", page), page[-3000:]
    bars = re.findall(r'role="progressbar" data-task-id="TrainFold_[^"]*"[^>]*aria-valuenow="(\d+)"', page)
    assert bars and 0 < int(bars[0]) <= 100, page[-3000:]
    assert "overrides" not in page
    task_list = _rendered(chromium, scheduler.url, tmp_path / "chromium")  # its first page of DONE tasks
    families = set(re.findall(r"DONE</td><td>(\w+)</td>", task_list))
    assert len(families) >= 3 and families <= {"Analysis", *STAGES}, families

    training = [(p, m) for p, m in seen.get("TrainFold", []) if m]
    epochs = [(p, m) for p, m in training if re.fullmatch(r"TrainFold 0: epoch \d+ of 10 done: train loss [\d.]+, "
                                                          r"val loss [\d.]+ \(best [\d.]+, epoch \d+\)", m)]
    assert epochs, training[-5:]
    assert any(0 < p < 100 for p, _ in epochs)
    assert len({m for _, m in epochs}) >= 2  # seen as it moved on, not once at the end

    building = [(p, m) for p, m in seen.get("BuildEvents", []) if m]
    counted = [(p, m) for p, m in building
               if re.fullmatch(r"BuildEvents (ttbar|zprime)/\w+\.root: [\d,]+ of [\d,]+ events", m)]
    assert counted, building[-5:]
    assert any(p is not None and p < 100 for p, _ in counted)

    done = _tasks(scheduler.url, "DONE")
    fold = next(t for t in done.values() if t["name"] == "TrainFold")
    assert fold["progress_percentage"] == 100 and "best val loss" in fold["status_message"]
    assert fold["params"].keys() == {"config_ref", "fold"}
    build = next(t for t in done.values() if t["name"] == "BuildEvents")
    assert build["params"].keys() == {"config_ref", "sample", "file"}
    assert re.fullmatch(r"default@[0-9a-f]{10}", build["params"]["config_ref"])
    assert "overrides" not in json.dumps(list(done.values()))


def test_the_terminal_gets_progress_lines_and_a_summary_when_not_a_tty(tmp_path):
    proc = tracerflow("run", *SMALL, "--until", "ApplySelections", "--set", "scheduler.progress_interval=0.1",
                      cwd=tmp_path, check=True)
    lines = [line for line in proc.stderr.splitlines() if line.startswith("tracerflow: [")]
    assert lines, proc.stderr
    totals = {re.match(r"tracerflow: \[(\d+)/(\d+) tasks", line).group(2) for line in lines}
    n_files = len(list((output_root(tmp_path) / "selections").rglob("*.h5")))
    assert totals == {str(2 + 3 * n_files)}
    assert any(re.search(r"GenerateSample (ttbar|zprime): [\d,]+ of [\d,]+ jets \(\d+%\)", line) for line in lines)
    assert "\r" not in proc.stderr and "\x1b" not in proc.stderr
    summary = proc.stdout.splitlines()
    assert summary[0] == f"tracerflow: {2 + 3 * n_files} tasks: {2 + 3 * n_files} ran, 0 already done"
    assert summary[1] == f"  ran: 2 GenerateSample, {n_files} BuildEvents, {n_files} BuildGraphs, {n_files} ApplySelections"
    again = tracerflow("run", *SMALL, "--until", "ApplySelections", cwd=tmp_path, check=True)
    assert again.stdout.splitlines()[0] == ("tracerflow: nothing to run: every target is complete and made from the "
                                            "current config and inputs")
    shown = tracerflow("run", *SMALL, "--until", "ApplySelections", "--set", "selection.template.cuts.pt=jets.pt > 40",
                       cwd=tmp_path, check=True)
    assert shown.stdout.splitlines()[:2] == [f"tracerflow: {2 + 3 * n_files} tasks: {n_files} ran, {2 + 2 * n_files} already done",
                                             f"  ran: {n_files} ApplySelections"]


def _digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for kind in ("events", "graphs", "selections") for p in sorted((root / kind).rglob("*.h5"))}


@pytest.mark.slow
def test_files_grouped_per_task_give_the_same_files_and_regrouping_keeps_them(tmp_path):
    one, grouped = tmp_path / "one", tmp_path / "grouped"
    one.mkdir(), grouped.mkdir()
    tracerflow("run", *SMALL, "--until", "ApplySelections", "--set", "scheduler.files_per_task=1", cwd=one, check=True)
    proc = tracerflow("run", *SMALL, "--until", "ApplySelections", "--set", "scheduler.files_per_task=4",
                      cwd=grouped, check=True)
    files = {s: len(list((output_root(grouped) / "events" / s).glob("*.h5"))) for s in ("ttbar", "zprime")}
    groups = sum(-(-n // 4) for n in files.values())
    assert proc.stdout.splitlines()[1] == f"  ran: 2 GenerateSample, {groups} BuildEvents, {groups} BuildGraphs, {groups} ApplySelections"
    assert _digests(output_root(one)) == _digests(output_root(grouped))
    shown = tracerflow("show", *SMALL, "--until", "ApplySelections", "--set", "scheduler.files_per_task=4",
                       cwd=grouped, check=True).stdout
    more = min(4, files["ttbar"]) - 1
    assert more >= 1
    assert re.search(rf"\[done\] ApplySelections\(sample=ttbar, file=ttbar_0000\.root \+{more} files\)  -> \S+ \(\+{more} more\)",
                     shown), shown
    regrouped = tracerflow("run", *SMALL, "--until", "ApplySelections", "--set", "scheduler.files_per_task=3",
                           cwd=grouped, check=True)
    assert regrouped.stdout.startswith("tracerflow: nothing to run")


@pytest.mark.slow
def test_a_bad_file_fails_its_group_and_the_others_of_the_group_are_kept(tmp_path, shared_data):
    data = tmp_path / "data"
    data.mkdir()
    good = (shared_data / "uproot-HZZ.root").read_bytes()
    for name in ("a.root", "c.root"):
        (data / name).write_bytes(good)
    (data / "b.root").write_bytes(good[:5000])
    config = tmp_path / "analysis.yaml"
    config.write_text(
        "samples:\n  s:\n    files: [data/a.root, data/b.root, data/c.root]\n"
        "event:\n  template:\n    collections:\n      jets: {branches: {px: Jet_Px, py: Jet_Py, pz: Jet_Pz, e: Jet_E}, four_vector: pxpypze}\n"
        "graph:\n  template: {nodes: jets, node_features: {pt: jets.pt}}\n"
        "selection:\n  template: {cuts: {one_jet: count(jets) >= 1}}\n"
        "scheduler: {files_per_task: 3}\n"
    )
    proc = tracerflow("run", "--config", str(config), "--until", "BuildEvents", cwd=tmp_path)
    assert proc.returncode == 1
    assert "tracerflow: BuildEvents(sample=s, file=a.root +2 files) failed" in proc.stderr
    assert "b.root" in proc.stderr
    events = tmp_path / "tracerflow-output" / "tracerflow" / "events" / "s"
    assert sorted(p.name for p in events.glob("*.h5")) == ["a.h5", "c.h5"]
    assert not list(events.parent.rglob(".*.tmp-*"))


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's headless Chromium, installed with apt-get when missing (CI runs as root)."""
    path = shutil.which("chromium")
    if path is None and os.geteuid() == 0:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-q"], check=True, capture_output=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-q", "chromium"], check=True, capture_output=True, env=env)
        path = shutil.which("chromium")
    assert path is not None, "the web page test needs Debian's chromium: apt-get install chromium"
    return path


def _rendered(chromium: str, url: str, directory: Path) -> str:
    """The page at ``url`` as headless Chromium leaves it once its scripts have run."""
    proc = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                           f"--user-data-dir={directory}", "--virtual-time-budget=10000", "--dump-dom", url],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout

