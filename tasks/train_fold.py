"""TrainFold[fold]: one model trained on every fold of the train split but ``fold``."""
from __future__ import annotations

from pathlib import Path

import luigi

from tracerflow.io import model_file
from tracerflow.tasks.base import H5Target, TracerflowTask
from tracerflow.tasks.convert_tfrecords import ConvertTFRecords
from tracerflow.tasks.write_train_sample import WriteTrainSample

TRAIN_SPLIT = "train"
#: train keys a continued training may change: how long, how patient, and where or how it runs
#: (a checkpoint holds the plain model, so a run stopped at one world size resumes at another).
RESUMABLE_CHANGES = ("epochs", "early_stopping", "continue_training", "loader_workers", "tensorboard", "device",
                     "folds", "distributed")


def trained_folds(cfg) -> list[int]:
    """``train.folds`` (kFold) or every fold of ``write.n_folds``."""
    folds = cfg["train"]["folds"]
    return sorted(set(folds)) if folds is not None else list(range(cfg["write"]["n_folds"]))


class TrainFold(TracerflowTask):
    """``train/fold_<k>/model.h5`` plus checkpoints and CSV logs beside it; folds run as independent tasks."""

    fold = luigi.IntParameter(description="the fold validated on (0 .. write.n_folds - 1)")

    block = "train"

    @classmethod
    def instances(cls, cfg) -> list[dict]:
        return [{"fold": k} for k in trained_folds(cfg)]

    def requires(self) -> dict[str, luigi.Task]:
        """The train split's files, and its TFRecords when ``train.data`` is tfrecords."""
        needs: dict[str, luigi.Task] = {"sample": WriteTrainSample(split=TRAIN_SPLIT, **self.config_params())}
        if self.cfg["train"]["data"] == "tfrecords":
            needs["tfrecords"] = ConvertTFRecords(split=TRAIN_SPLIT, **self.config_params())
        return needs

    def digest(self) -> str:
        """Of the train block, its inputs and the fold; and of the world size when it is > 1 (it
        changes the batches each step sees; ``train.distributed`` is otherwise left out, so a config
        without it keeps its digests, and the backend or timeout change nothing)."""
        upstream = [t.digest() for t in self.requires().values()]
        world = self.cfg["train"]["distributed"]["world_size"]
        extra = {"fold": self.fold} if world == 1 else {"fold": self.fold, "world_size": world}
        return self.cfg.digest("project.seed", "train", upstream=upstream, extra=extra)

    def inputs_digest(self) -> str:
        """The digest a checkpoint must carry to be resumed: the data and every setting but those that
        may change between a run and its continuation (epochs, patience, continue_training itself,
        and where or how the training runs)."""
        upstream = [t.digest() for t in self.requires().values()]
        train = {k: v for k, v in self.cfg["train"].items() if k not in RESUMABLE_CHANGES}
        return self.cfg.digest("project.seed", upstream=upstream, extra=[self.fold, train])

    def out_dir(self) -> Path:
        return self.cfg.output_root / "train" / f"fold_{self.fold}"

    def output(self) -> H5Target:
        return H5Target(self.out_dir() / "model.h5", self.digest(), model_file.SCHEMA, model_file.SCHEMA_VERSION)

    def run(self) -> None:
        from tracerflow.training.fold import train_fold

        self.remove_stale()
        cfg = self.cfg
        self.report(0.0, f"TrainFold {self.fold}: reading the train split")
        inputs = self.input()
        tfrecords_dir = inputs["tfrecords"].directory if "tfrecords" in inputs else None
        result = train_fold(inputs["sample"]["umami"].path, self.fold, cfg["write"]["n_folds"], cfg["train"],
                            self.out_dir(), seed=cfg.seed, tfrecords_dir=tfrecords_dir,
                            inputs_digest=self.inputs_digest(),
                            progress=lambda fraction, message: self.report(fraction, f"TrainFold {self.fold}: {message}"))
        history = result.history
        if not result.writes_outputs:  # one of several ranks started by torchrun or srun: rank 0 writes
            self.report(1.0, f"TrainFold {self.fold}: rank {result.rank} done; rank 0 writes the model", final=True)
            return
        model_file.write_model(
            self.output().path, result.model, result.model_config, config_digest=self.digest(), created_by=self.created_by(),
            attrs={"fold": self.fold, **result.attrs(), "best_loss": float(history.best_loss),
                   "best_epoch": int(history.best_epoch), "epochs_run": len(history.epochs),
                   "stopped_early": bool(history.stopped_early)},
        )
        self.report(1.0, f"TrainFold {self.fold}: {len(history.epochs)} epochs, best val loss "
                         f"{history.best_loss:.4f} at epoch {history.best_epoch + 1}", final=True)
