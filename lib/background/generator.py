"""BackgroundGenerator: background digits of the pixel detector from a trained model, with the
interface of Belle II's ``PXDBackgroundGenerator`` and a batched call beside its ``event()``.

    gen = BackgroundGenerator(model="convnet", checkpoint=None, seed=None, nintra=1, ninter=1,
                              globaltag=DEFAULT_GLOBALTAG, framework_seed=42)
    gen.initialize()        # threads (once per process), model, payload, eval mode, no grad
    digits = gen.event()    # the next event's digits: sensor, ucell, vcell, charge
    digits = gen.events(hashes)   # many events at once, plus ``event`` (index into hashes)

* ``checkpoint``: a state-dict file, or None for the conditions store's payload
  ``BackgroundGenerator_<model>`` under ``globaltag`` (the shipped store unless ``store`` names
  another); loaded with ``torch.load(weights_only=True)`` into the model strictly, after its
  checksum is verified (:mod:`.conditions`). A payload records the model it was trained as (its
  name, geometry and options); a ``geometry`` given here must match it.
* ``seed``: None derives it as Belle II does, from the framework's seed (tracerflow's
  ``project.seed``): the first 8 bytes, big-endian and signed, of the sha512 of its decimal text
  (:func:`seed_from_framework`).
* ``nintra``, ``ninter``: torch's intra- and inter-op threads, set by the first ``initialize()``
  of the process (torch refuses to change the inter-op count once parallel work has run; a
  later generator asking for other counts is told so in the log and runs with the first). They
  are the process's: :func:`release_threads` puts the intra-op count back for the work that
  follows (TrainBackgroundGenerator and BuildEvents call it when done).

Every event's latents come from a ``torch.Generator`` of its own, seeded by (seed, event hash), and
the models compute each event in its own pass with kernels whose bits do not depend on the other
events or the thread count (:mod:`.models`); the model runs in float32 (on CUDA IEEE float32, not
TF32, with deterministic algorithms: :func:`tracerflow.models.device.pin_reproducible`). So an
event's digits are bitwise the same whatever else is generated with it, in which order, chunks or
batch sizes, on how many threads or workers. Digits are flat numpy arrays made with one
``nonzero`` over the decoded charges, never a Python loop per digit.

Contract with its neighbours: models and decoding from :mod:`.models`, payloads from
:mod:`.conditions`, event hashes from :mod:`tracerflow.hashing` (``event()`` without a hash uses
the splitmix64 of a running counter); the overlay in BuildEvents calls :meth:`events`. Importing
this module does not import torch (the config schema reads its defaults).
"""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import numpy as np

from tracerflow.config.schema import BACKGROUND
from tracerflow.seeding import derive_seed
from tracerflow.toy.pixels import PixelGeometry
from tracerflow.toy.pixels import geometry as as_geometry

log = logging.getLogger("tracerflow")

#: The global tag payloads are looked up under, and the model built, when none is named: the
#: ``background`` block's defaults (lib/config/schema.py states them).
DEFAULT_GLOBALTAG = BACKGROUND.fields["globaltag"].default
DEFAULT_MODEL = BACKGROUND.fields["model"].default

_threads: tuple[int, int] | None = None  # (intra, inter) the process's generators set, while in force
_inter: int | None = None  # the inter-op count the process's first generator set (torch keeps it)
_intra_before: int | None = None  # torch's intra-op count before the generators' was put in force


def payload_name(model: str) -> str:
    """The conditions-store name of a model's payload (Belle II: ``PXDBackgroundGenerator_<model>``)."""
    return f"BackgroundGenerator_{model}"


def seed_from_framework(framework_seed: int | str) -> int:
    """Belle II's rule for a generator given no seed: the first 8 bytes of sha512 of the
    framework's seed as a string, read as a big-endian signed integer."""
    return int.from_bytes(hashlib.sha512(str(framework_seed).encode()).digest()[:8], "big", signed=True)


def _apply_threads(nintra: int, ninter: int) -> None:
    """torch's thread counts: the intra-op one while a generator's is not in force, the inter-op
    one once per process (see the module docstring)."""
    global _threads, _inter, _intra_before
    import torch

    previous = _threads
    if previous == (nintra, ninter):
        return
    if previous is not None:
        log.info("background generator: torch's threads were set to %d intra / %d inter-op by an earlier "
                 "generator of this process; %d / %d asked for now", *previous, nintra, ninter)
    else:
        _intra_before = torch.get_num_threads()
    torch.set_num_threads(nintra)  # the intra-op count may change; the inter-op one may not
    if _inter is None:
        try:
            torch.set_num_interop_threads(ninter)
            _inter = ninter
        except RuntimeError:  # parallel work already ran in this process: torch keeps its count
            _inter = torch.get_num_interop_threads()
            log.info("background generator: torch's inter-op threads were fixed before initialize(); "
                     "keeping %d (asked for %d)", _inter, ninter)
    _threads = (nintra, ninter if previous is None else previous[1])


def release_threads() -> None:
    """torch's intra-op thread count back to what it was before the generators' was put in force:
    a task that generated calls it when done, so what runs next in its process (a TrainFold after
    BuildEvents' overlay, on one worker) runs on its usual threads and its bits do not depend on
    what ran before it. The next ``initialize()`` sets the generator's count again; the inter-op
    count stays (torch fixes it for the process)."""
    global _threads
    if _threads is None:
        return
    import torch

    torch.set_num_threads(_intra_before)
    _threads = None


class BackgroundGenerator:
    """See the module docstring."""

    def __init__(self, model: str = DEFAULT_MODEL, checkpoint: str | Path | None = None, seed: int | None = None,
                 nintra: int = 1, ninter: int = 1, globaltag: str = DEFAULT_GLOBALTAG, *,
                 framework_seed: int = 0, geometry: PixelGeometry | str | dict | None = None,
                 store: Any = None, revision: int | None = None, noise_cut: float | None = None,
                 device: str = "cpu") -> None:
        from tracerflow.background.models import MODELS, NOISE_CUT

        if model not in MODELS:
            raise ValueError(f"no background model named {model!r} (known: {', '.join(MODELS)})")
        if nintra < 1 or ninter < 1:
            raise ValueError(f"nintra and ninter must be at least 1, got {nintra} and {ninter}")
        self.model_name = model
        self.checkpoint = None if checkpoint is None else Path(checkpoint)
        self.seed = seed_from_framework(framework_seed) if seed is None else int(seed)
        self.nintra, self.ninter = int(nintra), int(ninter)
        self.globaltag = globaltag
        self.geometry = None if geometry is None else as_geometry(geometry)
        self.store = store
        self.revision = revision
        self.noise_cut = NOISE_CUT if noise_cut is None else noise_cut
        self.device = device
        self.model = None
        self.payload = None  # the conditions payload loaded (None for a checkpoint file)
        self._counter = 0

    # ------------------------------------------------------------------ set-up

    def initialize(self) -> None:
        """Threads, model, weights, eval mode and no grad (see the module docstring)."""
        import torch

        from tracerflow.background.conditions import PayloadError, load_into, shipped_store
        from tracerflow.background.models import build_model, model_from_config, options_of_state
        from tracerflow.models.device import pin_reproducible

        if self.checkpoint is not None:
            if not self.checkpoint.is_file():
                raise PayloadError(f"background checkpoint {self.checkpoint}: no such file")
            try:
                state = torch.load(self.checkpoint, weights_only=True, map_location="cpu")
            except Exception as err:
                raise PayloadError(f"background checkpoint {self.checkpoint}: cannot be loaded as a state dict "
                                   f"({type(err).__name__}: {' '.join(str(err).split())})") from None
            if not isinstance(state, dict):
                raise PayloadError(f"background checkpoint {self.checkpoint}: holds a {type(state).__name__}, "
                                   "not a state dict")
            named = _Named(state, f"checkpoint {self.checkpoint}")
            try:
                options = options_of_state(self.model_name, state)
            except (KeyError, IndexError, ValueError) as err:
                raise PayloadError(f"{named.describe()}: not a state dict of a {self.model_name} model "
                                   f"({type(err).__name__}: {err})") from None
            model = build_model(self.model_name, self.geometry or "default", **options)
            load_into(model, named)
        else:
            store = self.store if self.store is not None else shipped_store()
            payload = store.get(self.globaltag, payload_name(self.model_name), self.revision)
            built = payload.metadata.get("model")
            if not isinstance(built, dict) or built.get("name") != self.model_name:
                raise PayloadError(f"{payload.describe()}: its metadata does not describe a {self.model_name} model")
            if self.geometry is not None and built["geometry"] != self.geometry.as_dict():
                raise PayloadError(f"{payload.describe()}: trained for geometry {built['geometry']}, "
                                   f"not {self.geometry.as_dict()}")
            model = load_into(model_from_config(built), payload)
            self.payload = payload
        self.geometry = model.geometry
        _apply_threads(self.nintra, self.ninter)  # once the payload is loaded: a refused one changes nothing
        pin_reproducible(self.device)
        model.eval().to(device=self.device, dtype=torch.float32)
        for parameter in model.parameters():
            parameter.requires_grad_(False)
        self.model = model

    # ------------------------------------------------------------------ generation

    def latents_of(self, event_hash: int) -> dict[str, Any]:
        """The latents of the event with ``event_hash``, from its own generator."""
        import torch

        generator = torch.Generator(device="cpu")
        generator.manual_seed(derive_seed(self.seed, "background-latents", int(event_hash) & 0xFFFF_FFFF_FFFF_FFFF))
        return self._model().sample_latents(generator)

    def event(self, event_hash: int | None = None) -> dict[str, np.ndarray]:
        """One event's digits (``sensor``, ``ucell``, ``vcell``, ``charge``): of the event with
        ``event_hash``, or of the next event of this generator's own count."""
        if event_hash is None:
            from tracerflow.hashing import splitmix64

            event_hash = int(splitmix64(np.array([self._counter], dtype=np.uint64))[0])
            self._counter += 1
        digits = self.events(np.array([event_hash], dtype=np.uint64))
        del digits["event"]
        return digits

    def events(self, hashes: np.ndarray, intensity: np.ndarray | None = None,
               batch_size: int = 64) -> dict[str, np.ndarray]:
        """The digits of every event of ``hashes`` (flat arrays with ``event``, the index into
        ``hashes``), ``batch_size`` events per call of the model; ``intensity`` per event for a
        model conditioned on it."""
        import torch

        from tracerflow.background.models import decode_adc, digits_of

        model = self._model()
        hashes = np.asarray(hashes, dtype=np.uint64)
        parts = []
        with torch.inference_mode():
            for start in range(0, len(hashes), batch_size):
                chunk = hashes[start:start + batch_size]
                per_event = [self.latents_of(int(h)) for h in chunk]
                latents = {key: torch.cat([lat[key] for lat in per_event]).to(self.device) for key in per_event[0]}
                level = None if intensity is None else torch.as_tensor(
                    np.asarray(intensity[start:start + batch_size], dtype=np.float32), device=self.device)
                if hasattr(model, "digits"):  # a sparse model draws digits, not images
                    digits = model.digits(latents, level)
                else:
                    digits = digits_of(decode_adc(model(latents, level), self.noise_cut))
                digits["event"] += start
                parts.append(digits)
        if not parts:
            return {"event": np.zeros(0, np.int32), "sensor": np.zeros(0, np.int16), "ucell": np.zeros(0, np.int16),
                    "vcell": np.zeros(0, np.int16), "charge": np.zeros(0, np.uint8)}
        return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}

    def _model(self):
        if self.model is None:
            raise RuntimeError("BackgroundGenerator.initialize() has not been called")
        return self.model


class _Named:
    """A state dict with the name :func:`~tracerflow.background.conditions.load_into` says it by."""

    def __init__(self, state_dict: dict, name: str) -> None:
        self.state_dict = state_dict
        self._name = name

    def describe(self) -> str:
        return self._name
