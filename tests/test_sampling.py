"""Sampler trajectories against k-diffusion's reference algorithms and ComfyUI's formulas.

The denoiser is analytic: data ~ N(0, s2) per element, so ``x0 = x * s2 / (s2 + sigma^2)`` exactly
and the probability-flow ODE from ``x_T`` at ``sigma_T`` ends at ``x_T * sqrt(s2 / (s2 + sigma_T^2))``.
"""

from __future__ import annotations

import types

import pytest
import torch

from latent_ops import sampling
from latent_ops.noise.conventions import StepNoise
from latent_ops.sampling import schedules
from latent_ops.sampling.denoisers import DiscreteSampling

S2 = 0.7


def gauss_model(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    s = sigma.reshape(-1, *([1] * (x.ndim - 1)))
    return x * S2 / (S2 + s**2)


@pytest.fixture(scope="module")
def kd(kdiffusion_sampling: types.ModuleType) -> types.ModuleType:
    return kdiffusion_sampling


@pytest.fixture(scope="module")
def ms() -> DiscreteSampling:
    return DiscreteSampling.from_betas()


def _start(sig: torch.Tensor, seed: int = 0, shape: tuple = (2, 4, 6, 6)) -> tuple[torch.Tensor, list]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g) * sig[0]
    noises = [torch.randn(shape, generator=g) for _ in range(80)]
    return x, noises


def _replay(noises: list):
    it = iter(noises)
    return lambda s, sn: next(it)


KD_NAMES = ["euler", "euler_ancestral", "heun", "dpm_2", "dpm_2_ancestral", "lms_kdiffusion", "dpmpp_2s_ancestral",
            "dpmpp_sde", "dpmpp_2m", "dpmpp_2m_sde", "dpmpp_3m_sde"]


@pytest.mark.parametrize("scheduler", ["karras", "normal"])
@pytest.mark.parametrize("name", KD_NAMES)
def test_trajectory_matches_kdiffusion(kd, ms, name, scheduler):
    sig = schedules.ksampler_sigmas(ms, scheduler, 8, sampler_name=name)
    x, noises = _start(sig)
    mine_steps, ref_steps = [], []
    kw_ref, kw_mine = {}, {}
    if name in sampling.STOCHASTIC_SAMPLERS:
        kw_ref["noise_sampler"], kw_mine["noise_sampler"] = _replay(noises), _replay(noises)
    ref = getattr(kd, f"sample_{name.removesuffix('_kdiffusion')}")(gauss_model, x.clone(), sig, disable=True,
                                        callback=lambda d: ref_steps.append(d["x"].clone()), **kw_ref)
    got = sampling.run_sampler(name, gauss_model, x.clone(), sig,
                               callback=lambda d: mine_steps.append(d["x"].clone()), **kw_mine)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
    assert len(mine_steps) == len(ref_steps) == len(sig) - 1
    for a, b in zip(mine_steps, ref_steps, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("scheduler", ["karras", "normal"])
def test_lms_ends_as_comfyui(kd, ms, scheduler):
    """ComfyUI's sample_lms: the LMS steps of k-diffusion down to the last positive sigma, then the last
    step returns that step's x0 (comfy/k_diffusion/sampling.py: ``if sigmas[i + 1] == 0: x = denoised``)."""
    sig = schedules.ksampler_sigmas(ms, scheduler, 8, sampler_name="lms")
    x, _ = _start(sig)
    before_last = kd.sample_lms(gauss_model, x.clone(), sig[:-1], disable=True)  # same steps up to sig[-2]
    ref = gauss_model(before_last, sig[-2].reshape(1))
    got = sampling.run_sampler("lms", gauss_model, x.clone(), sig)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
    upstream = sampling.run_sampler("lms_kdiffusion", gauss_model, x.clone(), sig)
    rel = float((got - upstream).norm() / upstream.norm())
    assert 1e-6 < rel < 1e-2, rel  # the two differ in the last step only, a little
    # lms and lms_kdiffusion invert the same way: the reversed schedule never steps to 0
    inv = sig.flip(0).clone()
    inv[0] = sig[-2] / 2
    torch.testing.assert_close(sampling.run_sampler("lms", gauss_model, x, inv),
                               sampling.run_sampler("lms_kdiffusion", gauss_model, x, inv), rtol=0, atol=0)


def test_ode_samplers_converge_to_exact_solution(ms):
    for name, tol in [("euler", 0.8), ("heun", 0.35), ("dpmpp_2m", 0.3), ("uni_pc", 0.5), ("uni_pc_bh2", 0.5)]:
        errs = []
        for steps in (8, 32):
            sig = schedules.ksampler_sigmas(ms, "karras", steps, sampler_name=name)
            x, _ = _start(sig)
            exact = x * (S2 / (S2 + sig[0] ** 2)) ** 0.5
            errs.append(float((sampling.run_sampler(name, gauss_model, x, sig) - exact).abs().max()))
        assert errs[0] < tol and errs[1] < errs[0] / 3, (name, errs)


@pytest.mark.parametrize("variant", ["bh1", "bh2"])
@pytest.mark.parametrize("steps", [4, 10])
def test_uni_pc_matches_diffusers_unipc(ms, variant, steps):
    """ComfyUI's UniPC (VP space, t = sigma, last sigma 0 -> 0.001) vs diffusers' UniPCMultistepScheduler."""
    from diffusers import UniPCMultistepScheduler

    name = "uni_pc" if variant == "bh1" else "uni_pc_bh2"
    sig = schedules.ksampler_sigmas(ms, "karras", steps, sampler_name=name)
    x, _ = _start(sig)
    got = sampling.run_sampler(name, gauss_model, x.clone(), sig)
    sch = UniPCMultistepScheduler(prediction_type="sample", solver_type=variant, solver_order=3,
                                  lower_order_final=True)
    sch.set_timesteps(len(sig) - 1)
    sd = sig.clone()
    sd[-1] = 0.001
    sch.sigmas, sch.timesteps = sd, torch.arange(len(sig) - 1, 0, -1) * 10
    xv = x / (1 + sd[0] ** 2) ** 0.5
    for i, t in enumerate(sch.timesteps):
        s = sd[i]
        xv = sch.step(gauss_model(xv * (1 + s**2) ** 0.5, s.reshape(1).expand(x.shape[0])), t, xv).prev_sample
    torch.testing.assert_close(got, xv * (1 + sd[-1] ** 2) ** 0.5, rtol=1e-4, atol=5e-5)


def test_ddim_is_eps_ddim_eta0(ms):
    """ComfyUI's ddim = Euler on the sigmas; for eps models that is DDIM(eta=0) in VP coordinates."""
    sig = schedules.ksampler_sigmas(ms, "ddim_uniform", 10, sampler_name="ddim")
    x, _ = _start(sig)
    got = sampling.run_sampler("ddim", gauss_model, x.clone(), sig)
    # DDIM written out: x_vp = x / sqrt(1 + s^2); a = 1/(1+s^2); eps = (x - x0)/s
    xv = x / (1 + sig[0] ** 2) ** 0.5
    for i in range(len(sig) - 1):
        s, sn = sig[i], sig[i + 1]
        x_ve = xv * (1 + s**2) ** 0.5
        x0 = gauss_model(x_ve, s.reshape(1))
        eps = (x_ve - x0) / s
        a_next = 1 / (1 + sn**2)
        xv = a_next**0.5 * x0 + (1 - a_next) ** 0.5 * eps
    torch.testing.assert_close(got, xv, rtol=1e-5, atol=1e-5)


def test_lcm_matches_comfy_formula(ms):
    sig = schedules.ksampler_sigmas(ms, "sgm_uniform", 4, sampler_name="lcm")
    x, noises = _start(sig)
    got = sampling.run_sampler("lcm", gauss_model, x.clone(), sig, noise_sampler=_replay(noises))
    ref, it = x.clone(), iter(noises)
    for i in range(len(sig) - 1):
        ref = gauss_model(ref, sig[i].reshape(1))
        if sig[i + 1] > 0:
            ref = ref + sig[i + 1] * next(it)
    torch.testing.assert_close(got, ref)
    flow = sampling.run_sampler("lcm", gauss_model, x.clone(), sig, noise_sampler=_replay(noises),
                                noise_scaling=lambda s, n, x0: s * n + (1 - s) * x0)
    assert not torch.allclose(flow, got)


def test_step_noise_batch_invariance(ms):
    """Image k of a batch == the same per-image seed run alone, for every stochastic sampler."""
    sig = schedules.ksampler_sigmas(ms, "karras", 6)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(3, 4, 5, 5, generator=g) * sig[0]
    seeds = [11, 12, 13]
    for name in sorted(sampling.STOCHASTIC_SAMPLERS):
        batch = sampling.run_sampler(name, gauss_model, x, sig,
                                     noise_sampler=sampling.step_noise_sampler(StepNoise(seeds), x))
        for k in range(3):
            xk = x[k : k + 1]
            alone = sampling.run_sampler(name, gauss_model, xk, sig,
                                         noise_sampler=sampling.step_noise_sampler(StepNoise([seeds[k]]), xk))
            torch.testing.assert_close(batch[k : k + 1], alone, rtol=1e-6, atol=1e-6, msg=name)


def test_errors_and_callback_interrupt(ms):
    sig = schedules.ksampler_sigmas(ms, "normal", 5)
    x = torch.zeros(1, 4, 4, 4)
    with pytest.raises(ValueError, match="unknown sampler"):
        sampling.run_sampler("nope", gauss_model, x, sig)
    with pytest.raises(ValueError, match="noise_sampler"):
        sampling.run_sampler("euler_ancestral", gauss_model, x, sig)
    with pytest.raises(ValueError, match="flow"):
        sampling.run_sampler("dpmpp_2m_sde", gauss_model, x, sig, prediction="flow",
                             noise_sampler=lambda a, b: torch.zeros_like(x))
    with pytest.raises(ValueError, match="sigmas"):
        sampling.run_sampler("euler", gauss_model, x, torch.tensor([1.0, float("nan")]))

    class Stop(Exception):
        pass

    seen = []

    def cb(d: dict) -> None:
        seen.append(d["i"])
        if d["i"] == 2:
            raise Stop

    with pytest.raises(Stop):
        sampling.run_sampler("heun", gauss_model, x, sig, callback=cb)
    assert seen == [0, 1, 2]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_runs(ms, dtype):
    sig = schedules.ksampler_sigmas(ms, "karras", 6)
    x = (torch.randn(1, 4, 4, 4, generator=torch.Generator().manual_seed(0)) * sig[0]).to(dtype)
    out = sampling.run_sampler("dpmpp_2m", gauss_model, x, sig.to(dtype))
    assert out.dtype == dtype and bool(torch.isfinite(out).all())


def test_step_helpers():
    """The pieces every sampler loop is built from."""
    from latent_ops.sampling import basic, sde

    x = torch.randn(3, 2, 2, 2, generator=torch.Generator().manual_seed(0)).half()
    sig = torch.tensor([4.0, 2.0, 0.5, 0.0])
    steps = basic.sigma_steps(x, sig, "s")
    assert list(steps) == [0, 1, 2] and len(steps) == 3 and steps[-1] == 2 and list(steps[1:]) == [1, 2]
    assert steps.host == (4.0, 2.0, 0.5, 0.0) and [steps.to_zero(i) for i in steps] == [False, False, True]
    assert list(basic.sigma_steps(x, sig[:1], "s")) == []  # one sigma: no step
    with pytest.raises(ValueError, match=r"s: sigmas must be finite and >= 0, got \[1.0, -1.0\]"):
        basic.sigma_steps(x, torch.tensor([1.0, -1.0]), "s")
    with pytest.raises(ValueError, match="s: sigmas must be finite"):
        basic.sigma_steps(x, torch.tensor([1.0, float("nan")]), "s")
    anc = basic.ancestral_steps(x, sig, "s", 1.0)
    assert [i for i, _, _ in anc] == [0, 1, 2] and anc.host == steps.host
    for i, down, up in anc:
        torch.testing.assert_close(down**2 + up**2, sig[i + 1] ** 2)
        assert anc.down_zero[i] == bool(down == 0)
    assert anc.down_zero == (False, False, True)
    assert all(float(up) == 0.0 and float(down) == float(sig[i + 1])
               for i, down, up in basic.ancestral_steps(x, sig, "s", 0.0))
    big = basic.ancestral_steps(x, sig, "s", 10.0)  # eta large enough that up = sigma_next: down is 0 early
    assert big.down_zero == (True, True, True) and [big.to_zero(i) for i, _, _ in big] == [False, False, True]
    calls, seen = [], []

    def model(xx, s):
        calls.append(s)
        return xx * 0.5

    d = basic.denoise_step(model, x, sig, 1, seen.append)
    assert calls[0].shape == (3,) and calls[0].dtype == torch.float16 and bool((calls[0] == 2.0).all())
    assert torch.equal(d, x * 0.5) and seen[0]["i"] == 1 and seen[0]["sigma"] == seen[0]["sigma_hat"] == 2.0
    assert seen[0]["x"] is x and seen[0]["denoised"] is d
    basic.denoise_step(model, x, sig, 0, None)  # no callback: nothing to report
    # dpm_2_step: Euler onto 0, otherwise a midpoint step that calls the model once more
    xf, dd = x.float(), torch.ones(3, 2, 2, 2)
    assert torch.equal(basic.dpm_2_step(model, xf, dd, sig[2], sig[3]), xf + dd * (sig[3] - sig[2]))
    n = len(calls)
    basic.dpm_2_step(model, xf, dd, sig[0], sig[1])
    assert len(calls) == n + 1 and float(calls[-1][0]) == pytest.approx(8**0.5)  # geometric mean of 4 and 2
    # to_zero, known on the host, decides instead of reading sigma_to
    assert torch.equal(basic.dpm_2_step(model, xf, dd, sig[0], sig[1], to_zero=True), xf + dd * (sig[1] - sig[0]))
    basic.dpm_2_step(model, xf, dd, sig[0], sig[1], to_zero=False)
    assert len(calls) == n + 2
    torch.testing.assert_close(sde.log_step(sig[0], sig[1]), torch.log(sig[0] / sig[1]))


def test_noise_between_gives_host_floats_only_to_a_noise_sampler_that_takes_them():
    from latent_ops.sampling import basic

    seen = []

    def plain(sigma, sigma_next):  # k-diffusion's signature: gets the tensors
        seen.append((sigma, sigma_next))
        return torch.zeros(1)

    class Host:
        takes_host_sigmas = True

        def __call__(self, sigma, sigma_next):
            seen.append((sigma, sigma_next))
            return torch.ones(1)

    sig = torch.tensor([4.0, 2.0, 0.0])
    steps = basic.sigma_steps(torch.zeros(1, 1), sig, "s")
    assert torch.equal(steps.noise(plain, sig, 0), torch.zeros(1))
    assert isinstance(seen[-1][0], torch.Tensor) and torch.equal(torch.stack(seen[-1]), sig[:2])
    assert torch.equal(steps.noise(Host(), sig, 1), torch.ones(1)) and seen[-1] == (2.0, 0.0)
    assert torch.equal(basic.noise_between(Host(), sig[0], sig[1], (4.0, 2.0)), torch.ones(1)) and seen[-1] == (4.0, 2.0)
