"""VAEs: the :class:`VAE` wrapper (chunked, tiled, NaN-guarded), families, loading and tiling.

- :mod:`.wrapper`: :class:`VAE` with ComfyUI's duck type (the public names below come from there).
- :mod:`.generic`: encode/decode with any VAE of that duck type (ours or ComfyUI's).
- :mod:`.families`: the VAE family records (detection, shipped configs, latent formats).
- :mod:`.loading`: loading diffusers folders, single files and TAESD offline.
- :mod:`.tiling`, :mod:`.stream`: tile plans and the exact layer-streamed path.
"""

from .wrapper import (
    TINY_BYTES_PER_PIXEL,
    UNTILED_DECODE_BYTES_PER_PIXEL,
    UNTILED_ENCODE_BYTES_PER_PIXEL,
    VAE,
)

__all__ = ["TINY_BYTES_PER_PIXEL", "UNTILED_DECODE_BYTES_PER_PIXEL", "UNTILED_ENCODE_BYTES_PER_PIXEL", "VAE"]
