"""latent_ops.sampling.per_image: per-image step noise for k-diffusion-style sampler functions.

The sampler functions here are small k-diffusion-shaped loops written for the test; the real
ComfyUI samplers are exercised in tests/comfyui (run by tests/test_real_comfyui.py).
"""

from __future__ import annotations

import functools
import inspect

import pytest
import torch

from latent_ops.noise import make_step_noise
from latent_ops.noise.sources import SeedOptions
from latent_ops.sampling import per_image


def ancestral(model, x, sigmas, extra_args=None, callback=None, disable=None, eta=1.0, noise_sampler=None):
    """An euler-ancestral-shaped loop with an identity 'denoiser': x += noise * sigma_next per step."""
    for i in range(len(sigmas) - 1):
        x = x + eta * noise_sampler(sigmas[i], sigmas[i + 1]) * sigmas[i + 1]
    return x


def deterministic(model, x, sigmas, extra_args=None, callback=None, disable=None):
    return x


def catch_all(model, x, sigmas, **kwargs):
    return x


SIGMAS = torch.tensor([3.0, 2.0, 1.0, 0.5])


def run(fn, x: torch.Tensor, seed: int | None, **kwargs) -> torch.Tensor:
    extra = {} if seed is None else {"seed": seed, "model_options": {}}
    return fn(None, x, SIGMAS, extra_args=extra, callback=None, disable=True, **kwargs)


def test_accepts_noise_sampler() -> None:
    assert per_image.accepts_noise_sampler(ancestral)
    assert not per_image.accepts_noise_sampler(deterministic)
    assert not per_image.accepts_noise_sampler(catch_all)  # **kwargs does not count
    assert not per_image.accepts_noise_sampler(len)  # no signature to read
    assert per_image.accepts_noise_sampler(functools.partial(ancestral, eta=0.5))
    assert per_image.accepts_noise_sampler(per_image.with_step_noise(ancestral, SeedOptions()))


def test_functions_without_noise_sampler_pass_through() -> None:
    assert per_image.with_step_noise(deterministic, SeedOptions()) is deterministic
    assert per_image.with_step_noise(catch_all, SeedOptions()) is catch_all


def test_wrapper_keeps_signature_and_name() -> None:
    wrapped = per_image.with_step_noise(ancestral, SeedOptions())
    assert inspect.signature(wrapped) == inspect.signature(ancestral)
    assert wrapped.__name__ == "ancestral" and wrapped.__wrapped__ is ancestral


@pytest.mark.parametrize("convention", ["comfy", "a1111", "a1111_nv", "diffusers"])
def test_image_k_of_a_batch_equals_seed_k_alone(convention: str) -> None:
    wrapped = per_image.with_step_noise(ancestral, SeedOptions(convention))
    batch = run(wrapped, torch.zeros(3, 2, 4, 4), 40)
    for k in range(3):
        assert torch.equal(batch[k:k + 1], run(wrapped, torch.zeros(1, 2, 4, 4), 40 + k))
    assert not torch.equal(batch[0], batch[1])


def test_stream_is_make_step_noise_of_the_run() -> None:
    options = SeedOptions("diffusers", 3, 0.4, "9:0.5")
    x = torch.zeros(2, 2, 4, 4)
    got = run(per_image.with_step_noise(ancestral, options, batch_index=[5, 2]), x, 17)
    stream = make_step_noise(17, 2, convention="diffusers", batch_index=[5, 2], subseed=3, subseed_strength=0.4,
                             variations="9:0.5")
    want = x
    for i in range(len(SIGMAS) - 1):
        want = want + stream(x) * SIGMAS[i + 1]
    assert torch.equal(got, want)


def test_each_call_builds_fresh_generators_and_keeps_options() -> None:
    wrapped = per_image.with_step_noise(ancestral, SeedOptions())
    x = torch.zeros(2, 2, 4, 4)
    first = run(wrapped, x, 8)
    assert torch.equal(first, run(wrapped, x, 8))  # the wrapper is reusable (ComfyUI caches SAMPLERs)
    assert not torch.equal(first, run(wrapped, x, 9))
    assert torch.equal(run(wrapped, x, 8, eta=0.0), x)  # other options reach the sampler
    # a noise_sampler the caller passes is replaced by the per-image one
    assert torch.equal(run(wrapped, x, 8, noise_sampler=lambda s, t: torch.ones_like(x)), first)


def test_noise_sampler_matches_x() -> None:
    x = torch.zeros(2, 3, 4, 5, dtype=torch.float16)
    ns = per_image.noise_sampler(SeedOptions(), 1, x, SIGMAS)
    draw = ns(SIGMAS[0], SIGMAS[1])
    assert draw.shape == x.shape and draw.dtype == torch.float16
    assert torch.equal(draw, make_step_noise(1, 2)(x))
    video = per_image.noise_sampler(SeedOptions(), 1, torch.zeros(1, 4, 2, 3, 3), SIGMAS)(SIGMAS[0], SIGMAS[1])
    assert video.shape == (1, 4, 2, 3, 3)


def test_errors_name_the_problem() -> None:
    wrapped = per_image.with_step_noise(ancestral, SeedOptions())
    with pytest.raises(ValueError, match=r"sampler 'ancestral' was called without extra_args\['seed'\]"):
        run(wrapped, torch.zeros(1, 2, 4, 4), None)
    with pytest.raises(ValueError, match=r"seed must be in \[0, 2\*\*64\)"):
        run(wrapped, torch.zeros(1, 2, 4, 4), -1)
    bad_index = per_image.with_step_noise(ancestral, SeedOptions(), batch_index=[0])
    with pytest.raises(ValueError, match="batch_index has 1 entries but the batch has 2 items"):
        run(bad_index, torch.zeros(2, 2, 4, 4), 1)


def sample_dpmpp_2m_sde_gpu(model, x, sigmas, extra_args=None, callback=None, disable=None, noise_sampler=None):
    """Named as ComfyUI's Brownian sampler: dpmpp_sde-style nested queries, identity denoiser."""
    for i in range(len(sigmas) - 1):
        mid = (sigmas[i] * sigmas[i + 1]) ** 0.5
        x = x + noise_sampler(sigmas[i], mid) + noise_sampler(sigmas[i], sigmas[i + 1])
    return x


@pytest.mark.parametrize("convention", ["comfy", "a1111_nv"])
def test_brownian_samplers_get_one_tree_per_image(convention: str) -> None:
    """ComfyUI's SDE samplers (here a _gpu variant) draw from per-image Brownian trees over the run's sigmas."""
    from latent_ops.noise.brownian import BrownianNoise
    from latent_ops.noise.conventions import step_plan

    wrapped = per_image.with_step_noise(sample_dpmpp_2m_sde_gpu, SeedOptions(convention, ensd=31337))
    x = torch.zeros(2, 2, 4, 4)
    got = run(wrapped, x, 21)
    trees = BrownianNoise(step_plan(21, 2, convention=convention), x, SIGMAS[-1], SIGMAS[0])  # ENSD: not for trees
    assert torch.equal(got, sample_dpmpp_2m_sde_gpu(None, x, SIGMAS, noise_sampler=trees))
    alone = run(wrapped, x[:1], 22)
    assert torch.equal(got[1:], alone)


def test_a1111_ensd_reaches_the_stream() -> None:
    x = torch.zeros(2, 2, 4, 4)
    for ensd in (0, 31337):
        got = run(per_image.with_step_noise(ancestral, SeedOptions("a1111", ensd=ensd)), x, 5)
        stream = make_step_noise(5, 2, convention="a1111", seed_delta=ensd)
        want = x
        for i in range(len(SIGMAS) - 1):
            want = want + stream(x) * SIGMAS[i + 1]
        assert torch.equal(got, want)
