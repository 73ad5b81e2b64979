"""Latent-shape helpers for any model family: empty latents sized from the VAE."""

from __future__ import annotations

from ._library import latents as core
from .comfy_adapter import interruptible


class LatentOpsEmptyLatent:
    CATEGORY = "latent_ops/latent"
    DESCRIPTION = (
        "Zero latents for a picture of width x height pixels. Channels and downscale come from the VAE when "
        "one is connected (4 or 16 channels, /8 or /4 ...), otherwise from the widgets: unlike EmptyLatentImage "
        "nothing is hard-coded to 4 channels and /8."
    )
    RETURN_TYPES = ("LATENT",)
    RETURN_NAMES = ("samples",)
    FUNCTION = "execute"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        size = {"default": 512, "min": 1, "max": 16384, "step": 1}
        return {
            "required": {
                "width": ("INT", {**size, "tooltip": "Picture width in pixels (floored to the downscale)."}),
                "height": ("INT", {**size, "tooltip": "Picture height in pixels (floored to the downscale)."}),
                "batch_size": ("INT", {"default": 1, "min": 1, "max": 4096}),
            },
            "optional": {
                "vae": ("VAE", {"tooltip": "Take latent channels and downscale from this VAE."}),
                "channels": ("INT", {"default": 4, "min": 1, "max": 256, "tooltip": "Used when no VAE is connected."}),
                "downscale": ("INT", {"default": 8, "min": 1, "max": 64, "tooltip": "Used when no VAE is connected."}),
            },
        }

    @interruptible
    def execute(self, width: int, height: int, batch_size: int, vae: object = None, channels: int = 4,
                downscale: int = 8) -> tuple[dict]:
        return (core.empty_latent(width, height, batch_size, channels=channels, downscale=downscale, vae=vae),)


NODE_CLASS_MAPPINGS: dict[str, type] = {"LatentOpsEmptyLatent": LatentOpsEmptyLatent}
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {"LatentOpsEmptyLatent": "Empty Latent (any VAE)"}
