"""Noise sources: how seeds become noise, as small frozen objects that samplers can carry.

- :class:`SeedOptions`: the choices shared by initial and step noise (convention, variation seed,
  stacked variations), checked once; :meth:`SeedOptions.step_noise` is the per-image step-noise
  stream of one sampling run.
- :class:`SeededNoise`: a seed plus those options plus a noise type. It has the *NOISE* interface
  of ComfyUI's custom sampling (``SamplerCustomAdvanced``): a ``seed`` attribute and
  ``generate_noise(latent)`` returning CPU noise shaped like ``latent["samples"]``. Nothing here
  imports ComfyUI.

With ``convention="comfy"``, Gaussian noise and no variation, :meth:`SeededNoise.generate_noise`
equals ComfyUI's ``comfy.sample.prepare_noise(samples, seed, batch_index)`` (the same draws, in the
latent's dtype).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torch import Tensor

from .. import seeds as seed_range
from . import types as noise_types
from . import variation
from .conventions import _check_convention, make_noise, make_step_noise
from .step import StepNoise

__all__ = ["SeedOptions", "SeededNoise"]


@dataclass(frozen=True)
class SeedOptions:
    """How seeds become noise: a convention, a variation seed, stacked variations and A1111's ENSD.

    Args:
        convention: one of :data:`latent_ops.noise.CONVENTIONS`.
        subseed: variation seed in [0, 2**64). subseed_strength: its weight in [0, 1] (0 = off).
        variations: stacked ``[(seed, weight), ...]`` or ``"123:0.2, 456:0.1"``; stored parsed,
            as a tuple of ``(seed, weight)`` pairs.
        ensd: A1111's "eta noise seed delta" for stream step noise (0 = A1111's default; see
            :func:`latent_ops.sampling.noise_sampler.make_noise_sampler`).

    Raises:
        ValueError: on an unknown convention, a bad seed, strength, variation list or ensd.
    """

    convention: str = "comfy"
    subseed: int = 0
    subseed_strength: float = 0.0
    variations: tuple[tuple[int, float], ...] | str = ()
    ensd: int = 0

    def __post_init__(self) -> None:
        _check_convention(self.convention)
        object.__setattr__(self, "subseed", seed_range.check_seed(self.subseed, "subseed"))
        object.__setattr__(self, "subseed_strength", variation.check_strength(self.subseed_strength))
        parsed = variation.check_variations(self.variations)
        object.__setattr__(self, "variations", tuple((int(s), float(w)) for s, w in parsed))
        if isinstance(self.ensd, bool) or not isinstance(self.ensd, int):
            raise ValueError(f"SeedOptions: ensd must be an integer, got {self.ensd!r}")

    def step_noise(self, seed: int, batch_size: int, batch_index: Sequence[int] | None = None) -> StepNoise:
        """Fresh per-image step noise for one sampling run of ``batch_size`` images.

        Image ``k`` gets the step noise of :func:`latent_ops.noise.image_seeds` ``(seed, ...)[k]``
        (``seed + k``, or ``seed + batch_index[k]``), so it equals the same seed run alone.
        Call it once per run: the returned generators advance with every draw. (The stream of
        ancestral samplers; SDE samplers draw from Brownian trees, see
        :func:`latent_ops.sampling.noise_sampler.make_noise_sampler`.)

        Raises:
            ValueError: on a bad seed, batch size or batch_index.
        """
        return make_step_noise(
            seed, batch_size, convention=self.convention, batch_index=batch_index, subseed=self.subseed,
            subseed_strength=self.subseed_strength, variations=self.variations, seed_delta=self.ensd or None,
        )


@dataclass(frozen=True)
class SeededNoise:
    """Seeded initial noise with ComfyUI's NOISE interface (``seed``, ``generate_noise``).

    Args:
        seed: the seed in [0, 2**64) (ComfyUI passes it on to the sampler as ``extra_args["seed"]``).
        options: :class:`SeedOptions` (convention and variations).
        noise_type: a name from :data:`latent_ops.noise.types.NOISE_TYPES` (initial noise only;
            step noise is always Gaussian).

    Raises:
        ValueError: on a bad seed or an unknown noise type.
    """

    seed: int
    options: SeedOptions = SeedOptions()
    noise_type: str = "gaussian"

    def __post_init__(self) -> None:
        object.__setattr__(self, "seed", seed_range.check_seed(self.seed))
        if not isinstance(self.options, SeedOptions):
            raise ValueError(f"SeededNoise: options must be SeedOptions, got {type(self.options).__name__}")
        noise_types.get_type(self.noise_type)

    def generate_noise(self, latent: dict) -> Tensor:
        """Noise for a LATENT dict: ``[B, C, H, W]`` (or 5-D) like ``latent["samples"]``.

        Uses the latent's ``batch_index`` if present; returns a CPU tensor in the latent's dtype.

        Raises:
            ValueError: if ``latent`` is not a dict with a floating ``samples`` tensor, or on a bad
                ``batch_index``.
        """
        samples = latent.get("samples") if isinstance(latent, dict) else None
        if not isinstance(samples, Tensor) or not samples.dtype.is_floating_point:
            got = type(samples).__name__ if isinstance(latent, dict) else type(latent).__name__
            raise ValueError(f"SeededNoise.generate_noise: expected a LATENT dict with a float 'samples' tensor, got {got}")
        o = self.options
        return make_noise(
            tuple(samples.shape), self.seed, convention=o.convention, noise_type=self.noise_type,
            subseed=o.subseed, subseed_strength=o.subseed_strength, variations=o.variations,
            batch_index=latent.get("batch_index"), dtype=samples.dtype,
        )
