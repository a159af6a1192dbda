"""TrainBackgroundGenerator: the background generator trained on the toy's reference simulation
(``background`` block), its payload put into the project's conditions store, and its quality
report against the simulation."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tracerflow.io.h5target import H5Writer
from tracerflow.tasks.base import H5Target, TracerflowTask

SCHEMA = "tracerflow.background_generator"
SCHEMA_VERSION = 1


class TrainBackgroundGenerator(TracerflowTask):
    """``background/<model>.h5``: which payload (global tag, name, revision, sha256) of
    ``background/conditions`` holds the trained generator, and its quality figures;
    ``<model>.report.html`` beside it, and ``<model>.checkpoint.pt`` to resume from."""

    block = "background"

    @classmethod
    def needs_block(cls, cfg) -> bool:
        """A background block describes this stage unless its overlay reads a payload made elsewhere
        (``payload`` shipped or a checkpoint path): nothing is trained then."""
        block = cfg["background"]
        return block is not None and (block["overlay"] != "generated" or block["payload"] == "trained")

    @classmethod
    def not_described(cls, cfg) -> str:
        block = cfg["background"]
        if block is None:
            return super().not_described(cfg)
        return (f"overlays the payload {block['payload']!r}: nothing to train (background.payload: trained trains "
                "the generator in the run)")

    @classmethod
    def instances(cls, cfg) -> list[dict]:
        return [{}]

    def requires(self) -> list:
        return []

    def digest(self) -> str:
        """The seed and the background block but for how BuildEvents overlays (OVERLAY_KEYS)."""
        from tracerflow.config.schema import OVERLAY_KEYS

        return self.memo("digest", lambda: self.cfg.digest("project.seed", extra={"background": {
            k: v for k, v in self.cfg["background"].items() if k not in OVERLAY_KEYS}}))

    def out_dir(self) -> Path:
        return self.cfg.output_root / "background"

    def output(self) -> H5Target:
        model = self.cfg["background"]["model"]
        return H5Target(self.out_dir() / f"{model}.h5", self.digest(), SCHEMA, SCHEMA_VERSION)

    def run(self) -> None:
        from tracerflow.background.conditions import ConditionsStore
        from tracerflow.background.generator import BackgroundGenerator, payload_name, release_threads
        from tracerflow.background.quality import GOALS, compare, report_html, summarize
        from tracerflow.background.train import fit_payload, train_settings
        from tracerflow.seeding import derive_seed
        from tracerflow.toy.pixel_background import BackgroundPhysics, simulate_events

        self.remove_stale()
        cfg, block = self.cfg, self.cfg["background"]
        name = block["model"]
        settings = train_settings(block, cfg.seed)
        seed, physics = settings.seed, BackgroundPhysics.of(block["physics"])
        self.out_dir().mkdir(parents=True, exist_ok=True)
        # the clusters model is fitted (no steps, no checkpoint), an image model trained from its checkpoint
        model, state, metadata = fit_payload(block, cfg.seed, checkpoint=self.out_dir() / f"{name}.checkpoint.pt",
                                             progress=lambda done, text: self.report(
                                                 0.8 * done, f"TrainBackgroundGenerator {name}: {text}"))

        store = ConditionsStore(self.out_dir() / "conditions")
        revision = store.put(block["globaltag"], payload_name(name), model.state_dict(), metadata)
        generator = BackgroundGenerator(name, seed=seed, nintra=block["nintra"], ninter=block["ninter"],
                                        globaltag=block["globaltag"], store=store, revision=revision)
        n = block["train"]["evaluation_events"]
        self.report(0.85, f"TrainBackgroundGenerator {name}: generating and simulating {n:,} events for the report")
        hashes = np.array([derive_seed(seed, "background-evaluation", i) for i in range(2 * n)], dtype=np.uint64)
        try:
            generator.initialize()
            generated = summarize(settings.geometry, generator.events(hashes[:n]), n)
        finally:
            release_threads()  # what runs next in this process gets its usual threads
        reference = summarize(settings.geometry, simulate_events(settings.geometry, physics, cfg.seed, hashes[n:])[1], n)
        comparison = compare(generated, reference)
        report_html({name: comparison}, {name: generated, "simulation": reference},
                    self.out_dir() / f"{name}.report.html", reference="simulation",
                    title=f"Background generator {name}: generated vs the reference simulation")
        payload = store.get(block["globaltag"], payload_name(name), revision)
        figures = comparison.as_dict()
        with H5Writer(self.output().path, SCHEMA, SCHEMA_VERSION, self.digest(), self.created_by(),
                      attrs={"globaltag": block["globaltag"], "payload": payload_name(name), "revision": revision,
                             "sha256": payload.sha256, "steps": state.step, "evaluation_events": n,
                             "passes_goals": all(comparison.passes(GOALS).values())}) as writer:
            writer.write("quality", np.array(json.dumps(figures, sort_keys=True), dtype=object).astype("S"))
            writer.write("wasserstein", np.asarray(state.wasserstein, dtype=np.float64))
        self.report(1.0, f"TrainBackgroundGenerator {name}: payload {payload_name(name)} revision {revision}", final=True)
