"""ComfyUI nodes that sample ComfyUI's own MODEL with Latent Ops noise.

They run ComfyUI's sampling machinery (so LoRAs, ControlNets, model patches, area and masked
conditioning, previews and interrupts work as with the core KSampler) and change only the noise:
initial noise from :class:`latent_ops.noise.sources.SeededNoise` and per-image step noise from
:mod:`latent_ops.sampling.per_image`. ComfyUI itself is reached only through
:mod:`.comfy_adapter`; outside ComfyUI these nodes list our sampler names and refuse to run.
"""

from __future__ import annotations

from . import comfy_adapter
from ._library import noise, noise_types, seeds
from ._library import noise_sources as sources
from .comfy_adapter import interruptible
from .sampling import ADVANCED, ENSD

CATEGORY = "latent_ops/sampling"
NOISE_TYPE_NAMES = [n for n in noise_types.NOISE_TYPES if n != "coloured"]

_SEED = ("INT", {"default": 0, "min": 0, "max": seeds.MAX_SEED, "control_after_generate": True,
                 "tooltip": "Seed of the initial noise and of the per-image step noise (image k uses seed + k)."})
_CONVENTION = (list(noise.CONVENTIONS), {
    "default": "comfy", "tooltip": "How seeds become noise: comfy = core KSampler's initial noise; a1111 = A1111 CPU; "
                                   "a1111_nv = A1111 NV (CUDA Philox emulated); diffusers = one generator per image."})
_SUBSEED = ("INT", {"default": 0, "min": 0, "max": seeds.MAX_SEED, "tooltip": "Variation seed (A1111 'subseed')."})
_STRENGTH = ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.01,
                       "tooltip": "0 = seed only, 1 = the subseed's image (initial and step noise)."})
_VARIATIONS = ("STRING", {"default": "", "multiline": False,
                          "tooltip": "Stacked variations 'seed:weight, seed:weight', applied in order after the subseed."})
_NOISE_TYPE = (NOISE_TYPE_NAMES, {"default": "gaussian",
                                  "tooltip": "Initial noise type (step noise is always Gaussian)."})


def _options(noise_convention: str, subseed: int, subseed_strength: float, variations: str, ensd: int = 0) -> object:
    return sources.SeedOptions(noise_convention, subseed, subseed_strength, variations, ensd)


class LatentOpsComfyKSampler:
    CATEGORY = CATEGORY
    DESCRIPTION = (
        "ComfyUI's KSampler on ComfyUI's MODEL (LoRAs, ControlNets, patches, masks and previews all apply) with Latent "
        "Ops noise: seed conventions, noise types, variation seeds, and per-image CPU step noise, so image k of a "
        "batch equals seed k alone on any device. With 'comfy' and a deterministic sampler (euler, dpmpp_2m, ...) "
        "it equals the core KSampler, and so do the SDE samplers (dpmpp_sde, dpmpp_2m_sde, dpmpp_3m_sde: a Brownian "
        "tree per image) for one image; ancestral samplers differ from it by design (per-image step noise). With "
        "'a1111' and ancestral samplers the step noise is A1111's (see ensd)."
    )
    RETURN_TYPES = ("LATENT",)
    RETURN_NAMES = ("latent",)
    FUNCTION = "sample"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "model": ("MODEL", {"tooltip": "ComfyUI's model (e.g. from Load Checkpoint, with LoRAs applied)."}),
                "seed": _SEED,
                "steps": ("INT", {"default": 20, "min": 1, "max": 10000, "tooltip": "Number of denoising steps."}),
                "cfg": ("FLOAT", {"default": 8.0, "min": 0.0, "max": 100.0, "step": 0.1, "round": 0.01,
                                  "tooltip": "Classifier-free guidance scale."}),
                "sampler_name": (comfy_adapter.sampler_names(), {"default": "euler", "tooltip": "ComfyUI's sampler."}),
                "scheduler": (comfy_adapter.scheduler_names(), {"default": "normal",
                                                                "tooltip": "ComfyUI's scheduler."}),
                "positive": ("CONDITIONING", {"tooltip": "What to generate."}),
                "negative": ("CONDITIONING", {"tooltip": "What to steer away from."}),
                "latent_image": ("LATENT", {"tooltip": "Start latent (empty for txt2img); noise_mask inpaints."}),
                "denoise": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01,
                                      "tooltip": "Fraction of the schedule to run; < 1 keeps part of the input."}),
                "noise_convention": _CONVENTION,
                "subseed": _SUBSEED,
                "subseed_strength": _STRENGTH,
            },
            "optional": {
                "noise_type": _NOISE_TYPE,
                "variations": _VARIATIONS,
                **ADVANCED,
            },
        }

    @interruptible
    def sample(self, model: object, seed: int, steps: int, cfg: float, sampler_name: str, scheduler: str,
               positive: list, negative: list, latent_image: dict, denoise: float, noise_convention: str,
               subseed: int, subseed_strength: float, noise_type: str = "gaussian", variations: str = "",
               add_noise: bool = True, start_at_step: int = 0, end_at_step: int = 10000,
               return_with_leftover_noise: bool = False, ensd: int = 0) -> tuple:
        seeded = sources.SeededNoise(seed, _options(noise_convention, subseed, subseed_strength, variations, ensd),
                                     noise_type)
        return (comfy_adapter.ksample(
            model, latent_image, positive, negative, noise=seeded, steps=steps, cfg=cfg, sampler_name=sampler_name,
            scheduler=scheduler, denoise=denoise, add_noise=add_noise, start_step=start_at_step,
            end_step=end_at_step, force_full_denoise=not return_with_leftover_noise, node="LatentOpsComfyKSampler"),)


class LatentOpsRandomNoise:
    CATEGORY = CATEGORY
    DESCRIPTION = (
        "NOISE for SamplerCustomAdvanced with Latent Ops seed conventions, noise types and variation seeds (drawn on "
        "the CPU, honouring the latent's batch_index). 'comfy' + gaussian equals the core RandomNoise. Pair it with "
        "'Sampler Step Noise (Latent Ops)' set to the same convention and variations for per-image step noise."
    )
    RETURN_TYPES = ("NOISE",)
    RETURN_NAMES = ("noise",)
    FUNCTION = "get_noise"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "noise_seed": _SEED,
                "noise_convention": _CONVENTION,
                "noise_type": _NOISE_TYPE,
                "subseed": _SUBSEED,
                "subseed_strength": _STRENGTH,
            },
            "optional": {"variations": _VARIATIONS},
        }

    @interruptible
    def get_noise(self, noise_seed: int, noise_convention: str, noise_type: str, subseed: int,
                  subseed_strength: float, variations: str = "") -> tuple:
        options = _options(noise_convention, subseed, subseed_strength, variations)
        return (sources.SeededNoise(noise_seed, options, noise_type),)


class LatentOpsSamplerStepNoise:
    CATEGORY = CATEGORY
    DESCRIPTION = (
        "Makes a SAMPLER's step noise per-image: image k of a batch gets the step noise of seed + k alone (the seed "
        "comes from the KSampler or NOISE at run time; a SAMPLER cannot see a latent's batch_index), drawn on the CPU "
        "under the chosen convention and variations: a Brownian tree per image for the SDE samplers (dpmpp_sde, "
        "dpmpp_2m_sde, dpmpp_3m_sde and their _gpu/_heun forms), A1111's stream for ancestral samplers with a1111. "
        "Takes a connected SAMPLER (e.g. from KSamplerSelect or SamplerDPMPP_SDE, options kept) or sampler_name. "
        "Deterministic samplers pass through unchanged."
    )
    RETURN_TYPES = ("SAMPLER",)
    RETURN_NAMES = ("sampler",)
    FUNCTION = "get_sampler"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "sampler_name": (comfy_adapter.sampler_names(), {
                    "default": "euler_ancestral", "tooltip": "ComfyUI's sampler, used when no SAMPLER is connected."}),
                "noise_convention": _CONVENTION,
                "subseed": _SUBSEED,
                "subseed_strength": _STRENGTH,
            },
            "optional": {
                "sampler": ("SAMPLER", {"tooltip": "A SAMPLER to wrap instead of sampler_name (its options are kept)."}),
                "variations": _VARIATIONS,
                "ensd": ENSD,
            },
        }

    @interruptible
    def get_sampler(self, sampler_name: str, noise_convention: str, subseed: int, subseed_strength: float,
                    sampler: object | None = None, variations: str = "", ensd: int = 0) -> tuple:
        node = "LatentOpsSamplerStepNoise"
        options = _options(noise_convention, subseed, subseed_strength, variations, ensd)
        base = sampler if sampler is not None else comfy_adapter.sampler_object(sampler_name, node)
        return (comfy_adapter.with_step_noise(base, options, node),)


NODE_CLASS_MAPPINGS: dict[str, type] = {
    "LatentOpsComfyKSampler": LatentOpsComfyKSampler,
    "LatentOpsRandomNoise": LatentOpsRandomNoise,
    "LatentOpsSamplerStepNoise": LatentOpsSamplerStepNoise,
}
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {
    "LatentOpsComfyKSampler": "KSampler (Latent Ops noise)",
    "LatentOpsRandomNoise": "RandomNoise (Latent Ops)",
    "LatentOpsSamplerStepNoise": "Sampler Step Noise (Latent Ops)",
}
