"""Import-only stand-in for ``torchvision.transforms`` (see the package docstring).

``transformers`` sees the stub through ``importlib.util.find_spec`` and then imports
``InterpolationMode`` and ``functional.pil_to_tensor`` at module level (``transformers.image_utils``,
reached when diffusers loads a model); the names exist, nothing here works.
"""

import enum

from . import functional  # noqa: F401


class InterpolationMode(enum.Enum):
    NEAREST = "nearest"
    NEAREST_EXACT = "nearest-exact"
    BILINEAR = "bilinear"
    BICUBIC = "bicubic"
    BOX = "box"
    HAMMING = "hamming"
    LANCZOS = "lanczos"
