"""Headless stand-ins for the ComfyUI core nodes that workflows put around ours.

Same IDs, input names, defaults, ranges and behaviour as ComfyUI's own (``nodes.py`` and
``comfy_extras/nodes_latent.py`` at 0.3.64). They exist only in ``headless_registry()``: inside
ComfyUI the originals are used. Files go through ``latent_ops.media.files`` (confined folders).
"""

from __future__ import annotations

import secrets

from ._library import files
from ._library import latents as core

MAX_RESOLUTION = 16384
_HIDDEN = {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}


class EmptyLatentImage:
    CATEGORY = "latent"
    DESCRIPTION = "Create a new batch of empty latent images to be denoised via sampling."
    RETURN_TYPES = ("LATENT",)
    OUTPUT_TOOLTIPS = ("The empty latent image batch.",)
    FUNCTION = "generate"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        size = {"default": 512, "min": 16, "max": MAX_RESOLUTION, "step": 8}
        return {"required": {
            "width": ("INT", {**size, "tooltip": "The width of the latent images in pixels."}),
            "height": ("INT", {**size, "tooltip": "The height of the latent images in pixels."}),
            "batch_size": ("INT", {"default": 1, "min": 1, "max": 4096, "tooltip": "The number of latent images in the batch."}),
        }}

    def generate(self, width: int, height: int, batch_size: int = 1) -> tuple[dict]:
        return (core.empty_latent(width, height, batch_size),)


class VAEEncode:
    CATEGORY = "latent"
    DESCRIPTION = "Encode pixel images into raw latents with a VAE."
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {"pixels": ("IMAGE",), "vae": ("VAE",)}}

    def encode(self, vae: object, pixels: object) -> tuple[dict]:
        return ({"samples": vae.encode(pixels[:, :, :, :3])},)


class VAEDecode:
    CATEGORY = "latent"
    DESCRIPTION = "Decodes latent images back into pixel space images."
    RETURN_TYPES = ("IMAGE",)
    OUTPUT_TOOLTIPS = ("The decoded image.",)
    FUNCTION = "decode"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {
            "samples": ("LATENT", {"tooltip": "The latent to be decoded."}),
            "vae": ("VAE", {"tooltip": "The VAE model used for decoding the latent."}),
        }}

    def decode(self, vae: object, samples: dict) -> tuple[object]:
        images = vae.decode(samples["samples"])
        if images.ndim == 5:  # video: fold time into the batch, as ComfyUI does
            images = images.reshape(-1, *images.shape[-3:])
        return (images,)


class LoadImage:
    CATEGORY = "image"
    DESCRIPTION = "Load an image (and its alpha as a mask: 1 - alpha) from the input folder."
    RETURN_TYPES = ("IMAGE", "MASK")
    FUNCTION = "load_image"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        # ComfyUI lists an empty folder as []; one empty entry keeps the combo well formed.
        names = files.list_inputs(files.IMAGE_SUFFIXES) or [""]
        return {"required": {"image": (names, {"image_upload": True, "tooltip": "File in the input folder."})}}

    def load_image(self, image: str) -> tuple[object, object]:
        return files.load_image(files.resolve_input(image))

    @classmethod
    def IS_CHANGED(cls, image: str) -> str:
        return files.input_fingerprint(image)

    @classmethod
    def VALIDATE_INPUTS(cls, image: str) -> bool | str:
        return files.input_problem(image, "image")


class SaveImage:
    CATEGORY = "image"
    DESCRIPTION = "Saves the input images to your output directory (PNG with prompt and workflow metadata)."
    RETURN_TYPES = ()
    FUNCTION = "save_images"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "The images to save."}),
                "filename_prefix": ("STRING", {"default": "ComfyUI", "tooltip": "The prefix for the file to save. "
                                               "This may include formatting information such as %date:yyyy-MM-dd% or "
                                               "%Empty Latent Image.width% to include values from nodes."}),
            },
            "hidden": dict(_HIDDEN),
        }

    def save_images(self, images: object, filename_prefix: str = "ComfyUI", prompt: dict | None = None,
                    extra_pnginfo: dict | None = None) -> dict:
        return {"ui": {"images": files.save_images(images, filename_prefix, prompt, extra_pnginfo)}}


class PreviewImage:
    CATEGORY = "image"
    DESCRIPTION = "Saves the input images to the temp folder for previewing."
    RETURN_TYPES = ()
    FUNCTION = "save_images"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {"images": ("IMAGE",)}, "hidden": dict(_HIDDEN)}

    def save_images(self, images: object, prompt: dict | None = None, extra_pnginfo: dict | None = None) -> dict:
        prefix = "ComfyUI_temp_" + "".join(secrets.choice("abcdefghijklmnopqrstupvxyz") for _ in range(5))
        return {"ui": {"images": files.save_images(images, prefix, prompt, extra_pnginfo, temp=True)}}


class LatentFromBatch:
    CATEGORY = "latent/batch"
    DESCRIPTION = "Take items from a latent batch; batch_index is kept absolute so noise matches the full batch."
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "frombatch"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {
            "samples": ("LATENT",),
            "batch_index": ("INT", {"default": 0, "min": 0, "max": 63}),
            "length": ("INT", {"default": 1, "min": 1, "max": 64}),
        }}

    def frombatch(self, samples: dict, batch_index: int, length: int) -> tuple[dict]:
        return (core.latent_from_batch(samples, batch_index, length),)


class RepeatLatentBatch:
    CATEGORY = "latent/batch"
    DESCRIPTION = "Repeat a latent batch; batch_index is extended with offsets."
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "repeat"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {"samples": ("LATENT",), "amount": ("INT", {"default": 1, "min": 1, "max": 64})}}

    def repeat(self, samples: dict, amount: int) -> tuple[dict]:
        return (core.repeat_latent_batch(samples, amount),)


class LatentBatch:
    CATEGORY = "latent/batch"
    DESCRIPTION = "Concatenate two latent batches (samples2 resized to samples1 if needed)."
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "batch"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {"samples1": ("LATENT",), "samples2": ("LATENT",)}}

    def batch(self, samples1: dict, samples2: dict) -> tuple[dict]:
        return (core.latent_batch(samples1, samples2),)


class SaveLatent:
    CATEGORY = "_for_testing"
    DESCRIPTION = "Save latents as a .latent file (safetensors) in the output folder."
    RETURN_TYPES = ()
    FUNCTION = "save"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {"samples": ("LATENT",), "filename_prefix": ("STRING", {"default": "latents/ComfyUI"})},
                "hidden": dict(_HIDDEN)}

    def save(self, samples: dict, filename_prefix: str = "latents/ComfyUI", prompt: dict | None = None,
             extra_pnginfo: dict | None = None) -> dict:
        return {"ui": {"latents": [files.save_latent(samples["samples"], filename_prefix, prompt, extra_pnginfo)]}}


class LoadLatent:
    CATEGORY = "_for_testing"
    DESCRIPTION = "Load a .latent file from the input folder."
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {"latent": (files.list_inputs(frozenset({".latent"})) or [""],)}}

    def load(self, latent: str) -> tuple[dict]:
        return (files.load_latent(files.resolve_input(latent)),)

    @classmethod
    def IS_CHANGED(cls, latent: str) -> str:
        return files.input_fingerprint(latent)

    @classmethod
    def VALIDATE_INPUTS(cls, latent: str) -> bool | str:
        return files.input_problem(latent, "latent")


HEADLESS_NODE_CLASS_MAPPINGS: dict[str, type] = {
    "LoadImage": LoadImage,
    "SaveImage": SaveImage,
    "PreviewImage": PreviewImage,
    "EmptyLatentImage": EmptyLatentImage,
    "VAEEncode": VAEEncode,
    "VAEDecode": VAEDecode,
    "LatentFromBatch": LatentFromBatch,
    "RepeatLatentBatch": RepeatLatentBatch,
    "LatentBatch": LatentBatch,
    "SaveLatent": SaveLatent,
    "LoadLatent": LoadLatent,
}
HEADLESS_NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {
    "LoadImage": "Load Image",
    "SaveImage": "Save Image",
    "PreviewImage": "Preview Image",
    "EmptyLatentImage": "Empty Latent Image",
    "VAEEncode": "VAE Encode",
    "VAEDecode": "VAE Decode",
    "LatentFromBatch": "Latent From Batch",
    "RepeatLatentBatch": "Repeat Latent Batch",
    "LatentBatch": "Latent Batch",
    "SaveLatent": "Save Latent",
    "LoadLatent": "Load Latent",
}
