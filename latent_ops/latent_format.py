"""Latent formats: how a model family's raw VAE latents map into the diffusion model's space.

LATENT tensors everywhere in Latent Ops are *raw* VAE latents, as in ComfyUI. A model family's
``scale`` and ``shift`` are applied only where model space is needed (sampling, noise at a sigma):
``model = (raw - shift) * scale`` and ``raw = model / scale + shift``.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass(frozen=True)
class LatentFormat:
    """Shape and scaling of one family's latent space.

    Attributes:
        name: family id (``"sd15"``, ``"sdxl"``, ``"sd3"``, ``"flux"``, ``"embedded"``, ...).
        channels: latent channels C of ``[B, C, H/f, W/f]``.
        downscale: spatial compression f of the VAE.
        scale: multiplier into model space.
        shift: subtracted before scaling.
    """

    name: str
    channels: int
    downscale: int = 8
    scale: float = 1.0
    shift: float = 0.0

    def process_in(self, raw: Tensor) -> Tensor:
        """Raw VAE latent ``[B, C, h, w]`` -> model space (same shape)."""
        return (raw - self.shift) * self.scale

    def process_out(self, model: Tensor) -> Tensor:
        """Model-space latent ``[B, C, h, w]`` -> raw VAE latent (same shape)."""
        return model / self.scale + self.shift


SD15 = LatentFormat("sd15", channels=4, downscale=8, scale=0.18215)
SDXL = LatentFormat("sdxl", channels=4, downscale=8, scale=0.13025)
SD3 = LatentFormat("sd3", channels=16, downscale=8, scale=1.5305, shift=0.0609)
FLUX = LatentFormat("flux", channels=16, downscale=8, scale=0.3611, shift=0.1159)

FORMATS: dict[str, LatentFormat] = {f.name: f for f in (SD15, SDXL, SD3, FLUX)}
"""Known families by name (ComfyUI's ``comfy/latent_formats.py`` values)."""


def get(name: str) -> LatentFormat:
    """Look a family up by name; raises ``ValueError`` listing the known names."""
    try:
        return FORMATS[name]
    except KeyError:
        raise ValueError(f"unknown latent format {name!r}; known: {sorted(FORMATS)}") from None
