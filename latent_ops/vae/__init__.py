"""VAEs: the :class:`VAE` wrapper (chunked, tiled, NaN-guarded), families, loading and tiling.

- :mod:`.wrapper`: :class:`VAE` with ComfyUI's duck type (the public names below come from there).
- :mod:`.generic`: encode/decode with any VAE of that duck type (ours or ComfyUI's).
- :mod:`.geometry`: latent channels and compression of configs and of any VAE; latent format of a config.
- :mod:`.families`: one record per VAE family in a registry (a new family: one record + its config).
- :mod:`.detect`: a family and a diffusers config read from weights (shapes and key names).
- :mod:`.loading`: loading diffusers folders, single files and TAESD offline.
- :mod:`.tiling`: the one encode/decode path (a :class:`~.tiling.Plan` decided once per call: whole,
  exact or tiles); :mod:`.exact` and :mod:`.stream`: the exact layer-streamed path.
"""

from .wrapper import (
    TINY_BYTES_PER_PIXEL,
    UNTILED_DECODE_BYTES_PER_PIXEL,
    UNTILED_ENCODE_BYTES_PER_PIXEL,
    VAE,
)

__all__ = ["TINY_BYTES_PER_PIXEL", "UNTILED_DECODE_BYTES_PER_PIXEL", "UNTILED_ENCODE_BYTES_PER_PIXEL", "VAE"]
