"""WriteTrainSample[split]: the umami train file and/or LUMIN fold file of one resampled split."""
from __future__ import annotations

from pathlib import Path

import luigi

from tracerflow.io.resampled_file import ResampledFile
from tracerflow.tasks.base import H5Target, TracerflowTask
from tracerflow.tasks.resample import Resample
from tracerflow.templates.loader import load_template
from tracerflow.write import ScaleAccumulator, read_embedded_scale_dict, write_folds, write_scale_dict, write_umami
from tracerflow.write import fold_file, umami_file
from tracerflow.write.gather import Columns, SourcePaths, TrainChunks

SCALE_SPLIT = "train"


class WriteTrainSample(TracerflowTask):
    """Scaled train sample of one split; the scale dict comes from the train split.

    Writes ``train_sample/<split>.h5`` (umami layout) and/or ``<split>_folds.h5`` (LUMIN);
    the train split also writes ``scale_dict.json`` beside them for umami users. Other splits
    read the dict stored inside the train split's files, so the JSON is a copy, not a dependency.
    """

    split = luigi.Parameter(description="a split named in resample.splits")

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
            out["umami"] = H5Target(self.out_dir() / f"{self.split}.h5", self.digest(), umami_file.SCHEMA)
        if fmt in ("folds", "both"):
            out["folds"] = H5Target(self.out_dir() / f"{self.split}_folds.h5", self.digest(), fold_file.SCHEMA)
        return out

    def columns(self) -> Columns:
        write = self.cfg["write"]
        tracks = write["tracks"]
        track_vars = tracks["variables"]
        if track_vars is None:
            track_vars = list(load_template(self.cfg, "graph").node_features)
        return Columns(tuple(write["jets"]["variables"]), tuple(write["add_labels"]), tuple(track_vars),
                       tuple(tracks["labels"]), tracks["max_tracks"])

    def run(self) -> None:
        cfg = self.cfg
        write = cfg["write"]
        resampled = ResampledFile(self.input()["resampled"].path)
        root = cfg.output_root
        sources = [SourcePaths(root / "selections" / s / f"{Path(f).with_suffix('')}.h5",
                               root / "graphs" / s / f"{Path(f).with_suffix('')}.h5") for s, f in resampled.sources]
        columns = self.columns()
        self.set_status_message(f"WriteTrainSample {self.split}: gathering {len(resampled)} jets")
        with TrainChunks(resampled, sources, columns, n_folds=write["n_folds"], seed=cfg.seed,
                         chunk_size=write["chunk_size"], tmp_dir=self.out_dir().parent) as chunks:
            scale_dict = self._scale_dict(chunks, columns)
            common = {"config_digest": self.digest(), "created_by": repr(self), "compression": write["compression"],
                      "attrs": {"split": self.split, "n_folds": write["n_folds"]}}
            outputs = self.output()
            if "umami" in outputs:
                self.set_status_message(f"WriteTrainSample {self.split}: umami file")
                write_umami(outputs["umami"].path, chunks, class_names=resampled.classes,
                            jet_vars=columns.jet_vars, track_vars=columns.track_vars, scale_dict=scale_dict,
                            track_label_names=columns.track_labels, add_label_names=columns.add_labels,
                            precision=write["precision"], concat_jet_tracks=write["concat_jet_tracks"],
                            max_tracks=columns.max_tracks, **common)
            if "folds" in outputs:
                self.set_status_message(f"WriteTrainSample {self.split}: fold file")
                write_folds(outputs["folds"].path, chunks, n_folds=write["n_folds"], cont_feats=columns.jet_vars,
                            targ_feats=("label", *columns.add_labels), matrix_feats=columns.track_vars,
                            scale_dict=scale_dict, class_names=resampled.classes,
                            max_tracks=columns.max_tracks, **common)
        self.set_progress_percentage(100)

    def _scale_dict(self, chunks: TrainChunks, columns: Columns) -> dict:
        """Mean/std from this split's jets for the train split, else the train split's dict."""
        if self.split != SCALE_SPLIT:
            train = next(iter(self.input()["scaling"].values())).path
            return read_embedded_scale_dict(train)
        groups = self.cfg["write"]["jets"], self.cfg["write"]["tracks"]
        accumulator = ScaleAccumulator(
            columns.jet_vars, columns.track_vars,
            log={"jets": groups[0]["log"], "tracks": groups[1]["log"]},
            no_norm={"jets": groups[0]["no_norm"], "tracks": groups[1]["no_norm"]},
        )
        for chunk in chunks:
            accumulator.update(chunk)
        scale_dict = accumulator.result()
        write_scale_dict(self.scale_dict_path(), scale_dict)
        return scale_dict
