"""One fold trained by several processes with torch DistributedDataParallel (``train.distributed``).

How the processes start (:func:`launch_of`):

- ``spawn``: TrainFold starts ``world_size`` processes itself (``torch.multiprocessing``, spawn
  start method) that meet through a rendezvous file in a fresh temporary directory; each gets
  ``max(1, usable cores // world_size)`` torch threads and, on CUDA, GPU ``cuda:<rank>``.
- ``env``: the process already is one rank of a job started by ``torchrun`` (``RANK``,
  ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``) or by Slurm's ``srun``
  (``SLURM_PROCID``, ``SLURM_NTASKS``, ``SLURM_LOCALID`` with ``MASTER_ADDR``/``MASTER_PORT``
  set by the job script); every rank runs the TrainFold task and they meet at ``env://``. The
  process group is made once per process and kept for the next fold; each fold first checks that
  every rank is on the same fold.

The backend is ``train.distributed.backend``, ``auto`` meaning nccl when the training runs on
CUDA and gloo otherwise. :class:`Ranks` is what the training loop sees of the others: sums over
ranks (gathered and added in rank order on every rank, so every rank gets the same bytes),
buffer broadcasts and barriers, each bounded by ``train.distributed.timeout``. When one spawned
rank fails, the others are stopped and the fold fails with an error naming the rank.
"""
from __future__ import annotations

import datetime
import multiprocessing
import os
import signal
import tempfile
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import torch
import torch.distributed as dist
import torch.multiprocessing as torch_mp
from torch import nn
from torch.multiprocessing.spawn import ProcessExitedException, ProcessRaisedException

KEY = "train.distributed"
POLL_SECONDS = 0.2
#: What a rank's error says when it only saw another rank go away (it is then not the cause).
LOST_PEER = ("Connection closed by peer", "Connection reset by peer", "Broken pipe", "NCCL communicator",
             "ProcessGroupNCCL", "Socket Timeout", "timed out", "Timed out")

Progress = Callable[[float, str], None]


@dataclass(frozen=True)
class Launch:
    """How a distributed fold runs: ``kind`` spawn or env, the world size, the resolved backend
    (gloo or nccl), the device kind (cpu or cuda), the timeout in seconds and, under env, this
    process's rank and local rank."""

    kind: str
    world_size: int
    backend: str
    device: str
    timeout: float
    rank: int = 0
    local_rank: int = 0


def environment_ranks(environ: Mapping[str, str] | None = None) -> tuple[int, int, int, str] | None:
    """``(rank, world size, local rank, source)`` this process was started as, by torchrun
    (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``) or by srun with a rendezvous address set
    (``SLURM_PROCID``, ``SLURM_NTASKS``, ``SLURM_LOCALID`` and ``MASTER_ADDR``, ``MASTER_PORT``);
    None when neither says so."""
    env = os.environ if environ is None else environ
    try:
        if "RANK" in env and "WORLD_SIZE" in env:
            rank, size = int(env["RANK"]), int(env["WORLD_SIZE"])
            return rank, size, int(env.get("LOCAL_RANK", rank)), "RANK/WORLD_SIZE"
        if "SLURM_PROCID" in env and "SLURM_NTASKS" in env and "MASTER_ADDR" in env and "MASTER_PORT" in env:
            rank, size = int(env["SLURM_PROCID"]), int(env["SLURM_NTASKS"])
            return rank, size, int(env.get("SLURM_LOCALID", rank)), "SLURM_PROCID/SLURM_NTASKS"
    except ValueError as err:
        raise ValueError(f"{KEY}: the launcher's rank variables are not whole numbers ({err})") from None
    return None


def launch_of(block: Mapping[str, Any], device: str, environ: Mapping[str, str] | None = None) -> Launch | None:
    """How to run a fold with the validated ``train.distributed`` ``block`` and ``train.device``
    ``device``: None for one process (world size 1, not started as one of several ranks), else a
    :class:`Launch`. A ValueError names the key when this machine or launcher cannot do it."""
    world = int(block["world_size"])
    started = environment_ranks(environ)
    if started is not None and started[1] > 1:
        rank, size, local, source = started
        if size != world:
            raise ValueError(f"{KEY}.world_size is {world}, but this process was started as rank {rank} of {size} "
                             f"({source}): make them equal")
        kind = "env"
    elif world == 1:
        return None
    else:
        rank, local, kind = 0, 0, "spawn"
    if not dist.is_available():
        raise ValueError(f"{KEY}: this torch was built without torch.distributed")
    on_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("train.device is cuda but CUDA is not available here; use cpu or auto")
    backend = block["backend"] if block["backend"] != "auto" else ("nccl" if on_cuda else "gloo")
    if backend == "nccl" and not (on_cuda and dist.is_nccl_available()):
        raise ValueError(f"{KEY}.backend: nccl needs CUDA GPUs and torch with NCCL; "
                         f"{'train.device is cpu' if device == 'cpu' else 'torch sees no CUDA GPU here'}: use gloo or auto")
    if on_cuda and kind == "spawn" and torch.cuda.device_count() < world:
        raise ValueError(f"{KEY}.world_size: {world} processes on CUDA take one GPU each; "
                         f"{torch.cuda.device_count()} visible here")
    if on_cuda and kind == "env" and 1 < torch.cuda.device_count() <= local:
        raise ValueError(f"{KEY}: rank {rank} is local rank {local} of its node, which shows "
                         f"{torch.cuda.device_count()} GPUs: one GPU per process")
    return Launch(kind, world, backend, "cuda" if on_cuda else "cpu", float(block["timeout"]), rank, local)


class Ranks:
    """This process's place among the ranks of a distributed fold, and the exchanges the training
    loop makes with the others (all ranks call each one in the same order)."""

    def __init__(self, rank: int, world_size: int, device: torch.device, backend: str) -> None:
        self.rank, self.world_size, self.device, self.backend = int(rank), int(world_size), device, backend
        # nccl exchanges CUDA tensors; gloo host tensors
        self._where = device if backend == "nccl" else torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that writes files and reports progress."""
        return self.rank == 0

    def sum(self, values: Sequence[float]) -> list[float]:
        """The sums over ranks of ``values`` (float64), added in rank order: the same on every rank."""
        local = torch.tensor([float(v) for v in values], dtype=torch.float64, device=self._where)
        parts = [torch.empty_like(local) for _ in range(self.world_size)]
        dist.all_gather(parts, local)
        total = parts[0].clone()
        for part in parts[1:]:
            total += part
        return [float(v) for v in total.cpu()]

    def broadcast_buffers(self, module: nn.Module) -> None:
        """Rank 0's buffers (batch-norm statistics) on every rank."""
        for buffer in module.buffers():
            if self.backend == "gloo" and buffer.device.type != "cpu":
                host = buffer.detach().cpu()
                dist.broadcast(host, src=0)
                buffer.copy_(host)
            else:
                dist.broadcast(buffer, src=0)

    def barrier(self) -> None:
        """Wait until every rank is here."""
        if self.backend == "nccl":
            dist.barrier(device_ids=[self.device.index])
        else:
            dist.barrier()

    def same(self, what: str, value: Any) -> None:
        """Check that every rank has the same ``value`` of ``what``; a ValueError says which differ."""
        values: list[Any] = [None] * self.world_size
        dist.all_gather_object(values, value)
        if any(v != values[0] for v in values):
            listed = ", ".join(f"rank {i}: {v}" for i, v in enumerate(values))
            raise ValueError(f"{KEY}: the ranks are not on the same {what} ({listed}); under torchrun or srun "
                             "run tracerflow with --workers 1, so that every rank trains the folds in one order")


def _device(launch: Launch, local_rank: int) -> torch.device:
    """The CPU, or GPU ``local_rank`` (GPU 0 where the launcher shows each process only its own)."""
    if launch.device != "cuda":
        return torch.device("cpu")
    device = torch.device("cuda", local_rank if local_rank < torch.cuda.device_count() else 0)
    torch.cuda.set_device(device)
    return device


def run(job: Callable[[Ranks, Progress | None], Any], launch: Launch,
        progress: Progress | None = None) -> tuple[Any, int]:
    """``job(ranks, progress)`` on every rank; returns what rank 0's job returned (every rank's
    under env) and this process's rank (0 under spawn). ``progress`` hears rank 0's reports."""
    if launch.kind == "env":
        return _run_here(job, launch, progress)
    return _spawn(job, launch, progress), 0


# ---------------------------------------------------------------- started by torchrun or srun

def _run_here(job: Callable[[Ranks, Progress | None], Any], launch: Launch,
              progress: Progress | None) -> tuple[Any, int]:
    env = os.environ
    if not ("MASTER_ADDR" in env and "MASTER_PORT" in env):
        raise ValueError(f"{KEY}: rank {launch.rank} of {launch.world_size} needs MASTER_ADDR and MASTER_PORT "
                         "(torchrun sets them; in a Slurm job script, export them)")
    device = _device(launch, launch.local_rank)
    if not dist.is_initialized():  # once per process: the next fold meets in the same group
        dist.init_process_group(launch.backend, init_method="env://", rank=launch.rank,
                                world_size=launch.world_size, timeout=datetime.timedelta(seconds=launch.timeout))
    elif (dist.get_rank(), dist.get_world_size()) != (launch.rank, launch.world_size):
        raise ValueError(f"{KEY}: this process is already rank {dist.get_rank()} of {dist.get_world_size()}")
    ranks = Ranks(launch.rank, launch.world_size, device, launch.backend)
    result = job(ranks, progress if ranks.is_main else None)
    return result, launch.rank


# ---------------------------------------------------------------- spawned by TrainFold

class _QueueProgress:
    """Rank 0's progress reports, sent to the process that spawned it."""

    def __init__(self, queue: Any) -> None:
        self.queue = queue

    def __call__(self, fraction: float, message: str) -> None:
        self.queue.put(("progress", float(fraction), str(message)))


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _rank_main(rank: int, job: Callable[[Ranks, Progress | None], Any], launch: Launch, init_method: str,
               threads: int, start_method: str, queue: Any) -> None:
    """One spawned rank: join the group, run the job, send rank 0's result (or this rank's error).
    Its DataLoader workers start as they would in the process that spawned it (``start_method``;
    a spawned process would otherwise start them by spawning too, each importing torch again)."""
    try:
        multiprocessing.set_start_method(start_method, force=True)
        torch.set_num_threads(threads)
        device = _device(launch, rank)
        dist.init_process_group(launch.backend, init_method=init_method, rank=rank, world_size=launch.world_size,
                                timeout=datetime.timedelta(seconds=launch.timeout))
        ranks = Ranks(rank, launch.world_size, device, launch.backend)
        result = job(ranks, _QueueProgress(queue) if ranks.is_main else None)
        if ranks.is_main:
            queue.put(("result", result))
    except BaseException as err:  # noqa: BLE001 -- told to the parent, then raised again
        queue.put(("failed", rank, _one_line(f"{type(err).__name__}: {err}")))
        raise
    dist.destroy_process_group()


def _one_line(text: str) -> str:
    first = text.strip().splitlines()[0] if text.strip() else text
    return first[:400]


def _spawn(job: Callable[[Ranks, Progress | None], Any], launch: Launch, progress: Progress | None) -> Any:
    world = launch.world_size
    threads = max(1, _usable_cores() // world)
    queue = torch_mp.get_context("spawn").SimpleQueue()
    failures: list[tuple[int, str]] = []
    result: list[Any] = []

    def drain() -> None:
        while not queue.empty():
            message = queue.get()
            if message[0] == "progress" and progress is not None:
                progress(message[1], message[2])
            elif message[0] == "result":
                result.append(message[1])
            elif message[0] == "failed":
                failures.append((message[1], message[2]))

    with tempfile.TemporaryDirectory(prefix="tracerflow-ddp-") as rendezvous:
        init_method = f"file://{os.path.join(rendezvous, 'store')}"
        context = torch_mp.start_processes(_rank_main, args=(job, launch, init_method, threads,
                                                             multiprocessing.get_start_method(), queue),
                                           nprocs=world, join=False, start_method="spawn")
        try:
            while True:
                done = context.join(timeout=POLL_SECONDS)
                drain()
                if done:
                    break
        except (ProcessRaisedException, ProcessExitedException) as err:
            drain()
            raise RuntimeError(_failure(err, failures, context.processes, world)) from None
        finally:
            for process in context.processes:
                if process.is_alive():
                    process.terminate()
            for process in context.processes:
                process.join()
    if not result:
        raise RuntimeError(f"{KEY}: rank 0 of {world} ended without a result")
    return result[0]


def _failure(err: ProcessRaisedException | ProcessExitedException, failures: list[tuple[int, str]],
             processes: Sequence[Any], world: int) -> str:
    """Which rank made the fold fail, and how. A rank that ended without telling why (killed, or
    exited) is the cause, unless it was stopped with SIGTERM after another failed; then the first
    rank whose error was not only losing another rank; then whatever torch saw first."""
    told = {rank for rank, _ in failures}
    silent = [(i, p.exitcode) for i, p in enumerate(processes)
              if i not in told and p.exitcode not in (0, None, -signal.SIGTERM)]
    real = [f for f in failures if not any(mark in f[1] for mark in LOST_PEER)]
    if silent:
        rank, code = silent[0]
        how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"
    elif real or failures:
        rank, how = (real or failures)[0]
    elif isinstance(err, ProcessExitedException):
        rank = err.error_index
        how = f"killed by {err.signal_name}" if err.signal_name else f"exited with code {err.exit_code}"
    else:
        rank = err.error_index
        lines = [line for line in str(err).strip().splitlines() if line.strip()]
        how = lines[-1].strip() if lines else "failed"
    return (f"distributed training ({KEY}.world_size {world}): rank {rank} failed: {how}; "
            "the other ranks were stopped")
