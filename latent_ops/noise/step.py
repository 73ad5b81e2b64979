"""Per-image step noise for ancestral/SDE samplers: image k depends only on its own seeds.

ComfyUI draws sampler step noise on the compute device over the whole batch, so an image changes
with the GPU model and with what else is in the batch. :class:`StepNoise` keeps one CPU generator
per image instead: image ``k`` of a batch gets exactly the noise that the same seed gets alone,
on any device, and variation seeds mix into every step (so strength 1 reproduces the subseed's
own image, unlike A1111 issue #6095).

Seed derivation (version ``STEP_NOISE_VERSION = 1``): the generator of an image with seed ``s``
is seeded with ``derive_step_seed(s)`` = the SplitMix64 finaliser (:func:`latent_ops.seeds.mix64`)
of ``(s + STEP_SEED_SALT) mod 2**64``, so step noise is never the same stream as the initial noise
of any nearby seed. With
``seed_delta`` set, the step seed is A1111's "eta noise seed delta" rule ``(s + seed_delta) mod
2**64`` instead (A1111 then draws from a fresh generator seeded that way, as here). Each call
draws one ``like.shape[1:]`` tensor per image, float32, from ``source`` ``"cpu"`` (torch CPU
generator) or ``"nv"`` (:class:`latent_ops.noise.philox.PhiloxGenerator`).

:func:`latent_ops.noise.make_step_noise` builds one from a batch seed and a convention.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

from .. import seeds as seed_range
from . import variation
from .philox import PhiloxGenerator
from .types import TorchSource

STEP_NOISE_VERSION = 1
"""Version of the step-noise seed derivation and layout."""

STEP_SEED_SALT = 0x5EED_57E9_0000_0001
"""Added to an image's seed before the SplitMix64 finaliser (version 1)."""


def derive_step_seed(seed: int, seed_delta: int | None = None) -> int:
    """The step-noise generator seed of an image seed.

    Args:
        seed: the image's seed in [0, 2**64).
        seed_delta: ``None`` for the default derivation (SplitMix64 of ``seed + STEP_SEED_SALT``),
            or an integer for A1111's ``seed + eta_noise_seed_delta`` (modulo 2**64).

    Returns:
        A seed in [0, 2**64).

    Raises:
        ValueError: if ``seed`` is not an integer in [0, 2**64).
    """
    return _step_seed(seed_range.check_seed(seed), seed_delta)


def _step_seed(seed: int, seed_delta: int | None) -> int:
    """:func:`derive_step_seed` of a checked seed."""
    if seed_delta is not None:
        return seed_range.offset(seed, int(seed_delta))
    return seed_range.mix64(seed + STEP_SEED_SALT)


class StepNoise:
    """Per-image CPU generators for ancestral/SDE step noise: image k depends only on its own seed.

    Args:
        seeds: one seed per image.
        subseeds: one variation seed per image (required when ``subseed_strength != 0``).
        subseed_strength: weight of the subseed's step noise in [0, 1] (whole-sample slerp; exact
            at 0 and 1).
        variations: stacked ``[(seed_or_seeds, weight), ...]`` applied in order after the subseed;
            ``seed_or_seeds`` is one seed per image, or a single int used for every image.
        source: ``"cpu"`` (torch CPU generators) or ``"nv"`` (Philox emulation of CUDA randn).
        seed_delta: see :func:`derive_step_seed`.

    Raises:
        ValueError: on bad seeds, strengths, list lengths or source.
    """

    def __init__(
        self,
        seeds: Sequence[int],
        *,
        subseeds: Sequence[int] | None = None,
        subseed_strength: float = 0.0,
        variations: Sequence[tuple[int | Sequence[int], float]] = (),
        source: Literal["cpu", "nv"] = "cpu",
        seed_delta: int | None = None,
    ) -> None:
        if source not in ("cpu", "nv"):
            raise ValueError(f"StepNoise: source must be 'cpu' or 'nv', got {source!r}")
        checked = _check_seeds(seeds, "seeds")
        n = len(checked)
        strength = variation.check_strength(subseed_strength)
        layers: list[tuple[list[int], float]] = []
        if strength != 0.0:
            if subseeds is None or len(subseeds) != n:
                got = None if subseeds is None else len(subseeds)
                raise ValueError(f"StepNoise: subseed_strength {strength} needs {n} subseeds, got {got}")
            layers.append((_check_seeds(subseeds, "subseeds"), strength))
        for j, item in enumerate(variations):
            try:
                vseeds, weight = item
            except (TypeError, ValueError):
                raise ValueError(
                    f"StepNoise: variations[{j}] must be a (seed, weight) pair, got {item!r}"
                ) from None
            weight = variation.check_strength(weight, f"variations[{j}] weight")
            if weight == 0.0:
                continue
            per_image = [vseeds] * n if isinstance(vseeds, int) else list(vseeds)
            if len(per_image) != n:
                raise ValueError(f"StepNoise: variations[{j}] has {len(per_image)} seeds for {n} images")
            layers.append((_check_seeds(per_image, f"variations[{j}] seeds"), weight))
        self._start(checked, layers, source, seed_delta)

    @classmethod
    def _from_checked(cls, seeds: list[int], layers: list[tuple[list[int], float]], source: Literal["cpu", "nv"],
                      seed_delta: int | None) -> StepNoise:
        """A StepNoise from per-image seeds that a public function has already checked.

        ``layers`` is ``[(per-image seeds, weight), ...]``, the subseed layer first if any.
        (:func:`latent_ops.noise.make_step_noise` uses it, so a seed is checked once per call.)
        """
        self = cls.__new__(cls)
        self._start(seeds, layers, source, seed_delta)
        return self

    def _start(self, seeds: list[int], layers: list[tuple[list[int], float]], source: str, seed_delta: int | None) -> None:
        self.source = source
        self.seed_delta = seed_delta
        self.seeds = seeds
        # (weight, per-image generators), in order; weight-0 layers change nothing and are dropped
        self.layers = [(w, self._generators(s)) for s, w in layers if w != 0.0]
        self.base = self._generators(seeds)

    def _generators(self, seeds: list[int]) -> list:
        out = []
        for s in seeds:
            step_seed = _step_seed(s, self.seed_delta)
            if self.source == "nv":
                out.append(PhiloxGenerator(step_seed))
            else:
                out.append(TorchSource(torch.Generator("cpu").manual_seed(step_seed)))
        return out

    @property
    def batch_size(self) -> int:
        """Number of images B this step noise serves."""
        return len(self.seeds)

    def __call__(self, like: Tensor) -> Tensor:
        """Next step noise for a batch shaped like ``like`` (B, C, H, W) or (B, C, T, H, W).

        Returns:
            Standard normal noise of ``like``'s shape, drawn in float32 on the CPU per image, then
            cast to ``like.dtype`` and moved to ``like.device``. Every call advances every
            image's generators.

        Raises:
            ValueError: if ``like``'s batch size differs from the number of seeds.
        """
        if like.dim() < 2 or like.shape[0] != len(self.seeds):
            raise ValueError(
                f"StepNoise: like has shape {tuple(like.shape)} but there are {len(self.seeds)} seeds"
            )
        one = (1,) + tuple(like.shape[1:])
        images = []
        for k in range(len(self.seeds)):
            x = self.base[k].randn(one)
            for weight, gens in self.layers:
                x = variation.mix_noise(x, gens[k].randn(one), weight, method="slerp")
            images.append(x)
        if not images:
            return torch.zeros(like.shape, dtype=like.dtype, device=like.device)
        return torch.cat(images, dim=0).to(dtype=like.dtype, device=like.device)


def _check_seeds(seeds: Sequence[int], name: str) -> list[int]:
    return [seed_range.check_seed(s, f"{name}[{i}]") for i, s in enumerate(seeds)]
