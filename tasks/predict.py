"""Predict: out-of-fold predictions of the train split, fold ensembles of the other splits and of the
samples in ``predict.samples``, metrics, plots, the report, exported models."""
from __future__ import annotations

from pathlib import Path

from tracerflow.evaluate import predictions_file
from tracerflow.resample.classes import resampled_samples
from tracerflow.resample.gather import source_paths
from tracerflow.tasks.base import H5Target, TracerflowTask
from tracerflow.tasks.prepare_sample import PrepareSample
from tracerflow.tasks.train_fold import TrainFold
from tracerflow.tasks.write_train_sample import WriteTrainSample


def trained_folds(cfg) -> list[int]:
    """``train.folds`` (kFold) or every fold of ``write.n_folds``."""
    folds = cfg["train"]["folds"]
    return sorted(set(folds)) if folds is not None else list(range(cfg["write"]["n_folds"]))


class Predict(TracerflowTask):
    """``predict/out_of_fold.h5``, ``predict/<split>.h5`` per other split, ``predict/sample_<name>.h5`` per
    sample in ``predict.samples``, ``metrics.json``, ``plots/``, ``report.html`` and
    ``models/fold_<k>.<format>`` per ``predict.export``; outputs an earlier config left are removed first."""

    def requires(self) -> dict:
        params = self.config_params()
        return {
            "folds": {k: TrainFold(fold=k, **params) for k in trained_folds(self.cfg)},
            "samples": {s: WriteTrainSample(split=s, **params) for s in self.cfg["resample"]["splits"]},
            "predict_samples": {s: PrepareSample(sample=s, **params) for s in self.cfg["predict"]["samples"]},
        }

    def digest(self) -> str:
        needs = self.requires()
        upstream = [t.digest() for group in needs.values() for t in group.values()]
        return self.cfg.digest("predict", upstream=upstream)

    def out_dir(self) -> Path:
        return self.cfg.output_root / "predict"

    def output(self) -> H5Target:
        return H5Target(self.out_dir() / "out_of_fold.h5", self.digest(), predictions_file.SCHEMA, predictions_file.SCHEMA_VERSION)

    def run(self) -> None:
        from tracerflow.evaluate.predict import ReportInputs, remove_stale_outputs, run_predict, settings_from_config

        self.remove_stale()
        cfg, block, inputs = self.cfg, self.cfg["predict"], self.input()
        folds = trained_folds(cfg)
        remove_stale_outputs(self.out_dir(), splits=list(cfg["resample"]["splits"]), samples=block["samples"],
                             folds=folds, export_formats=block["export"])
        sources = [(s, f.logical) for s in resampled_samples(cfg) for f in cfg.sample_files(s)]
        report = ReportInputs(
            title=f"{cfg['project']['name']}: tracerflow report",
            selections=[paths.selections for paths in source_paths(cfg.output_root, sources)],
            resample_plots=sorted((cfg.output_root / "resample" / "plots").glob("*.png")),
            epochs_csv=[TrainFold(fold=k, **self.config_params()).out_dir() / "epochs.csv" for k in folds])
        run_predict(self.out_dir(), settings=settings_from_config(cfg),
                    models={k: t.path for k, t in inputs["folds"].items()},
                    splits={s: t["umami"].path for s, t in inputs["samples"].items()},
                    samples={s: t.path for s, t in inputs["predict_samples"].items()},
                    ensemble_mode=block["ensemble"], batch_size=cfg["train"]["batch_size"],
                    export_formats=block["export"], config_digest=self.digest(), created_by=repr(self),
                    report=report, status=self.set_status_message)
        self.set_progress_percentage(100)
