"""Predict: out-of-fold predictions of the train split, fold ensembles of the other splits and of the
samples in ``predict.samples``, metrics, plots, the report, exported models."""
from __future__ import annotations

from pathlib import Path

from tracerflow.evaluate import predictions_file
from tracerflow.resample.classes import resampled_samples
from tracerflow.tasks.apply_selections import ApplySelections
from tracerflow.tasks.base import H5Target, TracerflowTask, file_groups
from tracerflow.tasks.prepare_sample import PrepareSample
from tracerflow.tasks.progress import count
from tracerflow.tasks.resample import Resample
from tracerflow.tasks.train_fold import TrainFold, trained_folds
from tracerflow.tasks.write_train_sample import WriteTrainSample


class Predict(TracerflowTask):
    """``predict/out_of_fold.h5``, ``predict/<split>.h5`` per other split, ``predict/sample_<name>.h5`` per
    sample in ``predict.samples``, ``metrics.json``, ``plots/``, ``report.html`` and
    ``models/fold_<k>.<format>`` per ``predict.export``; outputs an earlier config left are removed first."""

    block = "train"

    @classmethod
    def instances(cls, cfg) -> list[dict]:
        return [{}]

    def requires(self) -> dict:
        """The fold models, the splits' train files, the predict samples' train files, and for the
        report the resampled splits (their plots) and the selections files (their cutflows)."""
        params, cfg = self.config_params(), self.cfg
        return {
            "folds": {k: TrainFold(fold=k, **params) for k in trained_folds(cfg)},
            "samples": {s: WriteTrainSample(split=s, **params) for s in cfg["resample"]["splits"]},
            "predict_samples": {s: PrepareSample(sample=s, **params) for s in cfg["predict"]["samples"]},
            "resampled": {s: Resample(split=s, **params) for s in cfg["resample"]["splits"]},
            "selections": [ApplySelections(sample=s, file=g[0], **params)
                           for s in resampled_samples(cfg) for g in file_groups(cfg, s)],
        }

    def digest(self) -> str:
        needs = self.requires()
        upstream = [t.digest() for group in ("folds", "samples", "predict_samples") for t in needs[group].values()]
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
        models = {k: Path(t.path) for k, t in inputs["folds"].items()}
        report = ReportInputs(
            title=f"{cfg['project']['name']}: tracerflow report",
            selections=[Path(t.path) for group in inputs["selections"] for t in group.values()],
            resample_plots=sorted(p for t in inputs["resampled"].values()
                                  for p in (Path(t.path).parent / "plots").glob(f"resample_{Path(t.path).stem}_*.png")),
            epochs_csv=[path.parent / "epochs.csv" for path in models.values()])
        run_predict(self.out_dir(), settings=settings_from_config(cfg),
                    models=models,
                    splits={s: t["umami"].path for s, t in inputs["samples"].items()},
                    samples={s: t.path for s, t in inputs["predict_samples"].items()},
                    ensemble_mode=block["ensemble"], batch_size=cfg["train"]["batch_size"],
                    export_formats=block["export"], config_digest=self.digest(), created_by=self.created_by(),
                    report=report, progress=lambda done, total, message: self.report(done / total, message))
        self.report(1.0, f"Predict: {count(len(models), len(models), 'folds')} predicted", final=True)
