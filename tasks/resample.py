"""Resample[split]: the jets of one split, with copies and weights, globally shuffled, with their tracks."""
from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import luigi

from tracerflow.io import resampled_file
from tracerflow.io.atomic import write_atomic
from tracerflow.io.events_file import generator_weight_sum
from tracerflow.resample import plot_report, resample_report
from tracerflow.resample.classes import resample_spec, resampled_samples
from tracerflow.resample.inputs import only_split, physics_scales, selection_chunks
from tracerflow.resample.stream import check_split, resample_split
from tracerflow.tasks.apply_selections import ApplySelections
from tracerflow.tasks.base import H5Target, TracerflowTask, file_groups
from tracerflow.tasks.build_graphs import BuildGraphs
from tracerflow.tasks.progress import count

#: The passes Resample makes over the selections files, and the share of its time they take
#: (the gather of the kept jets with their tracks the rest): what its progress percentage assumes.
READ_PASSES = 2
READ_SHARE = 0.7


class Resample(TracerflowTask):
    """One split of the selected jets of every sample but ``predict.samples``, resampled as the
    ``resample`` block says.

    Beside the target: ``report_<split>.json`` (counts, duplicates, agreement with the
    target class) and ``plots/resample_<split>_<variable>.png``.
    """

    split = luigi.Parameter(description="a split named in resample.splits")

    block = "resample"

    @classmethod
    def instances(cls, cfg) -> list[dict]:
        return [{"split": s} for s in cfg["resample"]["splits"]]

    def requires(self) -> dict[str, list]:
        """The selections files of every resampled sample file, and the graphs files their jets
        gather with: required directly, since luigi looks no further up than a complete task."""
        cfg = self.cfg
        groups = [(s, g[0]) for s in resampled_samples(cfg) for g in file_groups(cfg, s)]
        needs = {"selections": [ApplySelections(sample=s, file=f, **self.config_params()) for s, f in groups]}
        if cfg["graph"] is not None:
            needs["graphs"] = [BuildGraphs(sample=s, file=f, **self.config_params()) for s, f in groups]
        return needs

    def selections(self) -> list[ApplySelections]:
        return self.requires()["selections"]

    def sources(self) -> list[tuple[str, str]]:
        """(sample, logical file) of every input file whose jets this split draws from, in order."""
        return [(t.sample, f) for t in self.selections() for f in t.files()]

    def digest(self) -> str:
        upstream = [d for t in self.selections() for f in t.files() for d in t.gathered_digests(f)]
        cfg = self.cfg
        samples = {s: {k: cfg["samples"][s][k] for k in ("label", "cross_section")} for s in resampled_samples(cfg)}
        return cfg.digest("project.seed", "project.luminosity", "resample", upstream=upstream, extra={"samples": samples})

    def physics_scales(self) -> list[float] | None:
        """Each source's factor to physics weights (:func:`physics_scales`), or None when no sample
        has a cross section or a generator weight."""
        cfg = self.cfg
        samples = resampled_samples(cfg)
        if not any(cfg["samples"][s]["cross_section"] is not None
                   or cfg.block_for("event", s)["generator_weight"] is not None for s in samples):
            return None
        events = [t.input()["events"][f].path for t in self.selections() for f in t.files()]
        return physics_scales([s for s, _ in self.sources()], [generator_weight_sum(p) for p in events],
                              {s: cfg["samples"][s]["cross_section"] for s in samples},
                              cfg["project"]["luminosity"])

    def output(self) -> H5Target:
        return H5Target(self.out_dir() / f"{self.split}.h5", self.digest(), resampled_file.SCHEMA, resampled_file.SCHEMA_VERSION)

    def out_dir(self) -> Path:
        return self.cfg.output_root / "resample"

    def run(self) -> None:
        from tracerflow.resample.bucketed import KeptJetsFile, scratch_directory, write_kept
        from tracerflow.resample.gather import SourcePaths

        self.remove_stale()
        cfg = self.cfg
        block = cfg["resample"]
        spec, classes = resample_spec(cfg)
        sources = self.sources()
        inputs = self.input()
        selections = [group[f].path for group in inputs["selections"] for f in group]
        graphs = [group[f].path for group in inputs["graphs"] for f in group] if "graphs" in inputs else None
        columns = [spec.label, *spec.variables]
        constants = [{} if classes.value_of_sample(s) is None else {spec.label: classes.value_of_sample(s)}
                     for s, _ in sources]
        chunks = self.watched(selection_chunks(selections, columns, block["chunk_size"], weight=block["weight"],
                                               constants=constants, physics=self.physics_scales()), len(selections))
        out_dir = self.out_dir()
        out_dir.mkdir(parents=True, exist_ok=True)
        with scratch_directory(self.output().path) as scratch, KeptJetsFile(scratch / "kept") as kept:
            result = resample_split(spec, only_split(chunks, spec, self.split), self.split, kept, kept.blocks)
            kept.close()
            for warning in check_split(result, spec):
                warnings.warn(warning, stacklevel=1)
            report = resample_report({self.split: result}, spec)
            write_atomic(out_dir / f"report_{self.split}.json", json.dumps(report, indent=1, sort_keys=True) + "\n")
            if block["plots"]:
                plot_report({self.split: result}, spec, out_dir / "plots")
            self.report(READ_SHARE, f"Resample {self.split}: gathering {len(result):,} jets with their tracks")
            write_kept(
                self.output().path, kept, result, classes=spec.class_names, sources=sources,
                paths=[SourcePaths(Path(sel), Path(graphs[i]) if graphs else None) for i, sel in enumerate(selections)],
                config_digest=self.digest(), created_by=self.created_by(), scratch=scratch,
                attrs={"method": spec.method if result.resampled else "none",
                       "sampling_fraction": None if math.isnan(result.sampling_fraction) else result.sampling_fraction},
            )
        self.report(1.0, f"Resample {self.split}: {len(result):,} jets written", final=True)

    def watched(self, chunks, n_files: int):
        """``chunks`` reporting, as they are read, the pass over the selections files and the files done."""
        passes = [0]

        def read():
            passes[0] += 1
            k = passes[0]
            for chunk in chunks():
                done = int(chunk["source"][-1]) + 1 if len(chunk["source"]) else 0
                fraction = min((k - 1 + done / max(n_files, 1)) / READ_PASSES, 1.0) * READ_SHARE
                self.report(fraction, f"Resample {self.split}: pass {k} over the selections, "
                                      f"{count(done, n_files, 'files')}")
                yield chunk

        return read
