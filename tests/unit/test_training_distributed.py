"""Distributed training (train.distributed): rank shares of each epoch, the launch rules, one step of
DistributedDataParallel equal to one process's step on the same global batch, and a failing rank.

"The same global batch": ``train.batch_size`` B is the global batch; with world size N each rank
trains on B / N jets of its own share of the epoch, and step t's global batch is the union of the
ranks' t-th batches. The reference below trains one process on exactly those unions (the rank
shares' batches put side by side); the two loss curves then differ only by float rounding, and
the test holds them to a relative tolerance of 1e-5 (train and validation loss of every epoch)
and the final weights to 1e-4.
"""
from __future__ import annotations

import functools
import os
import signal

import h5py
import numpy as np
import pytest
import torch

from tracerflow.models import ModelBuilder
from tracerflow.training import Callback, Fitter, TrainFileDataset, make_optimizer
from tracerflow.training.distributed import Launch, environment_ranks, launch_of, run

from .test_training_data import N_JET_VARS, N_TRACK_VARS, write_toy_train_file

#: Relative tolerance of the loss curves of two ranks against one process on the same global batches.
LOSS_RTOL = 1e-5
WEIGHTS_RTOL, WEIGHTS_ATOL = 1e-4, 1e-6
BATCH = 256  # the global batch: 128 jets per rank
EPOCHS = 3
MODEL = {
    "body": {"widths": [16, 16]},
    "tail": {"objective": "multiclass", "n_out": 3},
    "set": {"type": "deepsets", "phi_widths": [8], "rho_widths": [8]},
}
SPAWN = Launch("spawn", 2, "gloo", "cpu", 60.0)


@pytest.fixture(scope="module")
def train_file(tmp_path_factory):
    """The toy train file with weights between 0.5 and 1.5 (the sum over ranks matters then)."""
    path = write_toy_train_file(tmp_path_factory.mktemp("ddp") / "train.h5", n=2000)
    with h5py.File(path, "a") as f:
        f["jets/weight"][...] = np.random.default_rng(3).uniform(0.5, 1.5, f["jets/weight"].shape)
    return path


def shares(path, size: int, batch_size: int, **options) -> list[TrainFileDataset]:
    return [TrainFileDataset(path, folds=[0, 1, 2], batch_size=batch_size, seed=7, block_rows=256,
                             shard=(rank, size), **options) for rank in range(size)]


def rows_of(batches) -> np.ndarray:
    return np.concatenate([b["jets"].numpy() for b in batches]) if batches else np.zeros((0, N_JET_VARS))


# ---------------------------------------------------------------- shares of an epoch

def test_ranks_read_disjoint_equal_shares_of_each_epoch_in_its_order(train_file):
    whole = TrainFileDataset(train_file, folds=[0, 1, 2], batch_size=64, seed=7, block_rows=256)
    for epoch in (0, 1):
        whole.set_epoch(epoch)
        stream = rows_of(list(whole))
        parts = shares(train_file, 3, 64)
        got = []
        for part in parts:
            part.set_epoch(epoch)
            got.append(rows_of(list(part)))
        each = whole.n_rows // 3
        assert [len(g) for g in got] == [each] * 3
        assert len({len(p) for p in parts}) == 1  # every rank makes as many batches
        np.testing.assert_array_equal(np.concatenate(got), stream[:3 * each])
    blocks = [{block for block, _ in part._block_order()} for part in shares(train_file, 3, 64)]
    n_blocks = len(whole._blocks)
    assert sum(len(b) for b in blocks) <= n_blocks + 2  # a block across a cut is shared, no other
    assert all(len(b) < n_blocks for b in blocks)


def test_validation_shares_cover_every_row_once(train_file):
    whole = rows_of(list(TrainFileDataset(train_file, folds=[3], batch_size=100, shuffle=False, block_rows=256)))
    parts = [TrainFileDataset(train_file, folds=[3], batch_size=100, shuffle=False, block_rows=256,
                              shard=(rank, 3), even_shards=False) for rank in range(3)]
    np.testing.assert_array_equal(np.concatenate([rows_of(list(p)) for p in parts]), whole)


def test_sorted_batches_of_a_share_keep_its_rows(train_file):
    plain, = shares(train_file, 2, 64)[1:]
    sorted_, = shares(train_file, 2, 64, sort_by_nodes=True, bucket_rows=200)[1:]
    a, b = rows_of(list(plain)), rows_of(list(sorted_))
    assert len(a) == len(b) and len(list(plain)) == len(list(sorted_)) == len(plain)
    np.testing.assert_array_equal(np.sort(a, axis=0), np.sort(b, axis=0))


def test_a_bad_shard_is_refused(train_file):
    for shard in [(2, 2), (-1, 2), (0, 0)]:
        with pytest.raises(ValueError, match="shard"):
            TrainFileDataset(train_file, shard=shard)


# ---------------------------------------------------------------- how the processes start

BLOCK = {"world_size": 2, "backend": "auto", "timeout": 60.0}


def test_world_size_one_without_a_launcher_is_one_process():
    assert launch_of({**BLOCK, "world_size": 1}, "cpu", environ={}) is None
    assert launch_of({**BLOCK, "world_size": 1}, "cpu", environ={"RANK": "0", "WORLD_SIZE": "1"}) is None
    assert launch_of({**BLOCK, "world_size": 1}, "cpu", environ={"SLURM_PROCID": "0", "SLURM_NTASKS": "4"}) is None


def test_world_size_two_spawns_with_gloo_on_cpu():
    assert launch_of(BLOCK, "cpu", environ={}) == Launch("spawn", 2, "gloo", "cpu", 60.0)
    assert launch_of(BLOCK, "auto", environ={}).backend == ("nccl" if torch.cuda.is_available() else "gloo")


def test_ranks_come_from_torchrun_or_srun():
    torchrun = {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "1"}
    assert launch_of(BLOCK, "cpu", environ=torchrun) == Launch("env", 2, "gloo", "cpu", 60.0, rank=1, local_rank=1)
    srun = {"SLURM_PROCID": "3", "SLURM_NTASKS": "4", "SLURM_LOCALID": "1", "MASTER_ADDR": "n1", "MASTER_PORT": "2"}
    assert environment_ranks(srun) == (3, 4, 1, "SLURM_PROCID/SLURM_NTASKS")
    assert environment_ranks({"SLURM_PROCID": "3", "SLURM_NTASKS": "4"}) is None  # no rendezvous: not a rank
    with pytest.raises(ValueError, match=r"train\.distributed\.world_size is 2, but .* rank 3 of 4"):
        launch_of(BLOCK, "cpu", environ=srun)
    with pytest.raises(ValueError, match=r"train\.distributed\.world_size is 1"):
        launch_of({**BLOCK, "world_size": 1}, "cpu", environ=torchrun)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without CUDA")
def test_nccl_without_cuda_is_refused_naming_the_key():
    with pytest.raises(ValueError, match=r"train\.distributed\.backend: nccl"):
        launch_of({**BLOCK, "backend": "nccl"}, "auto", environ={})


# ---------------------------------------------------------------- one step, two ranks

def make_model() -> torch.nn.Module:
    return ModelBuilder(MODEL, n_jet_vars=N_JET_VARS, n_track_vars=N_TRACK_VARS).build(seed=11)


def _rank_job(path: str, ranks, progress) -> dict:
    """Two-rank training of the toy fold: returns the history and the final weights (as numpy)."""
    model = make_model()
    train = shares(path, ranks.world_size, BATCH // ranks.world_size)[ranks.rank]
    val = TrainFileDataset(path, folds=[3], batch_size=500, shuffle=False, block_rows=256,
                           shard=(ranks.rank, ranks.world_size), even_shards=False)
    fitter = Fitter(model, optimizer=make_optimizer("ADAM", model.parameters(), {"lr": 0.01}), seed=5, ranks=ranks)
    history = fitter.fit(train, val, EPOCHS)
    return {"history": history.state_dict(), "weights": {k: v.numpy() for k, v in model.state_dict().items()}}


class GlobalBatches:
    """One process's batches made of the ranks' batches of each step, put side by side."""

    def __init__(self, parts: list[TrainFileDataset]) -> None:
        self.parts = parts

    def set_epoch(self, epoch: int) -> None:
        for part in self.parts:
            part.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.parts[0])

    def __iter__(self):
        for batches in zip(*self.parts):
            yield {key: torch.cat([b[key] for b in batches]) for key in batches[0]}


def test_two_ranks_follow_one_process_on_the_same_global_batches(train_file):
    got, rank = run(functools.partial(_rank_job, train_file), SPAWN)
    assert rank == 0
    model = make_model()
    val = TrainFileDataset(train_file, folds=[3], batch_size=500, shuffle=False, block_rows=256)
    fitter = Fitter(model, optimizer=make_optimizer("ADAM", model.parameters(), {"lr": 0.01}), seed=5)
    expected = fitter.fit(GlobalBatches(shares(train_file, 2, BATCH // 2)), val, EPOCHS)
    ours = got["history"]["epochs"]
    assert [r["epoch"] for r in ours] == list(range(EPOCHS))
    for key in ("train_loss", "val_loss", "val_accuracy"):
        np.testing.assert_allclose([r[key] for r in ours], [r[key] for r in expected.epochs], rtol=LOSS_RTOL,
                                   err_msg=key)
    assert expected.val_loss[-1] < 0.8 * expected.val_loss[0]  # it learnt: the comparison means something
    for key, value in model.state_dict().items():
        np.testing.assert_allclose(got["weights"][key], value.numpy(), rtol=WEIGHTS_RTOL, atol=WEIGHTS_ATOL,
                                   err_msg=key)


# ---------------------------------------------------------------- a rank that fails

class FailOnRank(Callback):
    """Rank ``rank`` raises (or kills itself) at its third training batch."""

    checkpointed = False

    def __init__(self, rank: int, how: str) -> None:
        self.rank, self.how, self.seen = rank, how, 0

    def on_batch_end(self, fitter) -> None:
        self.seen += fitter.training
        if fitter.ranks.rank == self.rank and self.seen == 3:
            if self.how == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            raise RuntimeError("the toy rank gives up")


def _failing_job(path: str, how: str, ranks, progress) -> dict:
    model = make_model()
    train = shares(path, ranks.world_size, BATCH // ranks.world_size)[ranks.rank]
    fitter = Fitter(model, optimizer=make_optimizer("ADAM", model.parameters()), callbacks=[FailOnRank(1, how)],
                    ranks=ranks)
    return fitter.fit(train, train, 2).state_dict()


@pytest.mark.parametrize("how,says", [("raise", "RuntimeError: the toy rank gives up"), ("kill", "killed by SIGKILL")])
def test_a_failing_rank_stops_the_others_and_is_named(train_file, how, says):
    with pytest.raises(RuntimeError) as err:
        run(functools.partial(_failing_job, train_file, how), SPAWN)
    message = str(err.value)
    assert "rank 1 failed" in message and says in message and "\n" not in message


# ---------------------------------------------------------------- the config block

@pytest.mark.parametrize("overrides,key,says", [
    (["train.distributed.world_size=0"], "train.distributed.world_size", "expected int >= 1, got 0"),
    (["train.distributed.backend=mpi"], "train.distributed.backend", "expected one of 'auto', 'gloo', 'nccl'"),
    (["train.distributed.backend=nccl", "train.device=cpu"], "train.distributed.backend", "train.device is cpu"),
    (["train.distributed.world_size=3"], "train.batch_size", "1024 does not divide by train.distributed.world_size"),
    (["train.distributed.timeout=0"], "train.distributed.timeout", "expected float >= 1.0"),
])
def test_a_config_error_exits_2_with_one_line_naming_the_key(overrides, key, says, capsys):
    from tracerflow.workflows import cli

    assert cli.main(["validate", *(x for o in overrides for x in ("--set", o))]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f": {key}: " in err and says in err, err


def test_nccl_without_a_visible_gpu_is_a_config_error_found_without_torch():
    import subprocess
    import sys

    code = ("import sys\nfrom tracerflow.config import ConfigError, load_config\n"
            "from tracerflow.config.gpus import visible_cuda_gpus\n"
            "try:\n    load_config(None, ('train.distributed.backend=nccl',)); print('valid')\n"
            "except ConfigError as err:\n    print(err.key)\n"
            "print(visible_cuda_gpus(), 'torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    gpus, imported = int(out[1]), out[2]
    assert imported == "False"
    assert out[0] == ("valid" if gpus else "train.distributed.backend")


def test_world_size_1_keeps_every_digest_and_2_changes_only_trainfold_s():
    from tracerflow.tasks.train_fold import TrainFold

    def task(*overrides: str) -> TrainFold:
        return TrainFold(config="", overrides=overrides, fold=0)

    plain, one = task(), task("train.distributed.world_size=1", "train.distributed.backend=gloo")
    two = task("train.distributed.world_size=2")
    assert plain.config_ref == one.config_ref == two.config_ref
    assert plain.digest() == one.digest() != two.digest()
    assert plain.inputs_digest() == two.inputs_digest()  # a checkpoint resumes across world sizes
    assert "distributed" not in plain.cfg.payload(plain.digest())
    upstream = plain.requires()["sample"]
    assert upstream.digest() == two.requires()["sample"].digest()


# ---------------------------------------------------------------- loader workers, a schedule's end

def _workers_job(path: str, ranks, progress) -> list[float]:
    """Two epochs over a share read by two DataLoader workers; the steps each rank took, summed."""
    from tracerflow.training import Loader

    model = make_model()
    share = shares(path, ranks.world_size, 96 // ranks.world_size)[ranks.rank]
    loader = Loader(share, workers=2)
    fitter = Fitter(model, optimizer=make_optimizer("ADAM", model.parameters()), ranks=ranks)
    fitter.fit(loader, loader, 2)
    return ranks.sum([fitter.iteration, len(loader), ranks.rank])


def test_with_loader_workers_every_rank_takes_its_share_s_count_of_steps(train_file):
    steps, counts, rank_sum = run(functools.partial(_workers_job, train_file), SPAWN)[0]
    assert rank_sum == 1 and steps == 2 * counts  # both ranks, both epochs: len() steps each


def test_a_one_cycle_schedule_that_runs_out_keeps_its_last_rate(train_file):
    from tracerflow.training import make_scheduler

    model = make_model()
    data = shares(train_file, 1, 200)[0]
    optimizer = make_optimizer("ADAM", model.parameters(), {"lr": 0.01})
    scheduler = make_scheduler("OneCycle", optimizer, {}, steps_per_epoch=len(data) - 2, epochs=1)
    Fitter(model, optimizer=optimizer, scheduler=scheduler).fit(data, data, 1)  # two steps past its end
    assert scheduler.last_epoch == scheduler.total_steps
