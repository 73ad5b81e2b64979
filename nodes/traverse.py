"""ComfyUI nodes for :mod:`latent_ops.traverse` (dimension traversal) and the labelled image grid."""

from __future__ import annotations

from ._library import images as image_lib
from ._library import traverse
from .comfy_adapter import interruptible


class LatentOpsTraverse:
    """Dimension traversal: a batch of latents sweeping one coordinate per row."""

    CATEGORY = "latent_ops/traverse"
    DESCRIPTION = (
        "Sweeps each latent in `samples` along single channels, principal components of the "
        "per-pixel channel vectors (fitted on `reference`), or the direction direction_a - "
        "direction_b. Output: rows = input item x swept channel/component, columns = values, "
        "row-major, ready for VAE Decode and Latent Ops Image Grid (columns, labels). "
        "noise_mask and batch_index are kept, each item's entry repeated for its outputs."
    )
    RETURN_TYPES = ("LATENT", "STRING", "STRING", "STRING", "INT")
    RETURN_NAMES = ("samples", "labels", "row_labels", "col_labels", "columns")
    FUNCTION = "execute"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "samples": ("LATENT", {"tooltip": "Base latents; every batch item gets its own rows."}),
                "mode": (list(traverse.MODES), {"default": "channel", "tooltip": "channel: one latent channel at every "
                         "pixel; pca: a principal colour axis of the per-pixel channel vectors; "
                         "direction: the whole-latent direction direction_a - direction_b."}),
                "channels": ("STRING", {"default": "all", "tooltip": "Channels (channel mode) or 0-based "
                             "components (pca mode) to sweep: 'all', '0,1,2' or '0-3'. Unused in direction mode."}),
                "range_mode": (list(traverse.RANGE_MODES), {"default": "std", "tooltip": "interval: lo..hi "
                               "as given (direction: 1 adds the whole a - b); std: multiples of the fitted "
                               "standard deviation; quantile: lo, hi in [0, 1] of the fitted distribution."}),
                "lo": ("FLOAT", {"default": -2.0, "min": -1000.0, "max": 1000.0, "step": 0.05,
                                 "tooltip": "First value of the sweep."}),
                "hi": ("FLOAT", {"default": 2.0, "min": -1000.0, "max": 1000.0, "step": 0.05,
                                 "tooltip": "Last value of the sweep."}),
                "steps": ("INT", {"default": 7, "min": 1, "max": 256, "tooltip": "Values from lo to hi."}),
                "op": (list(traverse.OPS), {"default": "offset", "tooltip": "offset: add the value "
                       "(quantile: Q(v) - median); replace: set the coordinate to it. Direction mode: offset only."}),
                "pingpong": ("BOOLEAN", {"default": False, "tooltip": "Go lo..hi and back without repeating "
                             "the ends: a seamless loop of 2 * steps - 2 frames."}),
            },
            "optional": {
                "reference": ("LATENT", {"tooltip": "Batch to fit std/quantiles/PCA on (same channels); "
                              "default: samples itself."}),
                "direction_a": ("LATENT", {"tooltip": "Direction mode: the direction points from b to a."}),
                "direction_b": ("LATENT", {"tooltip": "Direction mode: same shape as direction_a."}),
            },
        }

    @interruptible
    def execute(self, samples: dict, mode: str, channels: str, range_mode: str, lo: float, hi: float,
                steps: int, op: str, pingpong: bool, reference: dict | None = None,
                direction_a: dict | None = None, direction_b: dict | None = None) -> tuple:
        out, result = traverse.traverse_latent(
            samples, mode, channels=channels, range_mode=range_mode, lo=lo, hi=hi, steps=steps, op=op,
            pingpong=pingpong, reference=reference, direction_a=direction_a, direction_b=direction_b,
            normalize=False)
        return (out, "\n".join(result.labels), "\n".join(result.row_labels), "\n".join(result.col_labels),
                result.cols)


class LatentOpsImageGrid:
    """A labelled contact sheet of an image batch."""

    CATEGORY = "latent_ops/image"
    DESCRIPTION = (
        "Lays a batch of images out row-major on one image with optional labels under each image "
        "and on the rows/columns (connect Latent Ops Traverse's labels, row_labels, col_labels "
        "and columns). Small images can be scaled up (nearest) so the text stays readable."
    )
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("IMAGE",)
    FUNCTION = "execute"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        text = {"multiline": True, "default": ""}
        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "The batch to lay out, in row-major order."}),
                "columns": ("INT", {"default": 0, "min": 0, "max": 4096, "tooltip": "Images per row; 0 = near-square."}),
                "scale": ("INT", {"default": 1, "min": 1, "max": 16, "tooltip": "Integer nearest-neighbour upscale."}),
            },
            "optional": {
                "labels": ("STRING", {**text, "tooltip": "One label per image: one per line, or comma-separated."}),
                "row_labels": ("STRING", {**text, "tooltip": "One label per row (lines or commas)."}),
                "col_labels": ("STRING", {**text, "tooltip": "One label per column (lines or commas)."}),
                "pad": ("INT", {"default": 2, "min": 0, "max": 256, "tooltip": "Gap between images, pixels."}),
                "font_size": ("INT", {"default": 0, "min": 0, "max": 256, "tooltip": "Text height; 0 = auto."}),
            },
        }

    @interruptible
    def execute(self, images: object, columns: int, scale: int, labels: str = "", row_labels: str = "",
                col_labels: str = "", pad: int = 2, font_size: int = 0) -> tuple:
        return (image_lib.labelled_grid(images, columns=columns, scale=scale, labels=labels, row_labels=row_labels,
                                        col_labels=col_labels, pad=pad, font_size=font_size),)


NODE_CLASS_MAPPINGS: dict[str, type] = {
    "LatentOpsTraverse": LatentOpsTraverse,
    "LatentOpsImageGrid": LatentOpsImageGrid,
}
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {
    "LatentOpsTraverse": "Latent Traverse (channels / PCA / direction)",
    "LatentOpsImageGrid": "Image Grid (labelled)",
}
