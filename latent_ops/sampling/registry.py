"""The sampler registry: ComfyUI sampler names -> stateless k-diffusion-style loops.

Each entry of :data:`SAMPLERS` is ``fn(model, x, sigmas, *, callback=None, **options) -> x``; the
stochastic ones (:data:`STOCHASTIC_SAMPLERS`) also need ``noise_sampler=``. :func:`run_sampler`
dispatches by name and supplies the noise sampler / noise scaling each sampler needs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor

from .basic import (
    Callback,
    NoiseSampler,
    NoiseScaling,
    get_ancestral_step,
    sample_ddim,
    sample_dpm_2,
    sample_euler,
    sample_heun,
    sample_lcm,
    sample_lms,
    to_d,
)
from .denoisers import Denoiser
from .multistep import sample_dpmpp_2m, sample_uni_pc, sample_uni_pc_bh2
from .sde import (
    sample_dpm_2_ancestral,
    sample_dpmpp_2m_sde,
    sample_dpmpp_2s_ancestral,
    sample_dpmpp_3m_sde,
    sample_dpmpp_sde,
    sample_euler_ancestral,
    sample_euler_ancestral_rf,
)

__all__ = [
    "SAMPLERS", "SAMPLER_NAMES", "STOCHASTIC_SAMPLERS", "Callback", "NoiseSampler", "get_ancestral_step",
    "run_sampler", "step_noise_sampler", "to_d",
]

SAMPLERS: dict[str, Callable[..., Tensor]] = {
    "euler": sample_euler,
    "euler_ancestral": sample_euler_ancestral,
    "heun": sample_heun,
    "dpm_2": sample_dpm_2,
    "dpm_2_ancestral": sample_dpm_2_ancestral,
    "lms": sample_lms,
    "dpmpp_2s_ancestral": sample_dpmpp_2s_ancestral,
    "dpmpp_sde": sample_dpmpp_sde,
    "dpmpp_2m": sample_dpmpp_2m,
    "dpmpp_2m_sde": sample_dpmpp_2m_sde,
    "dpmpp_3m_sde": sample_dpmpp_3m_sde,
    "lcm": sample_lcm,
    "ddim": sample_ddim,
    "uni_pc": sample_uni_pc,
    "uni_pc_bh2": sample_uni_pc_bh2,
}
"""ComfyUI sampler name -> sampler function."""

SAMPLER_NAMES: tuple[str, ...] = tuple(SAMPLERS)

STOCHASTIC_SAMPLERS: frozenset[str] = frozenset(
    {"euler_ancestral", "dpm_2_ancestral", "dpmpp_2s_ancestral", "dpmpp_sde", "dpmpp_2m_sde", "dpmpp_3m_sde", "lcm"}
)
"""Samplers that add fresh noise during sampling (need a noise sampler; cannot be inverted)."""

_FLOW_OK = frozenset({"euler", "heun", "dpm_2", "lms", "dpmpp_2m", "ddim", "uni_pc", "uni_pc_bh2", "lcm",
                      "euler_ancestral"})


def step_noise_sampler(step_noise: Callable[[Tensor], Tensor], like: Tensor) -> NoiseSampler:
    """Adapt a ``step_noise(like) -> noise`` stream (e.g. :class:`latent_ops.noise.conventions.StepNoise`) to k-diffusion's
    ``noise_sampler(sigma, sigma_next)``; the result is moved to ``like``'s device and dtype."""

    def sampler(sigma: Tensor, sigma_next: Tensor) -> Tensor:
        return step_noise(like).to(device=like.device, dtype=like.dtype)

    return sampler


def run_sampler(name: str, model: Denoiser, x: Tensor, sigmas: Tensor, *, callback: Callback | None = None,
                noise_sampler: NoiseSampler | None = None, noise_scaling: NoiseScaling | None = None,
                prediction: str = "eps", **options: Any) -> Tensor:
    """Run sampler ``name`` from ``x`` (model space, noised to ``sigmas[0]``) down the ``sigmas``.

    Args: name: a :data:`SAMPLER_NAMES` entry. model: the denoiser. noise_sampler: required by
        :data:`STOCHASTIC_SAMPLERS`. noise_scaling: the model's forward process (used by ``lcm``).
        prediction: the model's prediction type; flow models get the RF variant of
        ``euler_ancestral`` and refuse SDE samplers whose maths assume eps/v models.
    Returns: the final latent, same shape as ``x``. Raises: ValueError for unknown names, a missing
        noise sampler, or an unsupported sampler/prediction pair.
    """
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; known: {list(SAMPLER_NAMES)}")
    if prediction == "flow" and name not in _FLOW_OK:
        raise ValueError(f"sampler {name!r} is not supported for flow models; use one of {sorted(_FLOW_OK)}")
    fn = SAMPLERS[name]
    if name in STOCHASTIC_SAMPLERS:
        if noise_sampler is None:
            raise ValueError(f"sampler {name!r} is stochastic and needs a noise_sampler")
        options["noise_sampler"] = noise_sampler
        if prediction == "flow" and name == "euler_ancestral":
            fn = sample_euler_ancestral_rf
    if name == "lcm" and noise_scaling is not None:
        options["noise_scaling"] = noise_scaling
    return fn(model, x, sigmas, callback=callback, **options)
