"""Seeded noise: named seed conventions, noise types, variation seeds and per-image step noise.

- :mod:`.conventions`: :func:`make_noise` under the ``comfy``, ``a1111``, ``a1111_nv`` and
  ``diffusers`` conventions (the public names below come from there).
- :mod:`.types`: uniform, Perlin, pyramid, coloured and offset noise on the same generators.
- :mod:`.variation`: variation seeds (A1111 subseeds) and stacked ``seed:weight`` variations.
- :mod:`.step`: per-image step noise streams for stochastic samplers (A1111's stream too).
- :mod:`.brownian`: per-image Brownian trees, the step noise of SDE samplers (torchsde's layout).
- :mod:`.philox`: the CPU emulation of CUDA's Philox ``randn`` (A1111 "NV").
- :mod:`.latent`: :func:`noise_latent`, noise as a LATENT dict shaped from an image size or a latent.

Seeds and their range: :mod:`latent_ops.seeds`.
"""

from .conventions import (
    CONVENTIONS,
    NOISE_VERSIONS,
    STEP_NOISE_VERSION,
    StepNoise,
    derive_step_seed,
    image_seeds,
    make_noise,
    make_step_noise,
    noise_shape,
    versions,
)
from .latent import latent_shape, noise_latent

__all__ = [
    "CONVENTIONS", "NOISE_VERSIONS", "STEP_NOISE_VERSION", "StepNoise", "derive_step_seed", "image_seeds",
    "latent_shape", "make_noise", "make_step_noise", "noise_latent", "noise_shape", "versions",
]
