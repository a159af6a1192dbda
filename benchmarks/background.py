"""The pixel-background generator (lib/background): how fast it draws events, and how close they come
to the toy's reference simulation.

Run as ``python benchmarks/background.py`` (``benchmarks/run.py`` runs it too unless
``--skip-background``; an earlier record is kept when it is skipped). Everything runs in this
process with torch on 2 threads (``torch.set_num_threads(2)``, generators with ``nintra=2``,
``ninter=1``), the default physics (``BackgroundPhysics.default()``), the seeds of a default config
(``project.seed`` 42, the generator's seed derived from it by Belle II's rule, as
TrainBackgroundGenerator does with ``background.seed: null``), and follows TrainBackgroundGenerator
(tasks/train_background.py): the model is fitted (``clusters``: ``fit_clusters``) or trained
(``train``, WGAN-GP), its state dict put into a conditions store (a fresh one below
``benchmarks/work/background/``), and a :class:`BackgroundGenerator` loads it from there and draws
events with ``events(hashes)``. Untrained models (speed only) get seeded initial weights. Rows:

1. **Speed, default geometry** (10 sensors of 32 x 96): the ``clusters`` model fitted on
   ``background.train.fit_events`` (20,000) simulated events draws 2,000 events with
   ``events()`` (batch 64, its default); ms per event, the fastest of 3 timed calls after a warm-up
   call of 64 events (goal <= 20 ms/event). Anchor: the ``conditioned`` model, untrained weights
   (its network's cost does not depend on them; untrained, it fires most pixels, and the time
   includes flattening them into digits), the same 2,000 events, fastest of 2 after a warm-up.
2. **Speed, Belle II geometry** (``belle2``: 40 sensors of 250 x 768): ``clusters`` fitted on
   ``background.train.fit_events`` (20,000) simulated belle2 events, the model whose quality row 5
   judges, 2,000 events drawn, fastest of 3; anchor:
   Belle II's ``convnet`` at belle2 with untrained weights, 2 events timed one by one
   (``batch_size=1``); ratio = convnet's ms/event / clusters' (goal >= 10). Beside it, Belle II's
   ``resnet`` at belle2, untrained, 2 events one by one (information).
3. **Quality, default geometry, clusters**: 10,000 generated events against 10,000 simulated ones
   (hashes ``derive_seed(seed, "background-evaluation", i)``, the first half generated, the second
   simulated, as the task does), through ``quality.summarize`` and ``quality.compare``. One row per
   goal of ``quality.GOALS``: occupancy ratio generated/simulated of the worst sensor (min, max,
   mean in the detail; goal 0.97-1.03 for every sensor), charge EMD (goal <= 1.0 ADC), mean-charge
   relative difference (goal within 3%), largest off-diagonal difference of the inter-sensor
   correlation matrices (goal <= 0.05). Anchor: IEA-GAN's published figures against Geant4
   (``quality.IEA_GAN``: worst-sensor occupancy ratio 0.681, mean 0.889, EMD 2.80 ADC, mean charge
   +10.4%); ratio = our distance from perfect / IEA-GAN's (below 1: closer to the simulation than
   IEA-GAN came to Geant4); the correlation figure has no published anchor.
4. **Quality, default geometry, convnet and resnet**: Belle II's image models trained with the
   project's WGAN-GP ``train`` for a short budget (``TRAIN_STEPS``, 20, generator steps of batch 16,
   critic steps, learning rate and gradient penalty at the ``background.train`` defaults; a fresh
   checkpoint file, so nothing is resumed), evaluated on 1,000 generated vs 1,000 simulated events:
   the same four figures, no goal (comparison only; at 1,000 events the correlation figure and the
   per-sensor ratios carry large statistical errors, see lib/background/quality.py). The detail has
   the training time, the final Wasserstein estimate and the generation time per event.
5. **Quality, Belle II geometry, clusters** (row 2's model): 40,000 generated vs 40,000 simulated
   events, the same four goals. More events than at the default geometry: with 40 sensors the
   correlation figure is the largest of 780 differences, and two simulated samples of 10,000
   belle2 events already differ by ~0.04 in it (0.02 at 40,000).

``--device cuda`` (on a machine with a GPU; ``benchmarks/gpu_check.sh`` runs it) measures rows 1
and 2 only, with the generators on that device (the image models after one untimed event, over
``DEVICE_IMAGE_EVENTS`` events), and puts the record beside the recorded block as its ``device``
entry: ``Background speed on <GPU>`` rows, reported, not gated. A CPU run keeps that entry.

Beside every ``clusters`` quality row, two simulated samples of the same size (hashes
``derive_seed(seed, "background-floor", i)``) are compared the same way: the statistical floor
of each figure at that sample size (``floor`` in the block).

Everything is seeded: the figures are the same in every run, the times are not. The load average
(1 minute) before and after each part is recorded: other processes on the 2 cores slow the times.
Results go to the ``background`` block and the ``Background ...`` rows of benchmarks/results.json
(merged as benchmarks/batch.py merges its rows). The recorded run took 10 minutes on a quiet
machine (22 with other work on the 2 cores: the image models' training and the conditioned
anchor's timing slow down most under contention).
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

HERE = Path(__file__).resolve().parent
WORK = HERE / "work" / "background"
RESULTS = HERE / "results.json"
ROW_PREFIXES = ("Background speed:", "Background quality:")
THREADS = 2
SPEED_EVENTS = 2_000
SPEED_REPEATS = 3
BELLE2_IMAGE_EVENTS = 2
QUALITY_EVENTS = 10_000
BELLE2_QUALITY_EVENTS = 40_000
DEVICE_IMAGE_EVENTS = 10
IMAGE_QUALITY_EVENTS = 1_000
IMAGE_MODELS = ("convnet", "resnet")
TRAIN_STEPS = 20
TRAIN_BATCH = 16
SPEED_GOAL_MS = 20.0
SPEEDUP_GOAL = 10.0


def _echo(line: str) -> None:
    print(line, flush=True)


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def _commit() -> str | None:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE.parent, capture_output=True, text=True)
    return done.stdout.strip() or None if done.returncode == 0 else None


def _defaults() -> tuple[int, dict[str, Any]]:
    """The default config's ``project.seed`` and ``background.train`` block."""
    from tracerflow.config.schema import BACKGROUND, BLOCKS
    from tracerflow.config.spec import Context

    seed = BLOCKS.fields["project"].fields["seed"].default
    return seed, BACKGROUND.fields["train"].default_value("background.train", Context("<defaults>"))


class _Setup:
    """What every part shares: seeds, physics, the train block's defaults, a fresh conditions store."""

    def __init__(self, device: str = "cpu") -> None:
        from tracerflow.background.conditions import ConditionsStore
        from tracerflow.background.generator import DEFAULT_GLOBALTAG, seed_from_framework
        from tracerflow.toy.pixel_background import BackgroundPhysics

        self.framework_seed, self.train_block = _defaults()
        self.seed = seed_from_framework(self.framework_seed)
        self.physics = BackgroundPhysics.default()
        self.globaltag = DEFAULT_GLOBALTAG
        self.device = device
        shutil.rmtree(WORK, ignore_errors=True)
        WORK.mkdir(parents=True)
        self.store = ConditionsStore(WORK / "conditions")

    def settings(self, model: str, geometry: str, steps: int = 1, batch_size: int | None = None):
        from tracerflow.background.train import TrainSettings
        from tracerflow.toy.pixels import geometry as as_geometry

        t = self.train_block
        return TrainSettings(model=model, geometry=as_geometry(geometry), seed=self.seed, steps=steps,
                             batch_size=batch_size or t["batch_size"], critic_steps=t["critic_steps"],
                             learning_rate=t["learning_rate"], gradient_penalty=t["gradient_penalty"],
                             checkpoint_every=steps)

    def generator(self, model, metadata: dict[str, Any]):
        """``model``'s state dict put into the store, loaded back by a BackgroundGenerator."""
        from tracerflow.background.generator import BackgroundGenerator, payload_name

        revision = self.store.put(self.globaltag, payload_name(model.name), model.state_dict(), metadata)
        gen = BackgroundGenerator(model.name, seed=self.seed, nintra=THREADS, ninter=1, globaltag=self.globaltag,
                                  store=self.store, revision=revision, device=self.device)
        gen.initialize()
        return gen

    def fitted_clusters(self, geometry: str, events: int):
        from tracerflow.background.train import fit_clusters, payload_metadata

        settings = self.settings("clusters", geometry)
        seconds, (model, state, fitted) = _timed(lambda: fit_clusters(settings, self.physics, events))
        return self.generator(model, {**payload_metadata(model, settings, self.physics, state), "fit": fitted}), seconds

    def untrained(self, name: str, geometry: str):
        """A model with seeded initial weights (for speed: the time does not depend on the weights)."""
        import torch

        from tracerflow.background.models import build_model
        from tracerflow.seeding import derive_seed

        torch.manual_seed(derive_seed(self.seed, "benchmark-untrained", name, geometry))
        model = build_model(name, geometry)
        return self.generator(model, {"model": model.config(), "untrained": True})

    def hashes(self, what: str, n: int) -> np.ndarray:
        from tracerflow.seeding import derive_seed

        return np.array([derive_seed(self.seed, what, i) for i in range(n)], dtype=np.uint64)


def _timed(action: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = action()
    return time.perf_counter() - start, result


def _speed(gen, hashes: np.ndarray, repeats: int, warm_up: int = 64) -> dict[str, Any]:
    """``gen.events(hashes)`` after a warm-up call of the first ``warm_up`` events; every repeat's time."""
    gen.events(hashes[:warm_up])
    times, digits = [], 0
    for _ in range(repeats):
        seconds, out = _timed(lambda: gen.events(hashes))
        times.append(seconds)
        digits = len(out["charge"])
    best = min(times)
    return {"events": len(hashes), "batch_size": 64, "times_s": [round(t, 4) for t in times],
            "ms_per_event": 1000.0 * best / len(hashes), "digits_per_event": digits / len(hashes)}


def _one_by_one(gen, hashes: np.ndarray, warm_up: int = 0) -> dict[str, Any]:
    """Each event of ``hashes`` timed alone (``batch_size=1``), after ``warm_up`` of them untimed;
    ms/event = the mean."""
    for h in hashes[:warm_up]:
        gen.events(np.array([h], dtype=np.uint64), batch_size=1)
    hashes = hashes[warm_up:]
    times, digits = [], 0
    for h in hashes:
        seconds, out = _timed(lambda: gen.events(np.array([h], dtype=np.uint64), batch_size=1))
        times.append(seconds)
        digits += len(out["charge"])
    return {"events": len(hashes), "batch_size": 1, "times_s": [round(t, 3) for t in times],
            "ms_per_event": 1000.0 * sum(times) / len(times), "digits_per_event": digits / len(hashes)}


def bench_speed(setup: _Setup, clusters: Mapping[str, tuple[Any, float]], echo: Callable[[str], None] = _echo,
                image_events: int = BELLE2_IMAGE_EVENTS, image_warm_up: int = 0) -> dict[str, Any]:
    """Rows 1 and 2: ms per event of clusters (``clusters``: per geometry the fitted generator and
    its fit's seconds) and of its anchors at both geometries (the image models: ``image_events``
    events one by one after ``image_warm_up`` untimed ones)."""
    out: dict[str, Any] = {}
    load_before = _load()
    hashes = setup.hashes("benchmark-speed", SPEED_EVENTS)
    gen, fit_s = clusters["default"]
    out["clusters_default"] = {**_speed(gen, hashes, SPEED_REPEATS), "fit_events": setup.train_block["fit_events"],
                               "fit_s": round(fit_s, 2)}
    echo(f"background: clusters, default: fitted in {fit_s:.1f} s, "
         f"{out['clusters_default']['ms_per_event']:.3f} ms/event")
    out["conditioned_default"] = {**_speed(setup.untrained("conditioned", "default"), hashes, 2), "untrained": True}
    echo(f"background: conditioned (untrained), default: {out['conditioned_default']['ms_per_event']:.2f} ms/event")
    out["default_load"] = [load_before, _load()]

    load_before = _load()
    gen, fit_s = clusters["belle2"]
    out["clusters_belle2"] = {**_speed(gen, hashes, SPEED_REPEATS), "fit_events": setup.train_block["fit_events"],
                              "fit_s": round(fit_s, 2)}
    echo(f"background: clusters, belle2: fitted in {fit_s:.1f} s, {out['clusters_belle2']['ms_per_event']:.3f} ms/event")
    for name in IMAGE_MODELS:
        gen = setup.untrained(name, "belle2")
        out[f"{name}_belle2"] = {**_one_by_one(gen, hashes[:image_warm_up + image_events], image_warm_up),
                                 "untrained": True, "warm_up": image_warm_up}
        echo(f"background: {name} (untrained), belle2: {out[f'{name}_belle2']['times_s']} s per event")
        del gen
    out["belle2_load"] = [load_before, _load()]
    return out


def _figures(comparison, seconds_generate: float, seconds_simulate: float) -> dict[str, Any]:
    from tracerflow.background.quality import GOALS

    c = comparison
    return {
        "n_generated": c.n_events_generated, "n_simulated": c.n_events_reference,
        "occupancy_ratio": [round(float(x), 5) for x in c.occupancy_ratio],
        "occupancy_ratio_error": [round(float(x), 5) for x in c.occupancy_ratio_error],
        "occupancy_ratio_min": c.occupancy_ratio_min, "occupancy_ratio_max": c.occupancy_ratio_max,
        "occupancy_ratio_mean": c.occupancy_ratio_mean, "occupancy_ratio_worst": c.occupancy_ratio_worst,
        "occupancy_pearson": c.occupancy_pearson, "charge_emd_adc": c.charge_emd_adc,
        "mean_charge_generated": c.mean_charge_generated, "mean_charge_reference": c.mean_charge_reference,
        "mean_charge_rel": c.mean_charge_rel, "correlation_abs": c.correlation_abs,
        "mean_cluster_size_generated": c.mean_cluster_size_generated,
        "mean_cluster_size_reference": c.mean_cluster_size_reference,
        "passes": c.passes(GOALS),
        "generate_ms_per_event": 1000.0 * seconds_generate / c.n_events_generated,
        "simulate_ms_per_event": 1000.0 * seconds_simulate / c.n_events_reference,
    }


def _evaluate(setup: _Setup, gen, n: int, floor: bool = False) -> dict[str, Any]:
    """The task's evaluation: ``n`` generated vs ``n`` simulated events, compared; with ``floor``,
    also two other simulated samples of ``n`` events compared the same way (``floor``)."""
    from tracerflow.background.quality import compare, summarize
    from tracerflow.toy.pixel_background import simulate_events

    geometry = gen.geometry

    def simulated(hashes: np.ndarray) -> tuple[float, Any]:
        seconds, (_, digits) = _timed(lambda: simulate_events(geometry, setup.physics, setup.framework_seed, hashes))
        return seconds, summarize(geometry, digits, len(hashes))

    hashes = setup.hashes("background-evaluation", 2 * n)
    seconds_generate, generated = _timed(lambda: gen.events(hashes[:n]))
    seconds_simulate, reference = simulated(hashes[n:])
    figures = _figures(compare(summarize(geometry, generated, n), reference), seconds_generate, seconds_simulate)
    if floor:
        other = setup.hashes("background-floor", 2 * n)
        c = compare(simulated(other[:n])[1], simulated(other[n:])[1])
        figures["floor"] = {"occupancy_ratio_min": c.occupancy_ratio_min, "occupancy_ratio_max": c.occupancy_ratio_max,
                            "charge_emd_adc": c.charge_emd_adc, "mean_charge_rel": c.mean_charge_rel,
                            "correlation_abs": c.correlation_abs}
    return figures


def bench_quality(setup: _Setup, clusters: Mapping[str, tuple[Any, float]],
                  echo: Callable[[str], None] = _echo) -> dict[str, Any]:
    """Rows 3 to 5: the quality figures of clusters (``clusters``: per geometry the fitted generator
    and its fit's seconds; 10,000 events at the default geometry, 40,000 at belle2) and of briefly
    trained convnet and resnet (1,000 events, default geometry)."""
    from tracerflow.background.train import payload_metadata, train

    out: dict[str, Any] = {}
    for geometry, key, events in (("default", "clusters", QUALITY_EVENTS),
                                  ("belle2", "clusters_belle2", BELLE2_QUALITY_EVENTS)):
        load_before = _load()
        gen, fit_s = clusters[geometry]
        out[key] = {"geometry": geometry, **_evaluate(setup, gen, events, floor=True),
                    "fit_events": setup.train_block["fit_events"], "fit_s": round(fit_s, 2),
                    "load": [load_before, _load()]}
        echo(f"background: clusters quality, {geometry}: {_summary_line(out[key])} (two simulated samples: "
             f"{_summary_line(out[key]['floor'])})")
    for name in IMAGE_MODELS:
        load_before = _load()
        settings = setup.settings(name, "default", steps=TRAIN_STEPS, batch_size=TRAIN_BATCH)
        checkpoint = WORK / f"{name}.checkpoint.pt"
        checkpoint.unlink(missing_ok=True)  # a fresh run: train() would resume a checkpoint of these settings
        seconds, (model, state) = _timed(lambda: train(settings, setup.physics, checkpoint))
        gen = setup.generator(model, payload_metadata(model, settings, setup.physics, state))
        out[name] = {"geometry": "default", **_evaluate(setup, gen, IMAGE_QUALITY_EVENTS), "train_steps": state.step,
                     "train_batch_size": settings.batch_size, "critic_steps": settings.critic_steps,
                     "learning_rate": settings.learning_rate, "gradient_penalty": settings.gradient_penalty,
                     "train_s": round(seconds, 1), "final_wasserstein": state.wasserstein[-1],
                     "load": [load_before, _load()]}
        echo(f"background: {name} ({state.step} steps in {seconds:.0f} s) quality: {_summary_line(out[name])}")
        del gen, model
    return out


def _summary_line(f: Mapping[str, Any]) -> str:
    return (f"occupancy ratio {f['occupancy_ratio_min']:.4f}..{f['occupancy_ratio_max']:.4f}, EMD "
            f"{f['charge_emd_adc']:.3f} ADC, mean charge {100 * f['mean_charge_rel']:+.2f}%, correlation "
            f"{f['correlation_abs']:.4f}")


def bench_background(echo: Callable[[str], None] = _echo) -> dict[str, Any]:
    """The ``background`` block: every part measured in this process."""
    import torch

    from tracerflow.background.quality import GOALS, IEA_GAN

    torch.set_num_threads(THREADS)
    start, load_before = time.perf_counter(), _load()
    setup = _Setup()
    clusters = {geometry: setup.fitted_clusters(geometry, setup.train_block["fit_events"])  # rows 1, 3 and 2, 5
                for geometry in ("default", "belle2")}
    speed = bench_speed(setup, clusters, echo)
    quality = bench_quality(setup, clusters, echo)
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"), "commit": _commit(),
        "torch": torch.__version__, "threads": THREADS, "torch_threads": torch.get_num_threads(),
        "framework_seed": setup.framework_seed, "seed": setup.seed, "goals": {k: v for k, v in GOALS.items()},
        "iea_gan": dict(IEA_GAN), "speed": speed, "quality": quality,
        "total_s": round(time.perf_counter() - start, 1), "load_average": [load_before, _load()],
    }


def bench_device_speed(device: str, echo: Callable[[str], None] = _echo) -> dict[str, Any]:
    """Rows 1 and 2 with the generators on ``device`` (a GPU, where one is lent; reported, not
    gated): the same models and events, the image models after one untimed event (a GPU's first
    call sets up its kernels) and over ``DEVICE_IMAGE_EVENTS`` events."""
    import torch

    torch.set_num_threads(THREADS)
    start = time.perf_counter()
    setup = _Setup(device)
    clusters = {geometry: setup.fitted_clusters(geometry, setup.train_block["fit_events"])
                for geometry in ("default", "belle2")}
    speed = bench_speed(setup, clusters, echo, image_events=DEVICE_IMAGE_EVENTS, image_warm_up=1)
    where = torch.device(device)
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"), "commit": _commit(),
        "torch": torch.__version__, "threads": THREADS, "device": device,
        "device_name": torch.cuda.get_device_name(where) if where.type == "cuda" else device,
        "speed": speed, "total_s": round(time.perf_counter() - start, 1),
    }


# ---------------------------------------------------------------------------------------------
# rows

def _load_text(pair: list[float]) -> str:
    return f"load average {pair[0]} before, {pair[1]} after"


def speed_rows(block: Mapping[str, Any], row_type: Callable[..., Any]) -> list[Any]:
    s = block["speed"]
    when = f"{block['threads']} torch threads, measured {block['date']} at {block['commit']}"
    cd, cond = s["clusters_default"], s["conditioned_default"]
    cb, conv, res = s["clusters_belle2"], s["convnet_belle2"], s["resnet_belle2"]
    speedup = conv["ms_per_event"] / cb["ms_per_event"]
    return [
        row_type(
            "Background speed: clusters, default geometry", cd["events"], cd["ms_per_event"], "ms/event",
            "conditioned model, untrained weights, same run (ms/event)", cond["ms_per_event"],
            cond["ms_per_event"] / cd["ms_per_event"], f"<= {SPEED_GOAL_MS:g} ms/event",
            cd["ms_per_event"] <= SPEED_GOAL_MS, min(cd["times_s"]),
            f"BackgroundGenerator('clusters').events() of {cd['events']:,} events, batch 64, fastest of "
            f"{len(cd['times_s'])} ({cd['times_s']} s) after a 64-event warm-up; {cd['digits_per_event']:.1f} digits/event; "
            f"fitted (fit_clusters) on {cd['fit_events']:,} simulated events in {cd['fit_s']} s; ratio = conditioned's "
            f"time / clusters'; conditioned (untrained weights: speed only): the same events, fastest of "
            f"{len(cond['times_s'])} ({cond['times_s']} s), {cond['digits_per_event']:,.0f} digits/event (untrained, "
            f"it fires most pixels: the time includes flattening them); {_load_text(s['default_load'])}; {when}"),
        row_type(
            "Background speed: clusters, belle2 geometry", cb["events"], cb["ms_per_event"], "ms/event",
            "Belle II's convnet at belle2, untrained weights, same run (ms/event)", conv["ms_per_event"], speedup,
            f">= {SPEEDUP_GOAL:g} x faster than convnet", speedup >= SPEEDUP_GOAL, min(cb["times_s"]),
            f"clusters fitted on {cb['fit_events']:,} simulated belle2 events in {cb['fit_s']} s (quality in the "
            f"'clusters, belle2' rows); {cb['events']:,} events, batch 64, fastest of {len(cb['times_s'])} ({cb['times_s']} s); "
            f"{cb['digits_per_event']:.0f} digits/event; ratio = convnet's ms/event / clusters'; convnet: "
            f"{conv['events']} events one by one (batch_size 1), {conv['times_s']} s, "
            f"{conv['digits_per_event']:,.0f} digits/event; {_load_text(s['belle2_load'])}; {when}"),
        row_type(
            "Background speed: resnet, belle2 geometry", res["events"], res["ms_per_event"], "ms/event",
            None, None, None, "info", None, sum(res["times_s"]),
            f"Belle II's resnet, untrained weights (speed only), {res['events']} events one by one (batch_size 1), "
            f"{res['times_s']} s, {res['digits_per_event']:,.0f} digits/event; "
            f"{res['ms_per_event'] / cb['ms_per_event']:,.0f} x clusters' time; {_load_text(s['belle2_load'])}; {when}"),
    ]


def quality_rows(block: Mapping[str, Any], row_type: Callable[..., Any]) -> list[Any]:
    iea, goals = block["iea_gan"], block["goals"]
    lo, hi = goals["occupancy_ratio"]
    rows = []
    for key, f in block["quality"].items():
        judged = key.startswith("clusters")
        name = "clusters" if judged else key
        if f["geometry"] != "default":
            name = f"{name}, {f['geometry']} geometry"
        passes = f["passes"]
        if judged:
            how = (f"fitted (fit_clusters) on {f['fit_events']:,} simulated events in {f['fit_s']} s; two simulated "
                   f"samples of this size compared the same way (the statistical floor): "
                   f"{_summary_line(f['floor'])}")
        else:
            how = (f"trained with WGAN-GP for {f['train_steps']} steps of batch {f['train_batch_size']} "
                   f"({f['critic_steps']} critic steps each, lr {f['learning_rate']:g}, gradient penalty "
                   f"{f['gradient_penalty']:g}) in {f['train_s']} s, final Wasserstein estimate "
                   f"{_f(f['final_wasserstein'], '.4f')}")
        common = (f"{key}, {f['geometry']} geometry, {f['n_generated']:,} generated vs {f['n_simulated']:,} simulated events; "
                  f"{how}; generation {_f(f['generate_ms_per_event'], '.2f')} ms/event, simulation "
                  f"{_f(f['simulate_ms_per_event'], '.2f')} ms/event; {_load_text(f['load'])}; measured {block['date']} "
                  f"at {block['commit']}")

        def goal(text: str, key: str) -> tuple[str, bool | None]:
            return (text, passes[key]) if judged else ("info (comparison only)", None)

        worst = f["occupancy_ratio_worst"]
        rows.append(row_type(
            f"Background quality: {name}, occupancy ratio (worst sensor)", f["n_generated"], worst,
            "generated/simulated", "IEA-GAN's worst sensor vs Geant4 (published)", iea["occupancy_ratio_worst"],
            _distance_ratio(None if worst is None else abs(worst - 1.0), abs(iea["occupancy_ratio_worst"] - 1.0)),
            *goal(f"{lo}-{hi} every sensor", "occupancy_ratio"), None,
            f"per-sensor ratio min {_f(f['occupancy_ratio_min'], '.4f')}, max {_f(f['occupancy_ratio_max'], '.4f')}, mean "
            f"{_f(f['occupancy_ratio_mean'], '.4f')} (IEA-GAN: mean {iea['occupancy_ratio_mean']}); per sensor "
            f"{f['occupancy_ratio']} +- {f['occupancy_ratio_error']}; Pearson r of the per-sensor occupancies "
            f"{_f(f['occupancy_pearson'], '.5f')} (IEA-GAN {iea['occupancy_pearson']}); ratio = |worst - 1| / IEA-GAN's; "
            + common))
        rows.append(row_type(
            f"Background quality: {name}, charge EMD", f["n_generated"], f["charge_emd_adc"], "ADC",
            "IEA-GAN vs Geant4 (published)", iea["charge_emd_adc"],
            _distance_ratio(f["charge_emd_adc"], iea["charge_emd_adc"]),
            *goal(f"<= {goals['charge_emd_adc']:g} ADC", "charge_emd_adc"), None,
            f"earth mover's distance of the normalised charge spectra of fired pixels; ratio = ours / IEA-GAN's; "
            + common))
        rel = f["mean_charge_rel"]
        rows.append(row_type(
            f"Background quality: {name}, mean charge difference", f["n_generated"],
            None if rel is None else 100.0 * rel, "%",
            "IEA-GAN vs Geant4 (published, %)", round(100.0 * iea["mean_charge_rel"], 2),
            _distance_ratio(None if rel is None else abs(rel), abs(iea["mean_charge_rel"])),
            *goal(f"|diff| <= {100 * goals['mean_charge_rel']:g}%", "mean_charge_rel"), None,
            f"mean charge of fired pixels {_f(f['mean_charge_generated'], '.3f')} generated vs "
            f"{_f(f['mean_charge_reference'], '.3f')} ADC simulated (IEA-GAN {iea['mean_charge_generated']} vs {iea['mean_charge_reference']}); mean cluster "
            f"size {_f(f['mean_cluster_size_generated'], '.3f')} vs {_f(f['mean_cluster_size_reference'], '.3f')} pixels; "
            f"ratio = |ours| / |IEA-GAN's|; " + common))
        rows.append(row_type(
            f"Background quality: {name}, inter-sensor correlation", f["n_generated"], f["correlation_abs"],
            "max |diff|", None, None, None,
            *goal(f"<= {goals['correlation_abs']:g}", "correlation_abs"), None,
            "largest off-diagonal |difference| of the sensors' per-event occupancy correlation matrices, generated vs "
            "simulated (no published anchor); " + common))
    return rows


def _f(value: float | None, spec: str) -> str:
    """``value`` formatted, or n/a for an undefined figure (NaN, stored as null)."""
    return "n/a" if value is None or not math.isfinite(value) else format(value, spec)


def _distance_ratio(ours: float | None, theirs: float) -> float | None:
    if ours is None or not math.isfinite(ours) or not theirs:
        return None
    return ours / theirs


def device_rows(block: Mapping[str, Any], row_type: Callable[..., Any]) -> list[Any]:
    """The speed rows of a :func:`bench_device_speed` record, as information (not gated)."""
    on = f"on {block['device_name']}"
    rows = []
    for row in speed_rows(block, row_type):
        stage = row.stage.replace("Background speed:", f"Background speed {on}:")
        rows.append(dataclasses.replace(row, stage=stage, goal="info" if row.goal == "info" else f"info (not gated; CPU goal: {row.goal})", met=None,
                                        detail=f"{on} (torch {block['torch']}); {row.detail}"))
    return rows


def background_rows(block: Mapping[str, Any], row_type: Callable[..., Any]) -> list[Any]:
    rows = speed_rows(block, row_type) + quality_rows(block, row_type)
    if "device" in block:
        rows += device_rows(block["device"], row_type)
    return rows


def merge_results(path: Path, measured: Mapping[str, Any] | None, row_type: Callable[..., Any],
                  earlier: Mapping[str, Any] | None = None) -> list[Any]:
    """Put the ``background`` block (``measured``, else the earlier one) and its rows into the results file."""
    import run

    return run.merge_block(path, "background", measured or earlier, lambda block: background_rows(block, row_type),
                           ROW_PREFIXES)


def main(argv: list[str] | None = None) -> int:
    import run

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--device", help="only the speed rows, with the generators on this torch device (e.g. "
                        "cuda), put beside the recorded block as its 'device' record (reported, not gated)")
    args = parser.parse_args(argv)
    previous = json.loads(args.output.read_text()).get("background") if args.output.exists() else None
    if args.device:
        if previous is None:
            parser.error(f"{args.output} has no background block to put the {args.device} record beside")
        measured = {**previous, "device": run.json_ready(bench_device_speed(args.device))}
    else:
        measured = bench_background()
        if previous is not None and "device" in previous:
            measured["device"] = previous["device"]  # a GPU record stays until a GPU measures again
    rows = merge_results(args.output, measured, run.Row, earlier=previous)
    print()
    run.print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
