"""Brownian trees (latent_ops.noise.brownian): Brownian-motion properties, torchsde's layout, and the
per-image noise sampler against k-diffusion's BrownianTreeNoiseSampler (what ComfyUI and A1111 run)."""

from __future__ import annotations

import types

import pytest
import torch

from latent_ops.noise import brownian
from latent_ops.noise.conventions import step_plan
from latent_ops.noise.philox import PhiloxGenerator
from latent_ops.noise.step import StepPlan

T0, T1 = 0.0291675, 14.614641
SIGMAS = torch.tensor([14.614641, 9.7, 5.1, 2.2, 0.9, 0.3, 0.0291675])


def test_increments_have_brownian_statistics() -> None:
    # one tree of 40000 independent coordinates: each coordinate is a Brownian motion
    tree = brownian.BrownianTree(5, T0, T1, (40000,))
    a, b, c, d = 0.3, 2.2, 5.1, 9.7
    w_ab, w_bc, w_cd = tree.increment(a, b), tree.increment(b, c), tree.increment(c, d)
    for w, dt in ((w_ab, b - a), (w_bc, c - b), (w_cd, d - c)):
        assert abs(float(w.var()) / dt - 1) < 0.03
        assert abs(float(w.mean())) < 0.03 * dt**0.5
    for u, v in ((w_ab, w_bc), (w_ab, w_cd), (w_bc, w_cd)):  # disjoint intervals: independent
        assert abs(float(torch.corrcoef(torch.stack([u, v]))[0, 1])) < 0.03
    # nested intervals: corr(W(a,b), W(a,c)) = sqrt((b - a) / (c - a))
    w_ac = tree.increment(a, c)
    want = ((b - a) / (c - a)) ** 0.5
    assert abs(float(torch.corrcoef(torch.stack([w_ab, w_ac]))[0, 1]) - want) < 0.03


def test_consistent_additive_deterministic_and_order_free() -> None:
    tree = brownian.BrownianTree(11, T0, T1, (3, 4))
    whole = tree.increment(0.3, 9.7)
    parts = tree.increment(0.3, 2.2) + tree.increment(2.2, 5.1) + tree.increment(5.1, 9.7)
    torch.testing.assert_close(whole, parts, rtol=0, atol=1e-5)
    again = brownian.BrownianTree(11, T0, T1, (3, 4))
    assert torch.equal(again.increment(5.1, 9.7), tree.increment(5.1, 9.7))  # order of queries does not matter
    assert torch.equal(again.increment(0.3, 9.7), whole)
    assert not torch.equal(brownian.BrownianTree(12, T0, T1, (3, 4)).increment(0.3, 9.7), whole)
    # clamped to [t0, t1]; equal ends give zeros
    torch.testing.assert_close(tree.increment(-5.0, 100.0), tree.increment(T0, T1), rtol=0, atol=0)
    assert torch.equal(tree.increment(2.0, 2.0), torch.zeros(3, 4))
    assert torch.equal(brownian.BrownianTree(1, 2.0, 2.0, (2,)).increment(1.0, 3.0), torch.zeros(2))


def test_errors() -> None:
    with pytest.raises(ValueError, match="t0 <= t1"):
        brownian.BrownianTree(1, 2.0, 1.0, (2,))
    with pytest.raises(ValueError, match="seed"):
        brownian.BrownianTree(-1, 0.0, 1.0, (2,))
    with pytest.raises(ValueError, match="source"):
        brownian.BrownianTree(1, 0.0, 1.0, (2,), source="gpu")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="a <= b"):
        brownian.BrownianTree(1, 0.0, 1.0, (2,)).increment(0.5, 0.2)
    with pytest.raises(ValueError, match="seeds"):
        brownian.BrownianNoise(StepPlan((1, 2)), torch.zeros(3, 2), 0.1, 1.0)


@pytest.mark.parametrize("seed", [0, 123, 2**64 - 1])
def test_tree_is_torchsdes(seed: int) -> None:
    """Bit for bit torchsde.BrownianTree(t0, zeros, t1, entropy=seed) (tol 1e-6, pool 24), any query order."""
    torchsde = pytest.importorskip("torchsde")
    t0, t1 = SIGMAS.min(), SIGMAS.max()
    ref = torchsde.BrownianTree(t0, torch.zeros(2, 5, 3), t1, entropy=seed)
    mine = brownian.BrownianTree(seed, float(t0), float(t1), (2, 5, 3))
    queries = [(SIGMAS[i + 1], SIGMAS[i]) for i in range(len(SIGMAS) - 1)]
    queries += [(torch.tensor(3.3), torch.tensor(7.1)), (SIGMAS[-1], SIGMAS[0]), (torch.tensor(1.25), SIGMAS[2])]
    for a, b in queries[::-1] if seed == 123 else queries:
        assert torch.equal(mine.increment(float(a), float(b)), ref(a, b)), (seed, float(a), float(b))


def _kd_noise_sampler(kd: types.ModuleType, x: torch.Tensor, sigmas: torch.Tensor, seed: int | list[int]):
    return kd.BrownianTreeNoiseSampler(x, sigmas[sigmas > 0].min(), sigmas.max(), seed=seed)


def test_noise_sampler_is_kdiffusions_with_a_seed_per_image(kdiffusion_sampling: types.ModuleType) -> None:
    """BrownianTreeNoiseSampler(x, sigma_min, sigma_max, seed=[s0, s1, ...]) (A1111; ComfyUI with cpu=True),
    and for one image the same as seed=s (ComfyUI's KSampler)."""
    kd = kdiffusion_sampling
    x = torch.zeros(3, 4, 5, 5)
    seeds = [7, 8, 9]
    ref = _kd_noise_sampler(kd, x, SIGMAS, seeds)
    mine = brownian.BrownianNoise(StepPlan(tuple(seeds)), x, SIGMAS[SIGMAS > 0].min(), SIGMAS.max())
    one_ref = _kd_noise_sampler(kd, x[:1], SIGMAS, 9)
    one = brownian.BrownianNoise(StepPlan((9,)), x[:1], SIGMAS[SIGMAS > 0].min(), SIGMAS.max())
    for i in range(len(SIGMAS) - 2):
        s, sn = SIGMAS[i], SIGMAS[i + 1]
        mid = (s.log() + 0.5 * (sn.log() - s.log())).exp()
        for a, b in ((s, mid), (s, sn), (sn, s)):  # dpmpp_sde's nested queries, and a reversed one
            got = mine(a, b)
            assert torch.equal(got, ref(a, b))
            assert torch.equal(one(a, b), one_ref(a, b))
            assert torch.equal(got[2:], one(a, b))  # image k == its seed alone
    assert torch.equal(mine(SIGMAS[1], SIGMAS[1]), torch.zeros_like(x))


def test_noise_sampler_takes_host_floats_as_it_takes_tensors(kdiffusion_sampling: types.ModuleType) -> None:
    """Samplers pass the host copies of their sigmas (``takes_host_sigmas``): the same noise, bit for bit,
    as the tensors of any dtype (read at float32) and as k-diffusion's sampler given the tensors."""
    x = torch.zeros(2, 3, 4, 4)
    ref = _kd_noise_sampler(kdiffusion_sampling, x, SIGMAS, [4, 5])
    mine = brownian.BrownianNoise(StepPlan((4, 5)), x, float(SIGMAS[SIGMAS > 0].min()), float(SIGMAS.max()))
    assert mine.takes_host_sigmas is True
    for i in range(len(SIGMAS) - 1):
        a, b = SIGMAS[i], SIGMAS[i + 1]
        got = mine(float(a), float(b))
        assert torch.equal(got, ref(a, b)) and torch.equal(got, mine(a, b))
        assert torch.equal(mine(float(b), float(a)), ref(b, a))  # reversed: the negated increment
        for dtype in (torch.float64, torch.float16):
            assert torch.equal(mine(float(a.to(dtype)), float(b.to(dtype))), mine(a.to(dtype), b.to(dtype)))
    assert torch.equal(mine(2.5, 2.5), torch.zeros_like(x))
    assert torch.equal(mine(9.7 + 1e-9, 5.1), mine(9.7, 5.1))  # float64 within float32 rounding: same times


def test_noise_sampler_dtype_device_variations_and_nv() -> None:
    like = torch.zeros(2, 4, 3, 3, dtype=torch.bfloat16)
    plan = step_plan(5, 2, convention="comfy", subseed=40, subseed_strength=1.0)
    full = brownian.BrownianNoise(plan, like, 0.1, 10.0)
    target = brownian.BrownianNoise(step_plan(40, 2), like, 0.1, 10.0)
    out = full(torch.tensor(10.0), torch.tensor(3.0))
    assert out.dtype == torch.bfloat16 and out.shape == like.shape
    assert torch.equal(out, target(torch.tensor(10.0), torch.tensor(3.0)))  # strength 1 = the subseed's trees
    half = brownian.BrownianNoise(step_plan(5, 2, subseed=40, subseed_strength=0.5), like.float(), 0.1, 10.0)
    assert not torch.equal(half(10.0, 3.0), target(10.0, 3.0).float())
    # the NV source seeds each node's Philox generator instead of torch's
    nv = brownian.BrownianTree(3, 0.0, 1.0, (6,), source="nv")
    seq = __import__("numpy").random.SeedSequence(entropy=3, pool_size=24).generate_state(3)
    assert torch.equal(nv.increment(0.0, 1.0), PhiloxGenerator(int(seq[0])).randn((6,)) * 1.0)


def test_dpmpp_sde_variance_is_the_sdes(kdiffusion_sampling: types.ModuleType) -> None:
    """dpmpp_sde with per-image trees is k-diffusion's (= ComfyUI's, A1111's) run with a tree per seed, and
    keeps the variance of N(0, 1) data under an exact denoiser (10 steps: 0.95, as ComfyUI's) that two
    independent draws per step lose (0.80)."""
    from latent_ops.noise import make_step_noise
    from latent_ops.sampling import run_sampler, schedules, step_noise_sampler
    from latent_ops.sampling.denoisers import DiscreteSampling
    from latent_ops.sampling.noise_sampler import make_noise_sampler

    def model(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return x / (1 + sigma.reshape(-1, 1, 1, 1) ** 2)

    sig = schedules.ksampler_sigmas(DiscreteSampling.from_betas(), "karras", 10, sampler_name="dpmpp_sde")
    x = torch.randn(2, 4, 32, 32, generator=torch.Generator().manual_seed(0)) * sig[0]
    ours = run_sampler("dpmpp_sde", model, x, sig, noise_sampler=make_noise_sampler("dpmpp_sde", 3, x, sig))
    ref = kdiffusion_sampling.sample_dpmpp_sde(model, x, sig, disable=True,
                                               noise_sampler=_kd_noise_sampler(kdiffusion_sampling, x, sig, [3, 4]))
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)
    independent = run_sampler("dpmpp_sde", model, x, sig,
                              noise_sampler=step_noise_sampler(make_step_noise(3, 2), x))
    assert 0.92 < float(ours.std()) < 0.97
    assert float(independent.std()) < 0.85
