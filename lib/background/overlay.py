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

import numpy as np

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
