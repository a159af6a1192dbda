"""Predict: out-of-fold predictions of the train split, fold ensembles of the other splits and of the
samples in ``predict.samples``, metrics, exported models."""
from __future__ import annotations

from pathlib import Path

from tracerflow.evaluate import predictions_file
from tracerflow.evaluate.export import export_models
from tracerflow.evaluate.predict import fold_ensemble, input_sizes, out_of_fold, write_predict_outputs
from tracerflow.evaluate.report import REPORT_ROCS, summed_cutflow, write_report
from tracerflow.io.model_file import load_model
from tracerflow.tasks.base import H5Target, TracerflowTask
from tracerflow.tasks.prepare_sample import PrepareSample
from tracerflow.tasks.resample import resampled_samples
from tracerflow.tasks.train_fold import TrainFold
from tracerflow.tasks.write_train_sample import WriteTrainSample
from tracerflow.resample.gather import source_paths


def trained_folds(cfg) -> list[int]:
    """``train.folds`` (kFold) or every fold of ``write.n_folds``."""
    folds = cfg["train"]["folds"]
    return sorted(set(folds)) if folds is not None else list(range(cfg["write"]["n_folds"]))


def with_samples(metrics: dict) -> dict:
    """Metrics whose ensemble columns also hold the predict samples', as the report's table shows them."""
    samples = {f"sample {name}": block for name, block in metrics.get("samples", {}).items()}
    return {**metrics, "ensembles": {**metrics["ensembles"], **samples}}


class Predict(TracerflowTask):
    """``predict/out_of_fold.h5``, ``predict/<split>.h5`` per other split, ``predict/sample_<name>.h5`` per
    sample in ``predict.samples``, ``metrics.json``, plots and ``models/fold_<k>.<format>`` per ``predict.export``."""

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
        return H5Target(self.out_dir() / "out_of_fold.h5", self.digest(), predictions_file.SCHEMA)

    def run(self) -> None:
        cfg = self.cfg
        block, batch = cfg["predict"], cfg["train"]["batch_size"]
        loaded = {k: load_model(t.path) for k, t in self.input()["folds"].items()}
        models = {k: model for k, (model, _) in loaded.items()}
        losses = {k: float(attrs["best_loss"]) for k, (_, attrs) in loaded.items()}
        samples = {s: t["umami"].path for s, t in self.input()["samples"].items()}
        self.set_status_message("Predict: out-of-fold predictions")
        oof = out_of_fold(models, samples["train"], batch_size=batch)
        ensembles = {}
        for split, path in samples.items():
            if split != "train":
                self.set_status_message(f"Predict: {split} with the fold ensemble")
                ensembles[split] = fold_ensemble(models, losses, path, mode=block["ensemble"], batch_size=batch)
        predict_samples = {}
        for name, target in self.input()["predict_samples"].items():
            self.set_status_message(f"Predict: sample {name} with the fold ensemble")
            predict_samples[name] = fold_ensemble(models, losses, target.path, mode=block["ensemble"], batch_size=batch)
        n_jet_vars, n_track_vars = input_sizes(samples["train"])
        export_models(models, self.out_dir() / "models", block["export"], n_jet_vars=n_jet_vars,
                      n_track_vars=n_track_vars)
        epochs_csv = [TrainFold(fold=k, **self.config_params()).out_dir() / "epochs.csv" for k in sorted(models)]
        self.write_report(write_predict_outputs, oof, ensembles, predict_samples, [p for p in epochs_csv if p.exists()])
        self.set_progress_percentage(100)

    def write_report(self, write_outputs, oof, ensembles, predict_samples, epochs_csv: list[Path]) -> None:
        """Metrics, plots and ``report.html`` first, the predictions files (the target last)."""
        cfg, out = self.cfg, self.out_dir()
        plots = out / "plots"
        sources = [(s, f.logical) for s in resampled_samples(cfg) for f in cfg.sample_files(s)]
        selections = [paths.selections for paths in source_paths(cfg.output_root, sources)]

        def report(metrics: dict) -> None:
            write_report(out / "report.html", title=f"{cfg['project']['name']}: tracerflow report",
                         cutflow=summed_cutflow(selections),
                         resample_plots=sorted((cfg.output_root / "resample" / "plots").glob("*.png")),
                         learning_curves=plots / "learning_curves.png" if epochs_csv else None,
                         roc={heading: plots / name for heading, name in REPORT_ROCS.items()},
                         discriminant=plots / "discriminant.png" if (plots / "discriminant.png").exists() else None,
                         metrics=with_samples(metrics))

        write_outputs(out, oof=oof, ensembles=ensembles, fc=cfg["predict"]["fc"], epochs_csv=epochs_csv,
                      config_digest=self.digest(), created_by=repr(self), samples=predict_samples,
                      before_target=report)
