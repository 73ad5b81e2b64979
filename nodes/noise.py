"""ComfyUI nodes for seeded latent noise (latent_ops.noise.conventions) and noise at a sigma (latent_ops.sampling.noising)."""

from __future__ import annotations

from ._library import latent_format as formats
from ._library import noise, noise_types, noising, seeds, vae_geometry
from .comfy_adapter import intermediate_device, interruptible

NOISE_TYPE_NAMES = [n for n in noise_types.NOISE_TYPES if n != "coloured"]
FORMAT_NAMES = ["none", *formats.FORMATS]


def _geometry(vae: object | None, channels: int, downscale: int) -> tuple[int, int]:
    """(channels, downscale): the widgets, or a ComfyUI-style VAE's (``latent_ops.vae.geometry``)."""
    return vae_geometry.latent_geometry(vae, channels, downscale, "LatentOpsNoise",
                                        "; for video latents connect 'like' instead")


def _model_space(model: object) -> tuple[str, object]:
    """(prediction, latent format) of our MODEL (``.prediction``, ``.latent_format``) or ComfyUI's."""
    if hasattr(model, "prediction") and hasattr(model, "latent_format"):
        return model.prediction, model.latent_format
    if hasattr(model, "get_model_object"):  # ComfyUI ModelPatcher
        names = [c.__name__ for c in type(model.get_model_object("model_sampling")).__mro__]
        for name, prediction in (("CONST", "flow"), ("V_PREDICTION", "v"), ("EPS", "eps")):
            if name in names:
                return prediction, model.get_model_object("latent_format")
        raise ValueError(f"LatentOpsAddNoise: model sampling {names[0]} is not eps, v or flow")
    raise ValueError(
        f"LatentOpsAddNoise: model {type(model).__name__} has no 'prediction'/'latent_format' attributes"
    )


class LatentOpsNoise:
    """Seeded noise under a named seed convention (ComfyUI, A1111 CPU/NV, diffusers)."""

    CATEGORY = "latent_ops/noise"
    DESCRIPTION = (
        "Seeded unit-variance noise shaped like a latent (not a latent image): ComfyUI, A1111 (CPU or "
        "NV = CUDA-Philox emulation) or diffusers seed conventions, non-Gaussian noise types, variation "
        "seeds and stacked variations. Drawn on the CPU, so a seed gives the same noise on every machine."
    )
    RETURN_TYPES = ("LATENT",)
    RETURN_NAMES = ("noise",)
    FUNCTION = "generate"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        seed = {"default": 0, "min": 0, "max": seeds.MAX_SEED}
        return {
            "required": {
                "width": ("INT", {"default": 512, "min": 8, "max": 16384, "step": 8,
                                  "tooltip": "Image width in pixels; divided by the downscale (floored, as ComfyUI does)."}),
                "height": ("INT", {"default": 512, "min": 8, "max": 16384, "step": 8,
                                   "tooltip": "Image height in pixels; divided by the downscale (floored)."}),
                "batch_size": ("INT", {"default": 1, "min": 1, "max": 4096}),
                "seed": ("INT", {**seed, "control_after_generate": True,
                                 "tooltip": "Noise seed. Image i uses seed+i except for 'comfy' (one batch draw)."}),
                "convention": (list(noise.CONVENTIONS), {"default": "comfy",
                               "tooltip": "comfy = ComfyUI KSampler noise; a1111 = A1111 RNG CPU; a1111_nv = A1111 "
                                          "RNG NV (CUDA randn emulated on CPU: within ~1e-5 of a GPU's up to 270,336 values per image on "
                                          "H100/H200, unrelated beyond); diffusers = one generator per image."}),
                "noise_type": (NOISE_TYPE_NAMES, {"default": "gaussian",
                               "tooltip": "gaussian (white), uniform, perlin, pyramid (multi-resolution), 1/f "
                                          "coloured (pink, brown, blue, violet), offset (per-channel shift)."}),
                "subseed": ("INT", {**seed, "tooltip": "Variation seed (A1111 'subseed')."}),
                "subseed_strength": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.01,
                                     "tooltip": "0 = the seed's noise, 1 = the subseed's noise (slerp between)."}),
            },
            "optional": {
                "vae": ("VAE", {"tooltip": "Read latent channels and downscale from this VAE."}),
                "channels": ("INT", {"default": 4, "min": 1, "max": 1024,
                                     "tooltip": "Latent channels when no VAE is connected (4 SD/SDXL, 16 SD3/Flux)."}),
                "downscale": ("INT", {"default": 8, "min": 1, "max": 64,
                                      "tooltip": "VAE spatial compression when no VAE is connected."}),
                "variations": ("STRING", {"default": "", "multiline": False,
                                          "tooltip": "Stacked variations 'seed:weight, seed:weight', applied in order."}),
                "resize_from_width": ("INT", {"default": 0, "min": 0, "max": 16384, "step": 8,
                                              "tooltip": "A1111 'resize seed from' width in pixels (0 = off)."}),
                "resize_from_height": ("INT", {"default": 0, "min": 0, "max": 16384, "step": 8,
                                               "tooltip": "A1111 'resize seed from' height in pixels (0 = off)."}),
                "like": ("LATENT", {"tooltip": "Take shape and batch_index from this latent (overrides "
                                               "width, height, batch_size, vae, channels, downscale)."}),
            },
        }

    @interruptible
    def generate(self, width: int, height: int, batch_size: int, seed: int, convention: str, noise_type: str,
                 subseed: int, subseed_strength: float, vae: object | None = None, channels: int = 4,
                 downscale: int = 8, variations: str = "", resize_from_width: int = 0,
                 resize_from_height: int = 0, like: dict | None = None) -> tuple[dict]:
        channels, downscale = _geometry(vae, channels, downscale)
        return (noise.noise_latent(
            seed, width=width, height=height, batch_size=batch_size, channels=channels, downscale=downscale,
            like=like, resize_from_px=(resize_from_height, resize_from_width), convention=convention,
            noise_type=noise_type, subseed=subseed, subseed_strength=subseed_strength, variations=variations,
            device=intermediate_device(),
        ),)


class LatentOpsAddNoise:
    """Noise a latent to a sigma in model space (correct for eps, v and flow models)."""

    CATEGORY = "latent_ops/noise"
    DESCRIPTION = (
        "Adds noise at noise level sigma the way the model's sampler does (ComfyUI AddNoise): in model "
        "space (latent format scale/shift), x + sigma*noise for eps/v models and sigma*noise + "
        "(1-sigma)*x for flow models (SD3, Flux)."
    )
    RETURN_TYPES = ("LATENT",)
    RETURN_NAMES = ("samples",)
    FUNCTION = "add"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "samples": ("LATENT", {"tooltip": "Raw latent to noise; noise_mask/batch_index are kept."}),
                "noise": ("LATENT", {"tooltip": "Unit-variance noise of the same shape (e.g. Latent Noise)."}),
                "sigma": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1000.0, "step": 0.001,
                                    "tooltip": "Noise level (k-diffusion sigma; 0..1 for flow models)."}),
                "prediction": (list(noising.PREDICTIONS), {"default": "eps",
                               "tooltip": "Model type: eps (SD1.x, SDXL), v (SD2 768-v), flow (SD3, Flux)."}),
                "latent_format": (FORMAT_NAMES, {"default": "none",
                                  "tooltip": "Scale/shift into model space; 'none' = raw space."}),
            },
            "optional": {
                "model": ("MODEL", {"tooltip": "If connected, its prediction and latent format replace the widgets."}),
                "sigmas": ("SIGMAS", {"tooltip": "If connected, sigma = |sigmas[0] - sigmas[-1]| (as ComfyUI AddNoise)."}),
            },
        }

    @interruptible
    def add(self, samples: dict, noise: dict, sigma: float, prediction: str, latent_format: str,
            model: object | None = None, sigmas: object | None = None) -> tuple[dict]:
        x, n = samples["samples"], noise["samples"]
        if x.shape != n.shape:
            raise ValueError(
                f"LatentOpsAddNoise: samples {tuple(x.shape)} and noise {tuple(n.shape)} must have the same shape"
            )
        fmt = None if latent_format == "none" else formats.get(latent_format)
        if model is not None:
            prediction, fmt = _model_space(model)
        if sigmas is not None:
            sigma = noising.sigma_from_schedule(sigmas)
        out = samples.copy()
        out["samples"] = noising.add_noise(x, n, sigma, prediction=prediction, latent_format=fmt)
        return (out,)


NODE_CLASS_MAPPINGS: dict[str, type] = {
    "LatentOpsNoise": LatentOpsNoise,
    "LatentOpsAddNoise": LatentOpsAddNoise,
}
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {
    "LatentOpsNoise": "Latent Noise",
    "LatentOpsAddNoise": "Add Noise at Sigma",
}
