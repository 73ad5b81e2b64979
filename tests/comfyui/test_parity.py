"""Where our sampling is meant to equal ComfyUI's or A1111's, checked inside the real ComfyUI 0.3.64.

- ``lms``: our library's sampler ends as ComfyUI's ``sample_lms`` (the last step returns x0);
  ``lms_kdiffusion`` keeps k-diffusion's last step, a small difference.
- SDE samplers: our per-image Brownian trees are ComfyUI's ``BrownianTreeNoiseSampler`` for one
  image (equal results), and keep its output variance for a batch (within 2% at 10 steps), where
  independent draws per step lose it; our node equals the core KSampler for one image.
- ``a1111`` + ``euler_ancestral``: our node equals A1111's algorithm run on the same ComfyUI model
  (k-diffusion's euler ancestral with A1111's ImageRNG written out here, CPU and NV, ENSD 0 and 31337).
"""

from __future__ import annotations

from types import SimpleNamespace

import comfy.k_diffusion.sampling as kds
import comfy.model_sampling
import comfy.samplers
import latent_ops_nodes
import pytest
import torch
from comfy_extras import nodes_custom_sampler as custom

import nodes as comfy_nodes  # ComfyUI's nodes.py
from latent_ops.noise import make_step_noise
from latent_ops.noise.philox import PhiloxGenerator
from latent_ops.sampling import run_sampler, schedules, step_noise_sampler
from latent_ops.sampling.denoisers import DiscreteSampling
from latent_ops.sampling.noise_sampler import make_noise_sampler

OURS = latent_ops_nodes.NODE_CLASS_MAPPINGS
CFG = 3.0


class Analytic:
    """The exact denoiser of N(0, 1) data, callable as ComfyUI's samplers call a model."""

    def __init__(self) -> None:
        ms = comfy.model_sampling.EPS()
        self.inner_model = SimpleNamespace(model_patcher=SimpleNamespace(get_model_object=lambda name: ms))

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, **extra: object) -> torch.Tensor:
        return x / (1 + sigma.reshape(-1, *([1] * (x.ndim - 1))) ** 2)


def _sigmas(sampler: str, steps: int, scheduler: str = "karras") -> torch.Tensor:
    return schedules.ksampler_sigmas(DiscreteSampling.from_betas(), scheduler, steps, sampler_name=sampler)


def _start(sig: torch.Tensor, shape: tuple, seed: int = 0) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed)) * sig[0]


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


# --- lms --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("scheduler", ["karras", "normal"])
def test_lms_equals_comfyuis(scheduler: str) -> None:
    model = Analytic()
    sig = _sigmas("lms", 20, scheduler)
    x = _start(sig, (2, 4, 16, 16))
    theirs = kds.sample_lms(model, x, sig, disable=True)
    ours = run_sampler("lms", model, x, sig)
    assert rel(ours, theirs) <= 1e-5
    upstream = run_sampler("lms_kdiffusion", model, x, sig)  # k-diffusion's (A1111's) last step
    diff = float((upstream - theirs).norm() / theirs.norm())
    assert 1e-6 < diff < 1e-2, diff


# --- SDE samplers: Brownian trees -------------------------------------------------------------------

@pytest.mark.parametrize("sampler", ["dpmpp_sde", "dpmpp_2m_sde", "dpmpp_3m_sde", "dpmpp_2m_sde_gpu"])
def test_one_image_equals_comfyuis_brownian_run(sampler: str) -> None:
    model = Analytic()
    sig = _sigmas(sampler.removesuffix("_gpu"), 10)
    x = _start(sig, (1, 4, 16, 16))
    theirs = getattr(kds, f"sample_{sampler}")(model, x, sig, extra_args={"seed": 7}, disable=True)
    ours = getattr(kds, f"sample_{sampler}")(model, x, sig, extra_args={"seed": 7}, disable=True,
                                             noise_sampler=make_noise_sampler(sampler, 7, x, sig))
    assert rel(ours, theirs) <= 1e-6
    if sampler in ("dpmpp_sde", "dpmpp_2m_sde", "dpmpp_3m_sde"):  # our own loop, too
        assert rel(run_sampler(sampler, model, x, sig, noise_sampler=make_noise_sampler(sampler, 7, x, sig)),
                   theirs) <= 1e-5


@pytest.mark.parametrize("steps", [10, 30])
def test_dpmpp_sde_variance_matches_comfyuis(steps: int) -> None:
    """A batch of 8 images (ours: a tree per image; ComfyUI: one tree for the batch): output std within 2%
    of ComfyUI's; two independent draws per step (our old stream) fall short by far more at 10 steps."""
    model = Analytic()
    sig = _sigmas("dpmpp_sde", steps)
    x = _start(sig, (8, 4, 32, 32), seed=1)
    theirs = kds.sample_dpmpp_sde(model, x, sig, extra_args={"seed": 100}, disable=True)
    ours = run_sampler("dpmpp_sde", model, x, sig, noise_sampler=make_noise_sampler("dpmpp_sde", 100, x, sig))
    independent = run_sampler("dpmpp_sde", model, x, sig, noise_sampler=step_noise_sampler(make_step_noise(100, 8), x))
    s_theirs, s_ours, s_ind = (float(t.std()) for t in (theirs, ours, independent))
    print(f"dpmpp_sde {steps} steps: std ComfyUI {s_theirs:.4f}, ours {s_ours:.4f}, independent draws {s_ind:.4f}")
    assert abs(s_ours / s_theirs - 1) < 0.02
    if steps == 10:
        assert s_ind / s_theirs < 0.9


@pytest.mark.parametrize("sampler", ["dpmpp_sde", "dpmpp_2m_sde", "dpmpp_3m_sde"])
def test_our_node_equals_core_ksampler_for_one_image_with_sde_samplers(tiny_model, conds, sampler: str) -> None:
    pos, neg = conds
    lat = {"samples": torch.zeros(1, 4, 8, 8)}
    core = comfy_nodes.KSampler().sample(tiny_model, 42, 4, CFG, sampler, "karras", pos, neg, lat, 1.0)[0]["samples"]
    ours = OURS["LatentOpsComfyKSampler"]().sample(tiny_model, 42, 4, CFG, sampler, "karras", pos, neg, lat, 1.0,
                                                   "comfy", 0, 0.0)[0]["samples"]
    assert rel(ours, core) <= 1e-5


# --- A1111: euler ancestral -------------------------------------------------------------------------

class ImageRNG:
    """stable-diffusion-webui modules/rng.py ImageRNG (no variation, no resize), RNG "CPU" or "NV"
    (PhiloxGenerator stands in for rng_philox.Generator; tests/test_philox.py checks it)."""

    def __init__(self, shape: tuple, seeds: list[int], ensd: int, nv: bool) -> None:
        self.shape, self.seeds, self.ensd, self.nv = shape, seeds, ensd, nv
        self.generators = [self._create(s) for s in seeds]
        self.is_first = True

    def _create(self, seed: int):  # noqa: ANN202
        return PhiloxGenerator(seed) if self.nv else torch.Generator("cpu").manual_seed(seed)

    def next(self) -> torch.Tensor:
        draw = (lambda g: g.randn(self.shape)) if self.nv else (lambda g: torch.randn(self.shape, generator=g))
        xs = torch.stack([draw(g) for g in self.generators])
        if self.is_first:
            self.is_first = False
            if self.ensd:  # first(): fresh generators seeded seed + ENSD after the initial noise
                self.generators = [self._create(s + self.ensd) for s in self.seeds]
        return xs


class FirstNoise:
    """A NOISE whose generate_noise is the ImageRNG's first draw (A1111's initial noise)."""

    def __init__(self, rng: ImageRNG, seed: int) -> None:
        self.rng, self.seed = rng, seed

    def generate_noise(self, latent: dict) -> torch.Tensor:
        return self.rng.next()


@pytest.mark.parametrize("ensd", [0, 31337])
@pytest.mark.parametrize("convention", ["a1111", "a1111_nv"])
def test_a1111_euler_ancestral_equals_a1111s_algorithm(tiny_model, conds, convention: str, ensd: int) -> None:
    """k-diffusion's sample_euler_ancestral with A1111's randn_like (ImageRNG.next()) as the noise sampler,
    on the same model and sigmas through ComfyUI's SamplerCustomAdvanced, vs our node with the a1111 convention."""
    pos, neg = conds
    seed, steps = 1234, 6
    lat = {"samples": torch.zeros(3, 4, 8, 8)}
    rng = ImageRNG((4, 8, 8), [seed, seed + 1, seed + 2], ensd, convention == "a1111_nv")
    reference_sampler = comfy.samplers.KSAMPLER(kds.sample_euler_ancestral,
                                                extra_options={"noise_sampler": lambda s, sn: rng.next()})
    guider = custom.CFGGuider().get_guider(tiny_model, pos, neg, CFG)[0]
    sigmas = custom.BasicScheduler().get_sigmas(tiny_model, "normal", steps, 1.0)[0]
    want = custom.SamplerCustomAdvanced().sample(FirstNoise(rng, seed), guider, reference_sampler, sigmas, lat)[0]
    got = OURS["LatentOpsComfyKSampler"]().sample(tiny_model, seed, steps, CFG, "euler_ancestral", "normal", pos, neg,
                                                  lat, 1.0, convention, 0, 0.0, ensd=ensd)[0]
    assert rel(got["samples"], want["samples"]) <= 1e-6
    # the wrapper in SamplerCustomAdvanced gives the same
    wrapped = OURS["LatentOpsSamplerStepNoise"]().get_sampler("euler_ancestral", convention, 0, 0.0, ensd=ensd)[0]
    noise = OURS["LatentOpsRandomNoise"]().get_noise(seed, convention, "gaussian", 0, 0.0)[0]
    custom_run = custom.SamplerCustomAdvanced().sample(noise, guider, wrapped, sigmas, lat)[0]["samples"]
    assert rel(custom_run, want["samples"]) <= 1e-6
