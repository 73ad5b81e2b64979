"""Sigma schedules against ComfyUI's formulas (written out here) and k-diffusion's get_sigmas_*."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from latent_ops.sampling import schedules
from latent_ops.sampling.denoisers import DiscreteSampling, FlowSampling


@pytest.fixture(scope="module")
def ms() -> DiscreteSampling:
    return DiscreteSampling.from_betas()


def ref_table() -> torch.Tensor:
    """SD's sigma table written out: betas = linspace(sqrt(.00085), sqrt(.012), 1000)^2."""
    betas = np.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=np.float64) ** 2
    ac = np.cumprod(1 - betas)
    return torch.tensor(((1 - ac) / ac) ** 0.5, dtype=torch.float32)


def test_sd_sigma_table(ms):
    torch.testing.assert_close(ms.sigmas, ref_table())
    assert float(ms.sigma_min) == pytest.approx(0.0291675, rel=1e-4)
    assert float(ms.sigma_max) == pytest.approx(14.614642, rel=1e-5)


@pytest.mark.parametrize("steps", [1, 3, 20])
def test_karras_exponential_match_kdiffusion(steps, kdiffusion_sampling):
    k = kdiffusion_sampling
    torch.testing.assert_close(schedules.karras(steps, 0.03, 14.6), k.get_sigmas_karras(steps, 0.03, 14.6))
    torch.testing.assert_close(schedules.exponential(steps, 0.03, 14.6), k.get_sigmas_exponential(steps, 0.03, 14.6))


def _ref_sigma_of_t(table: torch.Tensor, t: float) -> float:
    lo, hi = math.floor(t), math.ceil(t)
    w = t - lo
    return math.exp((1 - w) * math.log(float(table[lo])) + w * math.log(float(table[hi])))


@pytest.mark.parametrize("steps", [1, 4, 20])
def test_normal_and_sgm_uniform(ms, steps):
    table = ref_table()
    ts = np.linspace(999, 0, steps)
    expect = [_ref_sigma_of_t(table, float(t)) for t in ts] + [0.0]
    torch.testing.assert_close(schedules.calculate_sigmas(ms, "normal", steps), torch.tensor(expect), rtol=1e-5, atol=1e-6)
    ts = np.linspace(999, 0, steps + 1)[:-1]
    expect = [_ref_sigma_of_t(table, float(t)) for t in ts] + [0.0]
    torch.testing.assert_close(schedules.calculate_sigmas(ms, "sgm_uniform", steps), torch.tensor(expect), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("steps", [1, 7, 20, 30])
def test_simple_ddim_uniform_beta(ms, steps):
    table = ref_table()
    expect = [float(table[-(1 + int(x * 1000 / steps))]) for x in range(steps)] + [0.0]
    torch.testing.assert_close(schedules.calculate_sigmas(ms, "simple", steps), torch.tensor(expect))
    ss = 1000 // steps
    expect = [float(table[i]) for i in range(1, 1000, ss)][::-1] + [0.0]
    torch.testing.assert_close(schedules.calculate_sigmas(ms, "ddim_uniform", steps), torch.tensor(expect))
    from scipy import stats

    q = np.rint(stats.beta.ppf(1 - np.linspace(0, 1, steps, endpoint=False), 0.6, 0.6) * 999).astype(int)
    uniq = [int(t) for i, t in enumerate(q) if i == 0 or t != q[i - 1]]
    expect = [float(table[t]) for t in uniq] + [0.0]
    torch.testing.assert_close(schedules.calculate_sigmas(ms, "beta", steps), torch.tensor(expect))


def test_kl_optimal_and_linear_quadratic(ms):
    n, lo, hi = 6, float(ms.sigma_min), float(ms.sigma_max)
    expect = [math.tan(i / (n - 1) * math.atan(lo) + (1 - i / (n - 1)) * math.atan(hi)) for i in range(n)] + [0.0]
    torch.testing.assert_close(schedules.calculate_sigmas(ms, "kl_optimal", n), torch.tensor(expect))
    # one step: [sigma_max, 0] where ComfyUI's 0/0 ramp gives [nan, 0]
    one = schedules.calculate_sigmas(ms, "kl_optimal", 1)
    assert one.tolist() == [pytest.approx(hi), 0.0] and bool(torch.isfinite(one).all())
    comfy_ramp = torch.arange(1, dtype=torch.float).div_(1 - 1)
    assert bool(torch.isnan(comfy_ramp).all())
    lq = schedules.calculate_sigmas(ms, "linear_quadratic", 10)
    assert lq.shape == (11,) and float(lq[0]) == pytest.approx(hi) and float(lq[-1]) == 0.0
    assert bool((lq[:-1] >= lq[1:]).all())
    # first half is linear in 1 - sigma/sigma_max with slope threshold/linear_steps
    torch.testing.assert_close(1 - lq[:5] / hi, torch.arange(5) * 0.025 / 5, atol=1e-6, rtol=0)


def test_all_names_decreasing_end_in_zero(ms):
    for name in schedules.SCHEDULER_NAMES:
        s = schedules.calculate_sigmas(ms, name, 12)
        assert s.dtype == torch.float32 and float(s[-1]) == 0.0, name
        assert bool((s[:-1] > s[1:]).all()), name
    with pytest.raises(ValueError, match="unknown scheduler"):
        schedules.calculate_sigmas(ms, "nope", 5)
    with pytest.raises(ValueError, match="steps"):
        schedules.karras(0, 0.1, 1.0)


def test_denoise_window_and_discard_penultimate(ms):
    full = schedules.calculate_sigmas(ms, "karras", int(10 / 0.6))
    torch.testing.assert_close(schedules.ksampler_sigmas(ms, "karras", 10, denoise=0.6), full[-11:])
    assert schedules.ksampler_sigmas(ms, "karras", 10, denoise=0.0).numel() == 0
    eleven = schedules.calculate_sigmas(ms, "normal", 11)
    got = schedules.ksampler_sigmas(ms, "normal", 10, sampler_name="dpm_2")
    torch.testing.assert_close(got, torch.cat([eleven[:-2], eleven[-1:]]))
    assert len(got) == 11
    with pytest.raises(ValueError, match="denoise"):
        schedules.ksampler_sigmas(ms, "normal", 10, denoise=1.5)
    with pytest.raises(ValueError, match="ksampler_sigmas: unknown sampler 'dpm_3'"):
        schedules.ksampler_sigmas(ms, "normal", 10, sampler_name="dpm_3")
    for name in schedules.DISCARD_PENULTIMATE_SIGMA_SAMPLERS:
        assert torch.equal(schedules.ksampler_sigmas(ms, "normal", 10, sampler_name=name), got)


def test_step_window(ms):
    s = schedules.calculate_sigmas(ms, "normal", 10)
    w = schedules.step_window(s, start_step=2, end_step=6, force_full_denoise=False)
    torch.testing.assert_close(w, s[2:7])
    w = schedules.step_window(s, start_step=2, end_step=6, force_full_denoise=True)
    assert float(w[-1]) == 0.0 and torch.equal(w[:-1], s[2:6])
    assert float(s[6]) > 0  # input not modified
    assert len(schedules.step_window(s, start_step=10)) == 1
    torch.testing.assert_close(schedules.step_window(s, end_step=10000), s)


def test_flow_normal_keeps_last_sigma():
    fs = FlowSampling(shift=3.0)
    s = schedules.calculate_sigmas(fs, "normal", 8)
    assert len(s) == 9 and float(s[0]) == pytest.approx(1.0)
    # flow table's smallest sigma is 1/1000 shifted: not ~0, so a zero is appended
    assert float(s[-1]) == 0.0
    t = torch.linspace(0, 1, 5)
    torch.testing.assert_close(fs.sigma(t * 1000), 3 * t / (1 + 2 * t))
