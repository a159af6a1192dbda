"""The toy's pixel detector: its geometry (sensors of H x W pixels in layers), the one description
every part of the background generator shares.

A sensor is an image of ``height`` u-cells by ``width`` v-cells holding 8-bit charges (ADC); a
digit is one fired pixel: (sensor id, ucell, vcell, charge). Sensors are numbered layer by layer
from the innermost, so ``layer_of`` is a lookup. Two geometries are named:

* ``default``: 10 sensors (4 on layer 1, 6 on layer 2) of 32 x 96 pixels, small enough that
  training a generator fits a CI run;
* ``belle2``: Belle II's PXD, 40 sensors (layer 1: 8 ladders x 2 sensors, layer 2: 12 x 2) of
  250 x 768 pixels.

Contract with its neighbours: the reference background simulation and the signal hits of the toy
(:mod:`tracerflow.toy`), the generator models and conditions (:mod:`tracerflow.background`) and
the ``background`` config block all describe a detector by a :class:`PixelGeometry`; a payload
records the geometry it was trained for (:meth:`PixelGeometry.as_dict`) and is refused for
another. Nothing here imports torch or luigi.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class PixelGeometry:
    """Sensors per layer (innermost first) and each sensor's pixels (u-cells x v-cells)."""

    layers: tuple[int, ...]
    height: int
    width: int

    def __post_init__(self) -> None:
        if not self.layers or any(n < 1 for n in self.layers):
            raise ValueError(f"a pixel detector needs at least one sensor per layer, got layers {self.layers}")
        if self.height < 1 or self.width < 1:
            raise ValueError(f"a sensor needs at least one pixel, got {self.height} x {self.width}")

    @property
    def n_sensors(self) -> int:
        return int(sum(self.layers))

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(sensors, height, width)``: one event's dense image stack."""
        return self.n_sensors, self.height, self.width

    @property
    def n_pixels(self) -> int:
        return self.n_sensors * self.height * self.width

    def layer_of(self) -> np.ndarray:
        """The layer (0 = innermost) of every sensor, shape ``(n_sensors,)``."""
        return np.repeat(np.arange(len(self.layers), dtype=np.int16), self.layers)

    def as_dict(self) -> dict[str, Any]:
        return {"layers": list(self.layers), "height": self.height, "width": self.width}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PixelGeometry":
        return cls(layers=tuple(int(n) for n in data["layers"]), height=int(data["height"]), width=int(data["width"]))


#: The named geometries (``background.geometry`` in a config).
GEOMETRIES = {
    "default": PixelGeometry(layers=(4, 6), height=32, width=96),
    "belle2": PixelGeometry(layers=(16, 24), height=250, width=768),
}


def geometry(spec: str | dict[str, Any] | PixelGeometry) -> PixelGeometry:
    """A geometry by name (``default``, ``belle2``), from its dict, or as given."""
    if isinstance(spec, PixelGeometry):
        return spec
    if isinstance(spec, str):
        try:
            return GEOMETRIES[spec]
        except KeyError:
            raise ValueError(f"no pixel geometry named {spec!r} (known: {', '.join(GEOMETRIES)})") from None
    return PixelGeometry.from_dict(spec)
