"""ConvertTFRecords[split]: TFRecord shards of one split's umami train file, for tf.data users."""
from __future__ import annotations

import json
from pathlib import Path

import luigi

from tracerflow.tasks.base import TracerflowTask
from tracerflow.tasks.progress import count
from tracerflow.tasks.write_train_sample import WriteTrainSample
from tracerflow.tfrecords.writer import METADATA


class MetadataTarget(luigi.LocalTarget):
    """A shard directory, complete when its ``metadata.json`` (written last) has the current digest."""

    def __init__(self, directory: Path, digest: str) -> None:
        super().__init__(str(directory / METADATA))
        self.directory = directory
        self.digest = digest

    def exists(self) -> bool:
        return self.status() == "ok"

    def status(self) -> str:
        """'ok', 'missing', 'unreadable' or 'config changed', as :class:`~tracerflow.tasks.H5Target`."""
        path = Path(self.path)
        if not path.exists():
            return "missing"
        try:
            metadata = json.loads(path.read_text())
        except (OSError, ValueError):
            return "unreadable"
        return "ok" if metadata.get("config_digest") == self.digest else "config changed"

    def stored_digest(self) -> str | None:
        """The config digest of the shards on disk (None when there is none to read)."""
        try:
            digest = json.loads(Path(self.path).read_text()).get("config_digest")
        except (OSError, ValueError, AttributeError):
            return None
        return digest if isinstance(digest, str) else None


class ConvertTFRecords(TracerflowTask):
    """Shards of ``tfrecords.chunk_size`` jets plus metadata.json in ``tfrecords/<split>/``."""

    split = luigi.Parameter(description="a split named in tfrecords.splits")

    block = "tfrecords"

    @classmethod
    def instances(cls, cfg) -> list[dict]:
        return [{"split": s} for s in cfg["tfrecords"]["splits"]]

    def requires(self) -> WriteTrainSample:
        return WriteTrainSample(split=self.split, **self.config_params())

    def digest(self) -> str:
        block = self.cfg["tfrecords"]
        return self.cfg.digest("tfrecords", upstream=[self.requires().digest()],
                               extra={"tfrecords.chunk_size": block["chunk_size"]})

    def output(self) -> MetadataTarget:
        return MetadataTarget(self.cfg.output_root / "tfrecords" / self.split, self.digest())

    def run(self) -> None:
        from tracerflow.tfrecords.writer import write_tfrecords

        self.remove_stale()
        block = self.cfg["tfrecords"]
        self.report(0.0, f"ConvertTFRecords {self.split}: encoding shards of {block['chunk_size']:,} jets")
        metadata = write_tfrecords(self.input()["umami"].path, self.output().directory, chunk_size=block["chunk_size"],
                        n_add_vars=block["n_add_vars"], config_digest=self.digest(), created_by=self.created_by(),
                                   progress=lambda done, total: self.report(
                                       done / max(total, 1), f"ConvertTFRecords {self.split}: {count(done, total, 'jets')} encoded"))
        self.report(1.0, f"ConvertTFRecords {self.split}: {count(metadata['n_jets'], metadata['n_jets'], 'jets')} "
                         f"in {len(metadata['shards'])} shards", final=True)
