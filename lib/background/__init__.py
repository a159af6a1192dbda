"""The background generator: pixel-detector background digits from a trained network, modelled on
Belle II's PXDBackgroundGenerator.

This room holds everything about machine-learned beam background for the toy's pixel detector:

* the generator models, Belle II's convnet and resnet and a sensor- and event-conditioned model
  beyond them, which turn noise into one event's stack of sensor images whose fired pixels become
  background digits (sensor id, ucell, vcell, charge);
* the conditions store (:mod:`.conditions`), a local stand-in for basf2's conditions database: a
  directory of weight payloads (state dicts) keyed by global tag, name and revision, with a JSON
  index and sha256 checksums, and the store shipped inside the package with the default payload;
* training a generator on simulated background (what TrainBackgroundGenerator runs) and the
  overlay of generated or simulated digits onto an event's signal hits (what BuildEvents runs).

Contract with its neighbours: the detector is described by :class:`tracerflow.toy.pixels.PixelGeometry`
(sensors per layer, pixels per sensor) and nothing else; a payload records the geometry it was
trained for. The Luigi tasks (:mod:`tracerflow.tasks`) call into this package with plain values and
paths; nothing here imports luigi. Payloads are written atomically and loaded with
``torch.load(weights_only=True)`` only after their checksum has been verified.

Each name is imported from its module on first use (:mod:`tracerflow._lazy`): importing this package
imports neither torch nor any of its modules. The functions named like their modules
(``overlay.overlay``, ``train.train``) are imported from those modules, not from the package.
"""
from tracerflow._lazy import lazy_exports

_MODULES = {
    ".conditions": ("INDEX_LAYOUT", "INDEX_VERSION", "ConditionsStore", "Payload", "PayloadError", "load_into",
                    "shipped_store",),
    ".models": ("MODELS", "IMAGE_MODELS", "NOISE_CUT", "BackgroundModel", "build_model", "model_from_config", "decode_adc",
                "digits_of",),
    ".generator": ("DEFAULT_GLOBALTAG", "DEFAULT_MODEL", "BackgroundGenerator", "payload_name",
                   "seed_from_framework",),
    ".quality": ("GOALS", "IEA_GAN", "Summary", "Comparison", "summarize", "compare", "charge_emd", "report_html",
                 "cluster_labels",),
    ".clusters": ("ClusterModel", "fit_tables", "decompose",),
    ".train": ("Critic", "TrainSettings", "TrainState", "encode", "payload_metadata", "fit_clusters",),
}

__getattr__, __dir__ = lazy_exports(__name__, _MODULES)
__all__ = sorted(name for names in _MODULES.values() for name in names)
