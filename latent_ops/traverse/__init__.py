"""Latent dimension traversal: sweep one coordinate of a latent at a time, as a batch to decode.

- :mod:`.ranges`: the sweep range (positions, values from reference statistics) and index
  selections such as ``"0-3, 7"``.
- :mod:`.sweeps`: channel, principal-component and direction sweeps, as a :class:`Traversal`.
- :mod:`.dispatch`: :func:`traverse`, one call for all three (and :func:`traverse_latent` for
  ComfyUI LATENT dicts).

Every public name is importable from here (``from latent_ops import traverse as T``).
"""

from __future__ import annotations

from .dispatch import MODES, Mode, repeat_per_item, traverse, traverse_latent
from .ranges import OPS, RANGE_MODES, Op, RangeMode, parse_indices, quantiles, sweep_positions, sweep_values
from .sweeps import Traversal, direction_between, traverse_channels, traverse_direction, traverse_pca

__all__ = [
    "MODES", "OPS", "RANGE_MODES", "Mode", "Op", "RangeMode", "Traversal", "direction_between", "parse_indices",
    "quantiles", "repeat_per_item", "sweep_positions", "sweep_values", "traverse", "traverse_channels",
    "traverse_direction", "traverse_latent", "traverse_pca",
]
