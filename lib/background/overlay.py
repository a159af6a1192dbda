"""The overlay of background digits onto events' signal hits: what BuildEvents does when
``background.overlay`` is ``simulated`` or ``generated``.

Both inputs are flat digit arrays (``event``, ``sensor``, ``ucell``, ``vcell``, ``charge``: the
layout of :func:`tracerflow.background.models.digits_of` and
:func:`tracerflow.toy.pixel_background.simulate_events`), the events numbered alike. A pixel fired
by background only is added as a background digit; a pixel fired by both keeps one digit whose
charge is the sum (capped at 255, the 8-bit ADC's range) and counts as signal, as a pixel's
charge is read out once whatever deposited it. The result is sorted by event, sensor, ucell,
vcell, with ``is_background`` per digit and ``background_charge`` (what the background added to
it), so that an overlay can be undone and checked: removing the background digits and
subtracting ``background_charge`` gives the signal hits back exactly.

Contract with its neighbours: digits come from :mod:`.generator` or the reference simulation and
go to BuildEvents' hits collection; nothing here imports torch or luigi.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import numpy as np

if TYPE_CHECKING:
    from tracerflow.columns import EventBatch

FIELDS = ("event", "sensor", "ucell", "vcell", "charge")


def _keys(digits: dict[str, np.ndarray], shape: tuple[int, int, int]) -> np.ndarray:
    sensors, height, width = shape
    return (((digits["event"].astype(np.int64) * sensors + digits["sensor"]) * height + digits["ucell"]) * width
            + digits["vcell"])


def overlay(signal: dict[str, np.ndarray], background: dict[str, np.ndarray],
            shape: tuple[int, int, int]) -> dict[str, np.ndarray]:
    """``signal`` hits with ``background`` digits overlaid, for a detector of ``shape``
    (sensors, height, width); see the module docstring. A pixel listed twice in one input is
    refused (ValueError): digits are one per fired pixel."""
    keys = {}
    for name, digits in (("signal", signal), ("background", background)):
        missing = [f for f in FIELDS if f not in digits]
        if missing:
            raise ValueError(f"{name} digits lack {', '.join(missing)}")
        keys[name] = _keys(digits, shape)
        if len(np.unique(keys[name])) != len(keys[name]):
            raise ValueError(f"{name} digits list a pixel twice in one event")
    all_keys = np.concatenate([keys["signal"], keys["background"]])
    pixels, inverse = np.unique(all_keys, return_inverse=True)
    n_sig = len(keys["signal"])
    signal_charge = np.zeros(len(pixels), np.int64)
    signal_charge[inverse[:n_sig]] = signal["charge"]
    added = np.zeros(len(pixels), np.int64)
    added[inverse[n_sig:]] = background["charge"]
    fired_by_signal = np.zeros(len(pixels), bool)
    fired_by_signal[inverse[:n_sig]] = True
    total = np.minimum(signal_charge + added, 255)
    sensors, height, width = shape
    event, rest = np.divmod(pixels, sensors * height * width)
    sensor, rest = np.divmod(rest, height * width)
    ucell, vcell = np.divmod(rest, width)
    return {"event": event.astype(np.int32), "sensor": sensor.astype(np.int16), "ucell": ucell.astype(np.int16),
            "vcell": vcell.astype(np.int16), "charge": total.astype(np.uint8), "is_background": ~fired_by_signal,
            "background_charge": (total - signal_charge).astype(np.uint8)}


#: The attributes a hits collection needs for an overlay (``is_background`` is added when absent).
HIT_ATTRIBUTES = ("sensor", "ucell", "vcell", "charge")


class Overlay:
    """BuildEvents' overlay: called on each chunk's :class:`~tracerflow.columns.EventBatch` after its
    collections are built and before anything is derived from them, it replaces ``collection`` by
    its hits with the background digits of each event (``digits_of(hashes)``, keyed by the event
    hashes of the batch's index, so a chunk's background does not depend on the chunking) overlaid
    (:func:`overlay`). The collection gets ``is_background`` (int8; a hit the input already marks as
    background stays so) and ``background_charge`` (uint8); any other attribute of the collection
    keeps its value on the input's hits and is 0 on background digits."""

    def __init__(self, collection: str, shape: tuple[int, int, int],
                 digits_of: Callable[[np.ndarray], dict[str, np.ndarray]], describe: str) -> None:
        self.collection = collection
        self.shape = shape
        self.digits_of = digits_of
        self.describe = describe

    def __call__(self, batch: "EventBatch") -> None:
        """Overlay the batch's events (TemplateError for hits the geometry cannot hold)."""
        from tracerflow.columns import EVENT, Table
        from tracerflow.templates.event import TemplateError

        table = batch.tables.get(self.collection)
        if table is None or table.parent != EVENT:
            raise TemplateError(f"background.collection {self.collection!r}: the event template has no collection "
                                "of that name directly below the event")
        missing = [a for a in HIT_ATTRIBUTES if a not in table.fields]
        if missing:
            raise TemplateError(f"background.collection {self.collection!r} lacks the attributes {', '.join(missing)}")
        sensors, height, width = self.shape
        fields = table.fields
        for name, bound in (("sensor", sensors), ("ucell", height), ("vcell", width)):
            values = np.asarray(fields[name])
            if len(values) and (values.min() < 0 or values.max() >= bound):
                raise TemplateError(f"collection {self.collection!r}: {name} outside [0, {bound}) of the pixel "
                                    f"geometry of the background block ({values.min()} .. {values.max()})")
        charge = np.asarray(fields["charge"])
        if len(charge) and (charge.min() < 0 or charge.max() > 255):
            raise TemplateError(f"collection {self.collection!r}: charge outside the 8-bit ADC range 0 .. 255")
        signal = {"event": table.parent_row(), "sensor": fields["sensor"], "ucell": fields["ucell"],
                  "vcell": fields["vcell"], "charge": charge}
        background = self.digits_of(np.asarray(batch.index["hash"], dtype=np.uint64))
        try:
            merged = overlay(signal, background, self.shape)
        except ValueError as err:
            raise TemplateError(f"collection {self.collection!r}: {err}") from None
        # where each input hit went: both key lists are sorted the same way
        at = np.searchsorted(_keys(merged, self.shape), _keys(signal, self.shape))
        out: dict[str, np.ndarray] = {}
        for name, values in fields.items():
            if name in HIT_ATTRIBUTES:
                continue
            column = np.zeros(len(merged["charge"]), dtype=np.asarray(values).dtype)
            column[at] = values
            out[name] = column
        was_background = out.pop("is_background", np.zeros(len(merged["charge"]), np.int8)) != 0
        for name in HIT_ATTRIBUTES:
            out[name] = merged[name].astype(np.asarray(fields[name]).dtype, copy=False)
        out["is_background"] = (merged["is_background"] | was_background).astype(np.int8)
        out["background_charge"] = merged["background_charge"]
        counts = np.bincount(merged["event"], minlength=len(table.counts)).astype(np.int64)
        batch.tables[self.collection] = Table(counts=counts, fields=out, parent=EVENT)


def make_overlay(block: dict, framework_seed: int, *, trained_store: "str | None" = None,
                 trained_revision: int | None = None) -> Overlay | None:
    """The :class:`Overlay` the validated ``background`` block asks for (None for ``overlay: none``).

    ``simulated``: the toy's reference simulation (``physics``) keyed by (``project.seed``, event
    hash), as TrainBackgroundGenerator's reference. ``generated``: a :class:`BackgroundGenerator` of
    ``model`` with its ``seed`` (None: the sha512 rule on ``project.seed``) and the payload named by
    ``payload``: ``shipped`` (the package's store), ``trained`` (``trained_store`` at
    ``trained_revision``, what TrainBackgroundGenerator made) or a checkpoint file's path."""
    from tracerflow.toy.pixels import geometry as as_geometry

    kind = block["overlay"]
    if kind == "none":
        return None
    geometry = as_geometry(block["geometry"])
    if kind == "simulated":
        from tracerflow.toy.pixel_background import BackgroundPhysics, simulate_events

        physics = BackgroundPhysics.of(block["physics"])
        return Overlay(block["collection"], geometry.shape,
                       lambda hashes: simulate_events(geometry, physics, framework_seed, hashes)[1],
                       "the reference simulation")
    from tracerflow.background.conditions import ConditionsStore
    from tracerflow.background.generator import BackgroundGenerator

    payload = block["payload"]
    checkpoint, store, revision = None, None, None
    if payload == "trained":
        store, revision = ConditionsStore(trained_store), trained_revision
    elif payload != "shipped":
        checkpoint = payload
    generator = BackgroundGenerator(block["model"], checkpoint=checkpoint, seed=block["seed"], nintra=block["nintra"],
                                    ninter=block["ninter"], globaltag=block["globaltag"], framework_seed=framework_seed,
                                    geometry=geometry, store=store, revision=revision)
    generator.initialize()
    where = generator.payload.describe() if generator.payload is not None else f"checkpoint {checkpoint}"
    return Overlay(block["collection"], geometry.shape, generator.events, f"the {block['model']} generator ({where})")
