"""Sampling in the k-diffusion style: samplers, schedules, model sampling, CFG and the sampling loop.

- :mod:`.registry`: one :class:`SamplerRecord` per sampler in one table, :data:`SAMPLERS`, that
  everything else reads (the name sets below are views of it).
- :mod:`.basic`, :mod:`.multistep`, :mod:`.sde`: the sampler loops.
- :mod:`.schedules`: ComfyUI's schedules as pure functions returning sigmas ending in 0.
- :mod:`.denoisers`: model sampling (eps/v discrete, flow), CFG and inpainting denoisers.
- :mod:`.noising`: noise at a sigma in model space.
- :mod:`.noise_sampler`: the per-image step noise of one run (Brownian trees for SDE samplers,
  streams otherwise; A1111's stream under the a1111 conventions).
- :mod:`.diffusion`: :class:`DiffusionModel`, :func:`sample` and :func:`unsample`.
"""

from .registry import (
    SAMPLER_NAMES,
    SAMPLERS,
    STOCHASTIC_SAMPLERS,
    SamplerRecord,
    SamplerRegistry,
    run_sampler,
    step_noise_sampler,
)

__all__ = [
    "SAMPLERS", "SAMPLER_NAMES", "STOCHASTIC_SAMPLERS", "SamplerRecord", "SamplerRegistry", "run_sampler",
    "step_noise_sampler",
]
