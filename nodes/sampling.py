"""ComfyUI nodes for latent_ops sampling: checkpoint loader, text encode, sampler and unsampler."""

from __future__ import annotations

from ._library import checkpoints, diffusion, noise, schedules, seeds
from ._library import samplers as sampling
from .comfy_adapter import compute_device, compute_dtype, interruptible, model_folders

MODEL, CLIP = "LATENT_OPS_MODEL", "LATENT_OPS_CLIP"

_SEED = ("INT", {"default": 0, "min": 0, "max": seeds.MAX_SEED, "control_after_generate": True,
                 "tooltip": "Seed of the initial noise and of the per-image step noise (image k uses seed + k)."})
_STEPS = ("INT", {"default": 20, "min": 1, "max": 10000, "tooltip": "Number of denoising steps."})
_CFG = ("FLOAT", {"default": 8.0, "min": 0.0, "max": 100.0, "step": 0.1, "round": 0.01,
                  "tooltip": "Classifier-free guidance scale (the embedded model works best around 3-5)."})
_SCHEDULER = (list(schedules.SCHEDULER_NAMES), {"default": "normal", "tooltip": "Sigma schedule (ComfyUI names)."})
ENSD = ("INT", {"default": 0, "min": 0, "max": seeds.MAX_SEED, "tooltip": (
    "A1111's 'Eta noise seed delta' for ancestral samplers' step noise. 0 (A1111's default): with the a1111 "
    "conventions step noise continues each image's initial-noise generator, as in A1111. Not 0: image k's step "
    "noise comes from a generator seeded seed + k + ensd. SDE samplers (Brownian trees seeded with seed + k) "
    "ignore it, as A1111 does.")})
"""The ``ensd`` input of the samplers (here and in :mod:`.comfy_sampling`)."""
ADVANCED: dict[str, tuple] = {  # KSamplerAdvanced's step window and A1111's ENSD, shared by both sampler nodes
    "add_noise": ("BOOLEAN", {"default": True, "tooltip": "Add the initial noise (KSamplerAdvanced)."}),
    "start_at_step": ("INT", {"default": 0, "min": 0, "max": 10000, "tooltip": "First step to run."}),
    "end_at_step": ("INT", {"default": 10000, "min": 0, "max": 10000, "tooltip": "Step to stop at."}),
    "return_with_leftover_noise": ("BOOLEAN", {"default": False,
                                   "tooltip": "Stop early without finishing the last step's denoise."}),
    "ensd": ENSD,
}
_DENOISE = ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01,
                      "tooltip": "Fraction of the schedule to run; < 1 keeps part of the input (img2img)."})


def _checkpoint_choices() -> list[str]:
    names = checkpoints.checkpoint_choices(model_folders("checkpoints"), model_folders("diffusers"))
    return names or ["(no checkpoints found)"]


class LatentOpsCheckpointLoader:
    CATEGORY = "latent_ops/sampling"
    DESCRIPTION = ("Loads a diffusion model, its text encoder and its VAE from a checkpoint file, a diffusers "
                   "folder, or the embedded default model, fully offline.")
    RETURN_TYPES = (MODEL, CLIP, "VAE")
    RETURN_NAMES = ("model", "clip", "vae")
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {"ckpt_name": (_checkpoint_choices(), {
            "tooltip": "latent-ops-default (embedded), a .safetensors checkpoint, or a diffusers folder."})}}

    @interruptible
    def load(self, ckpt_name: str) -> tuple:
        path = checkpoints.resolve_checkpoint(ckpt_name, model_folders("checkpoints"), model_folders("diffusers"))
        return tuple(checkpoints.load_checkpoint(path, device=compute_device(), dtype=compute_dtype()))


class LatentOpsTextEncode:
    CATEGORY = "latent_ops/sampling"
    DESCRIPTION = "Encodes a prompt with a Latent Ops text encoder into ComfyUI CONDITIONING."
    RETURN_TYPES = ("CONDITIONING",)
    RETURN_NAMES = ("conditioning",)
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {
            "clip": (CLIP, {"tooltip": "Text encoder from LatentOpsCheckpointLoader."}),
            "text": ("STRING", {"multiline": True, "dynamicPrompts": True, "default": "",
                                "tooltip": "The prompt (for the embedded model: a class name)."}),
        }}

    @interruptible
    def encode(self, clip: object, text: str) -> tuple:
        return (clip.encode(text),)


class LatentOpsSampler:
    CATEGORY = "latent_ops/sampling"
    DESCRIPTION = ("KSampler with reproducible noise: named seed conventions, variation seeds, and per-image "
                   "CPU step noise so image k of a batch equals the same seed run alone on any device.")
    RETURN_TYPES = ("LATENT",)
    RETURN_NAMES = ("latent",)
    FUNCTION = "sample"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "model": (MODEL, {"tooltip": "Model from LatentOpsCheckpointLoader."}),
                "seed": _SEED,
                "steps": _STEPS,
                "cfg": _CFG,
                "sampler_name": (list(sampling.SAMPLERS.names()), {"default": "euler",
                                 "tooltip": "Sampler (ComfyUI names)."}),
                "scheduler": _SCHEDULER,
                "positive": ("CONDITIONING", {"tooltip": "What to generate."}),
                "negative": ("CONDITIONING", {"tooltip": "What to steer away from (the unconditional branch)."}),
                "latent_image": ("LATENT", {"tooltip": "Start latent (empty for txt2img); noise_mask inpaints."}),
                "denoise": _DENOISE,
                "noise_convention": (list(noise.CONVENTIONS), {"default": "comfy",
                                     "tooltip": "How seeds become noise: ComfyUI, A1111 CPU/NV, or diffusers."}),
                "subseed": ("INT", {"default": 0, "min": 0, "max": seeds.MAX_SEED, "tooltip": "Variation seed."}),
                "subseed_strength": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.01,
                                               "tooltip": "0 = seed only, 1 = the subseed's image (step noise too)."}),
            },
            "optional": {
                "noise": ("LATENT", {"tooltip": "Explicit unit noise (e.g. from LatentOpsUnsample or a noise walk); "
                                     "replaces the seeded initial noise."}),
                **ADVANCED,
            },
        }

    @interruptible
    def sample(self, model: object, seed: int, steps: int, cfg: float, sampler_name: str, scheduler: str,
               positive: list, negative: list, latent_image: dict, denoise: float, noise_convention: str,
               subseed: int, subseed_strength: float, noise: dict | None = None, add_noise: bool = True,
               start_at_step: int = 0, end_at_step: int = 10000, return_with_leftover_noise: bool = False,
               ensd: int = 0) -> tuple:
        out = diffusion.sample(
            model, latent_image, positive, negative, seed=seed, steps=steps, cfg=cfg, sampler_name=sampler_name,
            scheduler=scheduler, denoise=denoise, noise_convention=noise_convention, subseed=subseed,
            subseed_strength=subseed_strength, start_step=start_at_step or None, end_step=end_at_step,
            add_noise=add_noise, return_leftover_noise=return_with_leftover_noise,
            noise=None if noise is None else noise["samples"], ensd=ensd)
        return (out,)


class LatentOpsUnsample:
    CATEGORY = "latent_ops/sampling"
    DESCRIPTION = ("Deterministically inverts a latent back to the noise that re-samples to it (reversed ODE). "
                   "Feed the result into LatentOpsSampler's 'noise' with the same latent and settings, or vary it.")
    RETURN_TYPES = ("LATENT",)
    RETURN_NAMES = ("noise",)
    FUNCTION = "unsample"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        names = list(sampling.SAMPLERS.names(invertible=True))
        return {"required": {
            "model": (MODEL, {"tooltip": "Model from LatentOpsCheckpointLoader."}),
            "positive": ("CONDITIONING", {"tooltip": "Conditioning used for the inversion."}),
            "negative": ("CONDITIONING", {"tooltip": "Unconditional branch."}),
            "latent_image": ("LATENT", {"tooltip": "The image latent to invert."}),
            "steps": _STEPS,
            "cfg": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 100.0, "step": 0.1, "round": 0.01,
                              "tooltip": "Guidance during inversion (1 inverts most faithfully)."}),
            "sampler_name": (names, {"default": "euler", "tooltip": "Deterministic samplers only."}),
            "scheduler": _SCHEDULER,
            "denoise": _DENOISE,
        }}

    @interruptible
    def unsample(self, model: object, positive: list, negative: list, latent_image: dict, steps: int, cfg: float,
                 sampler_name: str, scheduler: str, denoise: float) -> tuple:
        out = diffusion.unsample(model, latent_image, positive, negative, steps=steps, cfg=cfg,
                                 sampler_name=sampler_name, scheduler=scheduler, denoise=denoise)
        return (out,)


NODE_CLASS_MAPPINGS: dict[str, type] = {
    "LatentOpsCheckpointLoader": LatentOpsCheckpointLoader,
    "LatentOpsTextEncode": LatentOpsTextEncode,
    "LatentOpsSampler": LatentOpsSampler,
    "LatentOpsUnsample": LatentOpsUnsample,
}
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {
    "LatentOpsCheckpointLoader": "Load Checkpoint (Latent Ops)",
    "LatentOpsTextEncode": "Text Encode (Latent Ops)",
    "LatentOpsSampler": "KSampler (Latent Ops)",
    "LatentOpsUnsample": "Unsample (Latent Ops)",
}
