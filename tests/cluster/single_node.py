"""A real single-node Slurm cluster: what the ``slurm`` fixture of conftest.py and the batch
benchmark (benchmarks/batch.py) start with :func:`single_node`.

It starts one on this host and stops it (by PID) when the block ends:

* its own ``munged`` (fresh key, private socket), ``slurmctld`` and ``slurmd``,
  all state, spool, PID and log files in a fresh directory, free TCP ports;
* one node (this host's short name, ``NodeAddr=127.0.0.1``, the CPUs and
  memory ``slurmd -C`` reports) in one default partition;
* no accounting: ``sacct`` fails. A finished job's state and exit code are read
  with ``squeue --states=all`` or ``scontrol show job`` for ``MinJobAge`` (300 s)
  after it ends;
* jobs run as the user who started it, on this file system, with the
  submitter's environment (``sbatch`` exports it all by default).

It yields a :class:`Slurm`. ``conf`` is the ``slurm.conf`` path; ``env`` is an
environment for subprocesses (``SLURM_CONF`` set, Slurm's and sbatch's input
variables from outside removed); ``SLURM_CONF`` is also set in ``os.environ``
while the block runs, so code that calls ``sbatch``/``squeue``/``scancel`` with
the inherited environment (the batch layer, ``tracerflow run --batch slurm``)
finds this cluster. The helpers ``submit``, ``job``, ``wait_for`` and
``finished`` are conveniences for tests.

Slurm missing: installed with apt-get (Debian's ``slurmctld slurmd
slurm-client munge``) when running as root; where that is impossible,
:class:`Unavailable` says why. Installed but not starting (or not stopping):
:class:`Broken`, carrying the tails of the daemons' logs.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..daemons import Broken, Unavailable, apt_install

PACKAGES = ("slurmctld", "slurmd", "slurm-client", "munge")
COMMANDS = ("slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "scancel", "sinfo", "munged")
PARTITION = "debug"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0
# States after which a job no longer changes (scontrol's JobState).
FINISHED = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY",
                      "BOOT_FAIL", "DEADLINE", "PREEMPTED"})
# Input variables of the clients that an outer environment (a login on a real
# cluster, a CI runner inside a job) could carry into this cluster's commands.
_FOREIGN = ("SLURM_", "SBATCH_", "SALLOC_", "SRUN_", "SQUEUE_", "SINFO_", "SCANCEL_", "SCONTROL_")
_SBIN = ("/usr/sbin", "/sbin", "/usr/local/sbin")


@dataclass
class Slurm:
    """A running single-node cluster; see the module docstring."""

    conf: Path
    env: dict[str, str]
    directory: Path
    node: str
    partition: str
    version: str
    startup_s: float
    _logs: tuple[Path, ...] = field(default=(), repr=False)

    def run(self, *args: str, check: bool = True, timeout: float = 30.0) -> subprocess.CompletedProcess:
        """A client command (``sbatch``, ``scontrol``, ...) against this cluster."""
        proc = subprocess.run(args, env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(args)} exited {proc.returncode}:\n{proc.stdout}{proc.stderr}")
        return proc

    def submit(self, *args: str) -> int:
        """``sbatch --parsable ARGS``: the new job's id."""
        out = self.run("sbatch", "--parsable", *args).stdout.strip()
        return int(out.split(";")[0])

    def job(self, job_id: int) -> dict[str, str]:
        """``scontrol show job``'s fields, e.g. ``JobState``, ``ExitCode`` (``"3:0"``: code, signal)."""
        line = self.run("scontrol", "show", "job", "--oneliner", str(job_id)).stdout.strip()
        return {m.group(1): m.group(2) for m in re.finditer(r"(\S+?)=(.*?)(?=\s+\S+?=|\s*$)", line)}

    def wait_for(self, job_id: int, states: set[str] | frozenset[str], timeout: float = 30.0) -> dict[str, str]:
        """Poll the job until its ``JobState`` is one of ``states``; its fields then."""
        deadline = time.monotonic() + timeout
        while True:
            record = self.job(job_id)
            if record.get("JobState") in states:
                return record
            if record.get("JobState") in FINISHED or time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} did not reach {sorted(states)} within {timeout:.0f} s: {record}"
                                     f"\n{self.log_tails()}")
            time.sleep(0.1)

    def finished(self, job_id: int, timeout: float = 30.0) -> dict[str, str]:
        """Wait for the job to end, whichever way; its fields then."""
        return self.wait_for(job_id, FINISHED, timeout)

    def log_tails(self, lines: int = 25) -> str:
        return _tails(self._logs, lines)


def _which(name: str) -> str | None:
    return shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), *_SBIN]))


def _install() -> None:
    """Debian's Slurm and MUNGE with apt-get when missing; skips the tests where that cannot be done."""
    if os.geteuid() != 0:
        raise Unavailable("the single-node Slurm runs slurmctld and slurmd as root (SlurmUser=root): not root")
    missing = [c for c in COMMANDS if _which(c) is None]
    if missing:
        apt_install(list(PACKAGES), lambda: [c for c in COMMANDS if _which(c) is None],
                    f"Slurm is not installed (no {', '.join(missing)}): apt-get install {' '.join(PACKAGES)}")


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _hardware(slurmd: str) -> str:
    """The node's CPUs, boards, sockets, cores, threads and memory as ``slurmd -C`` sees them."""
    out = subprocess.run([slurmd, "-C"], capture_output=True, text=True, check=True).stdout
    keys = ("CPUs", "Boards", "SocketsPerBoard", "CoresPerSocket", "ThreadsPerCore", "RealMemory")
    found = dict(re.findall(r"\b(\w+)=(\S+)", out))
    return " ".join(f"{k}={found[k]}" for k in keys if k in found)


def _tails(paths: tuple[Path, ...], lines: int) -> str:
    parts = []
    for path in paths:
        try:
            text = path.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            continue
        if text:
            parts.append(f"--- {path.name} (last {len(text)} lines)\n" + "\n".join(text))
    return "\n".join(parts)


def _die_with_parent() -> None:
    """In the child: SIGTERM when pytest dies, so that a killed session leaves no daemon behind."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class _Daemons:
    def __init__(self, directory: Path, env: dict[str, str]):
        self.directory = directory
        self.env = env
        self.procs: list[tuple[str, subprocess.Popen]] = []
        self.logs: list[Path] = []

    def start(self, name: str, *args: str) -> subprocess.Popen:
        out = self.directory / f"{name}.out"
        self.logs.append(out)
        with out.open("wb") as sink:
            proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT,
                                    env=self.env, start_new_session=True, preexec_fn=_die_with_parent)
        self.procs.append((name, proc))
        return proc

    def check_alive(self) -> None:
        for name, proc in self.procs:
            if proc.poll() is not None:
                self.fail(f"{name} exited with status {proc.returncode}")

    def fail(self, message: str) -> None:
        raise Broken(f"single-node Slurm did not start: {message}\n(in {self.directory})\n"
                     f"{_tails(tuple(self.logs), 25)}")

    def wait(self, what: str, ready, deadline: float) -> None:
        while not ready():
            self.check_alive()
            if time.monotonic() > deadline:
                self.fail(f"{what} not within {START_TIMEOUT:.0f} s")
            time.sleep(0.1)

    def stop(self) -> list[str]:
        """SIGTERM in reverse order of start, SIGKILL after STOP_TIMEOUT; what needed the kill."""
        killed = []
        for name, proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                    killed.append(name)
        return killed


def _queue(env: dict[str, str]) -> list[str]:
    """The ids of the jobs in the queue (none when squeue does not answer)."""
    try:
        proc = subprocess.run(["squeue", "-h", "-o", "%i"], env=env, capture_output=True, text=True, timeout=10)
    except subprocess.TimeoutExpired:
        return []
    return proc.stdout.split() if proc.returncode == 0 else []


def _client_ok(env: dict[str, str], *args: str, expect: str) -> bool:
    try:
        proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=10)
    except subprocess.TimeoutExpired:
        return False
    return proc.returncode == 0 and expect in proc.stdout


@contextlib.contextmanager
def single_node() -> Iterator[Slurm]:
    """A running single-node Slurm while the block runs; see the module docstring.
    :class:`Unavailable` when it cannot run here, :class:`Broken` when it does not start or stop."""
    _install()
    started = time.monotonic()
    # A fresh directory straight under the temporary directory: munged wants every
    # directory above its socket searchable by all (pytest's own are mode 0700),
    # and Unix socket paths are short.
    directory = Path(tempfile.mkdtemp(prefix="tracerflow-slurm-"))
    directory.chmod(0o755)
    for sub in ("state", "spool"):
        (directory / sub).mkdir()
    key = directory / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    munge_socket = directory / "munge.socket"

    node = socket.gethostname().split(".")[0]
    ctld_port, slurmd_port = _free_ports(2)
    conf = directory / "slurm.conf"
    conf.write_text(f"""\
ClusterName=tracerflow-test
SlurmctldHost={node}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={munge_socket}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
MinJobAge=300
SchedulerParameters=batch_sched_delay=0
StateSaveLocation={directory}/state
SlurmdSpoolDir={directory}/spool
SlurmctldPidFile={directory}/slurmctld.pid
SlurmdPidFile={directory}/slurmd.pid
SlurmctldDebug=info
SlurmdDebug=info
NodeName={node} NodeAddr=127.0.0.1 {_hardware(_which("slurmd"))} State=UNKNOWN
PartitionName={PARTITION} Nodes={node} Default=YES MaxTime=INFINITE State=UP
""")
    env = {k: v for k, v in os.environ.items() if not k.startswith(_FOREIGN)}
    env["SLURM_CONF"] = str(conf)
    daemons = _Daemons(directory, env)
    previous = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(conf)
    cluster = None
    try:
        deadline = time.monotonic() + START_TIMEOUT
        daemons.start("munged", _which("munged"), "--foreground", f"--socket={munge_socket}",
                      f"--key-file={key}", f"--pid-file={directory}/munged.pid",
                      f"--seed-file={directory}/munged.seed", f"--log-file={directory}/munged.log")
        daemons.wait("munged's socket", munge_socket.exists, deadline)
        # In the foreground and without LogFile, the daemons log to slurmctld.out, slurmd.out.
        daemons.start("slurmctld", _which("slurmctld"), "-D", "-f", str(conf))
        daemons.wait("slurmctld answering `scontrol ping`",
                     lambda: _client_ok(env, "scontrol", "ping", expect="UP"), deadline)
        daemons.start("slurmd", _which("slurmd"), "-D", "-f", str(conf))
        daemons.wait(f"node {node} idle",
                     lambda: _client_ok(env, "sinfo", "-h", "-N", "-n", node, "-o", "%T", expect="idle"), deadline)
        version = subprocess.run([_which("sinfo"), "--version"], capture_output=True, text=True).stdout.strip()
        cluster = Slurm(conf=conf, env=env, directory=directory, node=node, partition=PARTITION,
                        version=version, startup_s=time.monotonic() - started, _logs=tuple(daemons.logs))
        yield cluster
    finally:
        try:
            if cluster is not None:
                # A job's processes belong to its slurmstepd, not to slurmd: end them first.
                subprocess.run(["scancel", f"--partition={PARTITION}"], env=env, capture_output=True, timeout=30)
                deadline = time.monotonic() + STOP_TIMEOUT
                while _queue(env) and time.monotonic() < deadline:
                    time.sleep(0.2)
            killed = daemons.stop()
        finally:
            if previous is None:
                os.environ.pop("SLURM_CONF", None)
            else:
                os.environ["SLURM_CONF"] = previous
    if killed:
        raise Broken(f"{', '.join(killed)} ignored SIGTERM for {STOP_TIMEOUT:.0f} s and was killed "
                     f"(files kept in {directory})\n{_tails(tuple(daemons.logs), 25)}")
    shutil.rmtree(directory, ignore_errors=True)
