"""Image nodes the example workflows need around the latent operations: animations, sprite sheets."""

from __future__ import annotations

from ._library import animation, images
from .comfy_adapter import comfy_folders, interruptible


class LatentOpsSaveAnimation:
    CATEGORY = "latent_ops/image"
    DESCRIPTION = (
        "Save a batch of images as one animated GIF in the output folder (ComfyUI's filename counter; written "
        "atomically, never overwriting). Use it for walks and traversal loops."
    )
    RETURN_TYPES = ()
    FUNCTION = "execute"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "Frames in order, [N, H, W, 3]."}),
                "filename_prefix": ("STRING", {"default": "latent_ops/walk", "tooltip": "Subfolders allowed."}),
                "fps": ("FLOAT", {"default": 12.0, "min": 0.1, "max": 100.0, "step": 0.1}),
                "loop": ("BOOLEAN", {"default": True, "tooltip": "Loop forever (seamless walks), or play once."}),
            },
            "optional": {
                "scale": ("INT", {"default": 1, "min": 1, "max": 16, "tooltip": "Enlarge small frames (nearest)."}),
            },
        }

    @interruptible
    def execute(self, images: object, filename_prefix: str, fps: float, loop: bool, scale: int = 1) -> dict:
        with comfy_folders():
            saved = animation.save_animation(images, filename_prefix, fps=fps, loop=loop, scale=scale)
        return {"ui": {"images": [saved], "animated": (True,)}, "result": ()}


class LatentOpsSplitImage:
    CATEGORY = "latent_ops/image"
    DESCRIPTION = (
        "Cut a sprite sheet (a grid of equal tiles in one picture) into a batch of images, row by row. "
        "Handy for encoding a few hundred small pictures that ship as one file."
    )
    RETURN_TYPES = ("IMAGE", "INT")
    RETURN_NAMES = ("images", "count")
    FUNCTION = "execute"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "image": ("IMAGE", {"tooltip": "The sheet, [1, H, W, 3] (a batch is split item by item)."}),
                "tile_width": ("INT", {"default": 32, "min": 1, "max": 16384}),
                "tile_height": ("INT", {"default": 32, "min": 1, "max": 16384}),
            },
            "optional": {
                "limit": ("INT", {"default": 0, "min": 0, "max": images.MAX_TILES, "tooltip": f"Keep the first N tiles (0 = all; a sheet gives at most {images.MAX_TILES})."}),
            },
        }

    @interruptible
    def execute(self, image: object, tile_width: int, tile_height: int, limit: int = 0) -> tuple:
        tiles = images.split_grid(image, tile_height, tile_width, limit=limit)
        return (tiles, int(tiles.shape[0]))


NODE_CLASS_MAPPINGS: dict[str, type] = {
    "LatentOpsSaveAnimation": LatentOpsSaveAnimation,
    "LatentOpsSplitImage": LatentOpsSplitImage,
}
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {
    "LatentOpsSaveAnimation": "Save Animation (GIF)",
    "LatentOpsSplitImage": "Split Sprite Sheet",
}
