"""ComfyUI nodes for latent_ops.vae.wrapper: load a VAE offline, encode and decode (seamless tiling).

All three use ComfyUI's ``"VAE"`` type: our VAE object has ComfyUI's duck type, and the encode
and decode nodes only call ``encode``/``decode``/``*_tiled``/compression methods, so they also
accept ComfyUI's own VAE.
"""

from __future__ import annotations

from . import comfy_adapter
from ._library import vae_calls as vae_any
from ._library import vae_loading as models
from .comfy_adapter import interruptible

FAMILY_CHOICES = ["auto", *models.FAMILIES]
DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16", "auto": "auto"}


def _choices() -> list[str]:
    names = models.vae_choices(comfy_adapter.model_folders("vae"), comfy_adapter.model_folders("vae_approx"))
    return names or ["(no VAE found: add files to models/vae)"]


class LatentOpsVAELoader:
    CATEGORY = "latent_ops/vae"
    DESCRIPTION = (
        "Loads a VAE offline: diffusers folders, .safetensors VAEs or full checkpoints (LDM or diffusers keys), "
        "TAESD pairs from vae_approx, and the embedded default. Pickled files need allow_pickle."
    )
    RETURN_TYPES = ("VAE",)
    RETURN_NAMES = ("vae",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        names = _choices()
        return {
            "required": {
                "vae_name": (names, {"default": names[0], "tooltip": "VAE file or folder from the model folders."}),
            },
            "optional": {
                "family": (
                    FAMILY_CHOICES,
                    {"default": "auto", "tooltip": "Model family; 'auto' detects it (SD1.5 vs SDXL look alike: set it)."},
                ),
                "allow_pickle": (
                    "BOOLEAN",
                    {"default": False, "tooltip": "Allow .ckpt/.pt/.bin files (read with torch.load(weights_only=True))."},
                ),
                "dtype": (
                    list(DTYPES),
                    {"default": "fp32", "tooltip": "Compute precision; half-precision chunks with NaN/Inf are redone in fp32. "
                                        "auto: the runner's --dtype (ComfyUI's choice inside ComfyUI)."},
                ),
            },
        }

    @interruptible
    def load(self, vae_name: str, family: str = "auto", allow_pickle: bool = False, dtype: str = "fp32") -> tuple:
        import torch

        path = models.resolve_vae_choice(
            vae_name, comfy_adapter.model_folders("vae"), comfy_adapter.model_folders("vae_approx")
        )
        vae = models.load_vae(
            path,
            family=None if family == "auto" else family,
            allow_pickle=allow_pickle,
            device=comfy_adapter.compute_device(),
            dtype=comfy_adapter.compute_dtype() if dtype == "auto" else getattr(torch, DTYPES[dtype]),
        )
        return (vae,)


_TILING = {
    "tile_size": ("INT", {"default": 0, "min": 0, "max": 8192, "step": 8, "tooltip": "Tile edge in pixels; 0 = automatic."}),
    "overlap": ("INT", {"default": 64, "min": 0, "max": 1024, "step": 8, "tooltip": "Tile halo in pixels (tiles mode)."}),
}


class LatentOpsVAEEncode:
    CATEGORY = "latent_ops/vae"
    DESCRIPTION = (
        "Encodes images to raw latents. tile_size 0 lets the VAE decide (tiles only when memory is short); "
        "tiles are seamless. 'sample' draws from the posterior with the given seed (Latent Ops VAEs)."
    )
    RETURN_TYPES = ("LATENT",)
    RETURN_NAMES = ("samples",)
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "pixels": ("IMAGE", {"tooltip": "Images [B,H,W,C] in [0,1]; sizes are centre-cropped to the VAE's factor."}),
                "vae": ("VAE", {"tooltip": "A Latent Ops or ComfyUI VAE."}),
                **_TILING,
            },
            "optional": {
                "mode": (["mean", "sample"], {"default": "mean", "tooltip": "Posterior mean (ComfyUI) or a sample."}),
                "seed": (
                    "INT",
                    {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF, "control_after_generate": False,
                     "tooltip": "Seed for mode 'sample'."},
                ),
            },
        }

    @interruptible
    def encode(self, pixels, vae, tile_size: int, overlap: int, mode: str = "mean", seed: int = 0) -> tuple:  # noqa: ANN001
        z = vae_any.encode_image(vae, pixels, tile_size, overlap, mode == "sample", seed)
        return ({"samples": z.to(comfy_adapter.intermediate_device())},)


class LatentOpsVAEDecode:
    CATEGORY = "latent_ops/vae"
    DESCRIPTION = (
        "Decodes raw latents to images. tile_size 0 lets the VAE decide; tiles are seamless. batch_chunk bounds "
        "memory for long latent walks (0 = whole batch)."
    )
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("image",)
    FUNCTION = "decode"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "samples": ("LATENT", {"tooltip": "Raw latents."}),
                "vae": ("VAE", {"tooltip": "A Latent Ops or ComfyUI VAE."}),
                **_TILING,
            },
            "optional": {
                "batch_chunk": (
                    "INT",
                    {"default": 0, "min": 0, "max": 4096, "tooltip": "Latents decoded per call; 0 = all at once."},
                ),
            },
        }

    @interruptible
    def decode(self, samples: dict, vae, tile_size: int, overlap: int, batch_chunk: int = 0) -> tuple:  # noqa: ANN001
        z = samples["samples"]
        image = vae_any.decode_latent(vae, z, tile_size, overlap, batch_chunk)
        return (image.to(comfy_adapter.intermediate_device()),)


NODE_CLASS_MAPPINGS: dict[str, type] = {
    "LatentOpsVAELoader": LatentOpsVAELoader,
    "LatentOpsVAEEncode": LatentOpsVAEEncode,
    "LatentOpsVAEDecode": LatentOpsVAEDecode,
}
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {
    "LatentOpsVAELoader": "Load VAE (Latent Ops)",
    "LatentOpsVAEEncode": "VAE Encode (Latent Ops)",
    "LatentOpsVAEDecode": "VAE Decode (Latent Ops)",
}
