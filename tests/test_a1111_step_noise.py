"""AUTOMATIC1111's step noise under the a1111 / a1111_nv conventions, against references written out
here from stable-diffusion-webui's modules/rng.py (ImageRNG), sd_samplers_common.py (TorchHijack,
create_noise_sampler, replace_torchsde_browinan) and k-diffusion's sample_euler_ancestral.

- Ancestral samplers draw step noise with ``randn_like`` -> ``ImageRNG.next()``: the per-image
  generators that drew the initial noise, continued; with ENSD != 0 fresh generators seeded
  ``seed + ENSD`` after the first draw. No variation seed mixes into step noise; with a variation on
  every image's seed is the batch seed.
- SDE samplers with "brownian_noise" get ``BrownianTreeNoiseSampler(x, sigma_min, sigma_max,
  seed=all_seeds)``, torchsde trees whose node draws come from ``randn_local(seed, shape)`` (a CPU
  generator, or Philox for RNG "NV").
"""

from __future__ import annotations

import types

import pytest
import torch

from latent_ops.noise import make_noise
from latent_ops.noise.philox import PhiloxGenerator
from latent_ops.sampling import run_sampler, schedules
from latent_ops.sampling.denoisers import DiscreteSampling
from latent_ops.sampling.noise_sampler import make_noise_sampler

SHAPE = (3, 4, 6, 6)


class ImageRNG:
    """modules/rng.py ImageRNG for RNG "CPU" (torch CPU generators) or "NV" (rng_philox.Generator, for
    which PhiloxGenerator stands in: tests/test_philox.py checks it against A1111's known answers)."""

    def __init__(self, seeds: list[int], ensd: int, nv: bool) -> None:
        self.seeds, self.ensd, self.nv = seeds, ensd, nv
        self.generators = [self._create(s) for s in seeds]
        self.is_first = True

    def _create(self, seed: int):  # noqa: ANN202
        return PhiloxGenerator(seed) if self.nv else torch.Generator("cpu").manual_seed(seed)

    def _randn(self, generator) -> torch.Tensor:  # noqa: ANN001
        shape = SHAPE[1:]
        return generator.randn(shape) if self.nv else torch.randn(shape, generator=generator)

    def next(self) -> torch.Tensor:
        xs = torch.stack([self._randn(g) for g in self.generators])
        if self.is_first:
            self.is_first = False
            if self.ensd:
                self.generators = [self._create(s + self.ensd) for s in self.seeds]
        return xs


def gauss_model(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    return x * 0.7 / (0.7 + sigma.reshape(-1, 1, 1, 1) ** 2)


def euler_ancestral_reference(x: torch.Tensor, sigmas: torch.Tensor, rng: ImageRNG) -> torch.Tensor:
    """k-diffusion's sample_euler_ancestral (eta 1) with A1111's randn_like -> rng.next()."""
    for i in range(len(sigmas) - 1):
        s, sn = sigmas[i], sigmas[i + 1]
        denoised = gauss_model(x, s.reshape(1))
        up = torch.minimum(sn, (sn**2 * (s**2 - sn**2) / s**2) ** 0.5)
        down = (sn**2 - up**2) ** 0.5
        x = x + (x - denoised) / s * (down - s)
        if sn > 0:
            x = x + rng.next() * up
    return x


@pytest.mark.parametrize("ensd", [0, 31337])
@pytest.mark.parametrize("convention", ["a1111", "a1111_nv"])
def test_euler_ancestral_is_a1111s(convention: str, ensd: int) -> None:
    seed = 1234
    nv = convention == "a1111_nv"
    sig = schedules.ksampler_sigmas(DiscreteSampling.from_betas(), "karras", 8)
    rng = ImageRNG([seed, seed + 1, seed + 2], ensd, nv)
    x_ref = rng.next() * sig[0]  # txt2img: x = rng.next() (first), scaled by sigma_max
    x = make_noise(SHAPE, seed, convention=convention) * sig[0]
    assert torch.equal(x, x_ref)
    ref = euler_ancestral_reference(x_ref, sig, rng)
    ours = run_sampler("euler_ancestral", gauss_model, x, sig,
                       noise_sampler=make_noise_sampler("euler_ancestral", seed, x, sig, convention=convention, ensd=ensd))
    torch.testing.assert_close(ours, ref, rtol=1e-6, atol=1e-6)


def test_variation_keeps_the_batch_seed_and_mixes_nothing_into_step_noise() -> None:
    sig = schedules.ksampler_sigmas(DiscreteSampling.from_betas(), "karras", 4)
    like = torch.zeros(SHAPE)
    ns = make_noise_sampler("euler_ancestral", 50, like, sig, convention="a1111", subseed=7, subseed_strength=0.6,
                            variations="8:0.5")
    rng = ImageRNG([50, 50, 50], 0, nv=False)  # A1111: all_seeds = [seed] * n when subseed_strength != 0
    rng.next()
    for i in range(3):
        assert torch.equal(ns(sig[i], sig[i + 1]), rng.next())


@pytest.mark.parametrize("convention", ["a1111", "a1111_nv"])
def test_dpmpp_sde_is_a1111s(kdiffusion_sampling: types.ModuleType, monkeypatch: pytest.MonkeyPatch,
                             convention: str) -> None:
    """A1111: BrownianTreeNoiseSampler(x, sigma_min, sigma_max, seed=all_seeds) with torchsde's _randn
    replaced by randn_local(seed, shape); ENSD does not apply."""
    brownian_interval = pytest.importorskip("torchsde._brownian.brownian_interval")
    if convention == "a1111_nv":
        monkeypatch.setattr(brownian_interval, "_randn",
                            lambda size, dtype, device, seed: PhiloxGenerator(int(seed)).randn(size).to(device, dtype))
    kd = kdiffusion_sampling
    sig = schedules.ksampler_sigmas(DiscreteSampling.from_betas(), "karras", 6, sampler_name="dpmpp_sde")
    x = make_noise(SHAPE, 90, convention=convention) * sig[0]
    trees = kd.BrownianTreeNoiseSampler(x, sig[sig > 0].min(), sig.max(), seed=[90, 91, 92])
    ref = kd.sample_dpmpp_sde(gauss_model, x, sig, disable=True, noise_sampler=trees)
    ours = run_sampler("dpmpp_sde", gauss_model, x, sig,
                       noise_sampler=make_noise_sampler("dpmpp_sde", 90, x, sig, convention=convention, ensd=31337))
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)


def test_ensd_must_be_an_integer() -> None:
    sig = torch.tensor([1.0, 0.0])
    with pytest.raises(ValueError, match="ensd must be an integer"):
        make_noise_sampler("euler_ancestral", 1, torch.zeros(1, 4, 2, 2), sig, ensd=1.5)  # type: ignore[arg-type]
