"""WriteTrainSample[split]: the umami train file and/or LUMIN fold file of one resampled split."""
from __future__ import annotations

from pathlib import Path

import luigi

from tracerflow.tasks.base import H5Target, TracerflowTask
from tracerflow.tasks.progress import count
from tracerflow.tasks.resample import Resample
from tracerflow.write import fold_file, read_embedded_scale_dict, umami_file

SCALE_SPLIT = "train"


class WriteTrainSample(TracerflowTask):
    """Scaled train sample of one split; the scale dict comes from the train split.

    Writes ``train_sample/<split>.h5`` (umami layout) and/or ``<split>_folds.h5`` (LUMIN);
    the train split also writes ``scale_dict.json`` beside them for umami users. Other splits
    read the dict stored inside the train split's files, so the JSON is a copy, not a dependency.
    """

    split = luigi.Parameter(description="a split named in resample.splits")

    block = "write"

    @classmethod
    def instances(cls, cfg) -> list[dict]:
        return [{"split": s} for s in cfg["resample"]["splits"]]

    def requires(self) -> dict:
        needs = {"resampled": Resample(split=self.split, **self.config_params())}
        if self.split != SCALE_SPLIT:
            needs["scaling"] = WriteTrainSample(split=SCALE_SPLIT, **self.config_params())
        return needs

    def digest(self) -> str:
        upstream = [t.digest() for t in self.requires().values()]
        return self.cfg.digest("project.seed", "write", upstream=upstream)

    def out_dir(self) -> Path:
        return self.cfg.output_root / "train_sample"

    def scale_dict_path(self) -> Path:
        return self.out_dir() / "scale_dict.json"

    def output(self) -> dict[str, H5Target]:
        fmt = self.cfg["write"]["format"]
        out = {}
        if fmt in ("umami", "both"):
            out["umami"] = H5Target(self.out_dir() / f"{self.split}.h5", self.digest(), umami_file.SCHEMA, umami_file.SCHEMA_VERSION)
        if fmt in ("folds", "both"):
            out["folds"] = H5Target(self.out_dir() / f"{self.split}_folds.h5", self.digest(), fold_file.SCHEMA, fold_file.SCHEMA_VERSION)
        return out

    def run(self) -> None:
        from tracerflow.write.train_sample import train_columns, write_train_sample

        self.remove_stale()
        cfg = self.cfg
        resampled = self.input()["resampled"].path
        scale_dict = None
        if self.split != SCALE_SPLIT:
            scale_dict = read_embedded_scale_dict(next(iter(self.input()["scaling"].values())).path)
        outputs = self.output()
        self.report(0.0, f"WriteTrainSample {self.split}: scaling and writing its jets")
        times = write_train_sample(
            resampled, train_columns(cfg), cfg["write"], seed=cfg.seed, umami_path=outputs["umami"].path if "umami" in outputs else None,
            folds_path=outputs["folds"].path if "folds" in outputs else None, scale_dict=scale_dict,
            scale_dict_json=self.scale_dict_path(), config_digest=self.digest(), created_by=self.created_by(),
            attrs={"split": self.split}, progress=self.progress_of(outputs),
        )
        self.report(1.0, f"WriteTrainSample {self.split}: {times.jets:,} jets written", final=True)

    def progress_of(self, outputs: dict):
        """``progress(file kind, jets written, jets)`` reporting each file's pass as its share of the task."""
        kinds = {"umami file": 0, "fold file": len(outputs) - 1}

        def progress(kind: str, done: int, total: int) -> None:
            fraction = (kinds[kind] + done / max(total, 1)) / len(outputs)
            self.report(fraction, f"WriteTrainSample {self.split}: {kind}, {count(done, total, 'jets')} written")

        return progress
