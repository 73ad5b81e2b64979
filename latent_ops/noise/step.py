"""Per-image step noise for ancestral/SDE samplers: image k depends only on its own seeds.

ComfyUI draws sampler step noise on the compute device over the whole batch, so an image changes
with the GPU model and with what else is in the batch. :class:`StepNoise` keeps one CPU generator
per image instead: image ``k`` of a batch gets exactly the noise that the same seed gets alone,
on any device. Each call draws one ``like.shape[1:]`` tensor per image, float32, from ``source``
``"cpu"`` (torch CPU generator) or ``"nv"`` (:class:`latent_ops.noise.philox.PhiloxGenerator`).

Streams (version ``STEP_NOISE_VERSION = 2``), per image seed ``s``:

- default (``comfy`` and ``diffusers`` conventions): a generator seeded ``derive_step_seed(s)`` =
  the SplitMix64 finaliser (:func:`latent_ops.seeds.mix64`) of ``(s + STEP_SEED_SALT) mod 2**64``,
  so step noise is never the stream of the initial noise of a nearby seed; variation seeds mix
  into every step (strength 1 reproduces the subseed's own image, unlike A1111 issue #6095).
  With ``seed_delta`` set, the generator is seeded ``(s + seed_delta) mod 2**64`` instead.
- ``a1111``/``a1111_nv`` conventions (AUTOMATIC1111's ``ImageRNG``): with ENSD ("eta noise seed
  delta", ``seed_delta``) 0 or ``None`` the step noise continues the generator that drew the
  image's initial noise: a generator seeded ``s`` whose first ``like.shape[1:]`` Gaussian draw
  (the initial noise) is skipped; with ENSD != 0 a fresh generator seeded ``s + ENSD``. No
  variation mixes into step noise (A1111 mixes none).

Version 2 changed only the a1111 streams (version 1 used the default stream for them).
:func:`latent_ops.noise.make_step_noise` builds one from a batch seed and a convention; Brownian-tree
samplers draw from :mod:`latent_ops.sampling.brownian` instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from .. import seeds as seed_range
from . import variation
from .philox import PhiloxGenerator
from .types import TorchSource

STEP_NOISE_VERSION = 2
"""Version of the step-noise seed derivation and layout."""

STEP_SEED_SALT = 0x5EED_57E9_0000_0001
"""Added to an image's seed before the SplitMix64 finaliser (the default stream)."""


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


@dataclass(frozen=True)
class StepPlan:
    """Whose seeds a batch's step noise comes from (see :func:`latent_ops.noise.conventions.step_plan`).

    Attributes:
        seeds: the image seed of each batch item (:func:`latent_ops.noise.image_seeds`), checked.
        layers: variation layers in order, ``((per-image seeds, weight), ...)``, zero weights dropped
            (empty under the A1111 conventions: A1111 mixes no variation into step noise).
        source: ``"cpu"`` (torch CPU generators) or ``"nv"`` (Philox, A1111 NV).
        a1111: A1111's stream rules (continue the initial-noise generator; ENSD).
    """

    seeds: tuple[int, ...]
    layers: tuple[tuple[tuple[int, ...], float], ...] = ()
    source: Literal["cpu", "nv"] = "cpu"
    a1111: bool = False


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

    This constructor always uses the default stream; :meth:`from_plan` (what
    :func:`latent_ops.noise.make_step_noise` calls) also knows the A1111 one.

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
        self._start(checked, StepPlan(tuple(checked), tuple((tuple(s), w) for s, w in layers), source), seed_delta)

    @classmethod
    def from_plan(cls, plan: StepPlan, seed_delta: int | None = None) -> StepNoise:
        """The step noise of a checked :class:`StepPlan` (its seeds are not checked again).

        ``seed_delta`` is ENSD under the A1111 rules (``None`` and 0: continue the initial-noise
        generator), else as in :func:`derive_step_seed`.
        """
        self = cls.__new__(cls)
        self._start(list(plan.seeds), plan, seed_delta)
        return self

    def _start(self, seeds: list[int], plan: StepPlan, seed_delta: int | None) -> None:
        self.source = plan.source
        self.seed_delta = seed_delta
        self.seeds = seeds
        if plan.a1111:
            ensd = int(seed_delta or 0)
            self.base = self._generators([seed_range.offset(s, ensd) for s in seeds])
            self.layers: list = []
            self._skip = 0 if ensd else 1  # ENSD 0: the first draw was the image's initial noise
            return
        self.base = self._generators([_step_seed(s, seed_delta) for s in seeds])
        # (weight, per-image generators), in order; weight-0 layers change nothing and are dropped
        self.layers = [(w, self._generators([_step_seed(v, seed_delta) for v in vs]))
                       for vs, w in plan.layers if w != 0.0]
        self._skip = 0

    def _generators(self, step_seeds: list[int]) -> list:
        if self.source == "nv":
            return [PhiloxGenerator(s) for s in step_seeds]
        return [TorchSource(torch.Generator("cpu").manual_seed(s)) for s in step_seeds]

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
        for _ in range(self._skip):
            for gen in self.base:
                gen.randn(one)
        self._skip = 0
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
