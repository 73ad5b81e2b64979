"""ComfyUI nodes for :mod:`latent_ops.interp` and :mod:`latent_ops.walk`: lerp, slerp, walks."""

from __future__ import annotations

from ._library import interp, walk
from .comfy_adapter import interruptible

CATEGORY = "latent_ops/interpolate"

_T = (
    "FLOAT",
    {"default": 0.5, "min": 0.0, "max": 1.0, "step": 0.01, "tooltip": "0 gives samples1, 1 gives samples2."},
)
_MAGNITUDE = (
    list(interp.MAGNITUDES),
    {
        "default": "slerp",
        "tooltip": "Norm of the result: slerp = the interpolation's own; lerp = blend the two norms; "
        "gaussian = sqrt(elements per vector), the norm expected of unit Gaussian noise.",
    },
)
_PAIR = {
    "samples1": (
        "LATENT",
        {
            "tooltip": "Returned at t = 0. Its batch_index/noise_mask are kept (samples2's if samples1 is broadcast)."
        },
    ),
    "samples2": ("LATENT", {"tooltip": "Returned at t = 1. A batch of 1 is broadcast against samples1."}),
    "t": _T,
}


class LatentOpsLerp:
    """Linear interpolation of two latents."""

    CATEGORY = CATEGORY
    DESCRIPTION = (
        "Linear interpolation (1 - t) * samples1 + t * samples2, computed in float32. "
        "Between two noise latents this lowers the noise level mid-way; use Latent Slerp there."
    )
    RETURN_TYPES = ("LATENT",)
    RETURN_NAMES = ("LATENT",)
    FUNCTION = "execute"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": dict(_PAIR)}

    @interruptible
    def execute(self, samples1: dict, samples2: dict, t: float) -> tuple[dict]:
        return (interp.lerp_latents(samples1, samples2, t),)


class LatentOpsSlerp:
    """Spherical interpolation of two latents, NaN-free for identical/opposite/zero inputs."""

    CATEGORY = CATEGORY
    DESCRIPTION = (
        "Spherical interpolation from samples1 (t = 0) to samples2 (t = 1), one angle per sample "
        "or per pixel. Finite for identical, opposite and empty latents, unlike the common copies."
    )
    RETURN_TYPES = ("LATENT",)
    RETURN_NAMES = ("LATENT",)
    FUNCTION = "execute"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                **_PAIR,
                "granularity": (
                    list(interp.GRANULARITIES),
                    {
                        "default": "sample",
                        "tooltip": "sample: one angle per batch item over the whole latent; "
                        "pixel: one angle per position over its channel vector.",
                    },
                ),
                "magnitude": _MAGNITUDE,
            }
        }

    @interruptible
    def execute(
        self, samples1: dict, samples2: dict, t: float, granularity: str, magnitude: str
    ) -> tuple[dict]:
        return (interp.slerp_latents(samples1, samples2, t, granularity=granularity, magnitude=magnitude),)


class LatentOpsWalk:
    """A batch of frames walking through a batch of keyframe latents."""

    CATEGORY = CATEGORY
    DESCRIPTION = (
        "Makes `frames` latents walking through the keyframes batch in order (slerp or lerp per "
        "segment, eased within each segment), optionally looping back to the first without "
        "repeating it. The output drops batch_index (frames are new samples) and keeps a single "
        "noise_mask; a per-keyframe noise_mask is an error."
    )
    RETURN_TYPES = ("LATENT",)
    RETURN_NAMES = ("LATENT",)
    FUNCTION = "execute"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "keyframes": ("LATENT", {"tooltip": "A batch of at least 2 latents, walked in batch order."}),
                "frames": (
                    "INT",
                    {
                        "default": 16,
                        "min": 2,
                        "max": 4096,
                        "tooltip": "Number of output latents; the first is keyframe 0.",
                    },
                ),
                "easing": (
                    list(walk.EASINGS),
                    {
                        "default": "linear",
                        "tooltip": "Speed curve within each segment; constant_angular spreads frames by angle "
                        "so consecutive frames are equally far apart.",
                    },
                ),
                "loop": (
                    "BOOLEAN",
                    {
                        "default": False,
                        "tooltip": "Walk back to keyframe 0 and stop one frame short: seamless GIFs.",
                    },
                ),
                "method": (
                    list(walk.METHODS),
                    {
                        "default": "slerp",
                        "tooltip": "slerp keeps noise at full strength; lerp is a cross-fade.",
                    },
                ),
                "magnitude": _MAGNITUDE,
                "power": (
                    "FLOAT",
                    {
                        "default": 2.0,
                        "min": 0.1,
                        "max": 8.0,
                        "step": 0.1,
                        "tooltip": "Exponent of the ease_in / ease_out / ease_in_out curves.",
                    },
                ),
            }
        }

    @interruptible
    def execute(
        self, keyframes: dict, frames: int, easing: str, loop: bool, method: str, magnitude: str, power: float
    ) -> tuple[dict]:
        return (walk.walk_latent(keyframes, frames, easing=easing, loop=loop, method=method, magnitude=magnitude,
                                 power=power),)


NODE_CLASS_MAPPINGS: dict[str, type] = {
    "LatentOpsLerp": LatentOpsLerp,
    "LatentOpsSlerp": LatentOpsSlerp,
    "LatentOpsWalk": LatentOpsWalk,
}
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {
    "LatentOpsLerp": "Latent Lerp",
    "LatentOpsSlerp": "Latent Slerp",
    "LatentOpsWalk": "Latent Walk",
}
