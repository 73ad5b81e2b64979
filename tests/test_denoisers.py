"""eps / v / flow adapters on an analytic Gaussian model, timestep tables, CFG and masks."""

from __future__ import annotations

import pytest
import torch

from latent_ops.sampling.denoisers import (
    DiscreteSampling,
    FlowSampling,
    betas_for,
    cfg_denoiser,
    inpaint_denoiser,
    model_denoiser,
    prepare_mask,
)

S2 = 0.5  # data variance


def _col(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return v.reshape(-1, *([1] * (x.ndim - 1)))


def test_betas_match_diffusers():
    from diffusers import DDPMScheduler

    for name in ("scaled_linear", "linear", "squaredcos_cap_v2"):
        ref = DDPMScheduler(beta_schedule=name, beta_start=0.00085, beta_end=0.012).betas.double()
        torch.testing.assert_close(betas_for(name), ref, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match=r"beta schedule 'cubic' \(beta_schedule must be one of \['scaled_linear'"):
        betas_for("cubic")


def test_every_beta_builder_is_betas_for():
    """One home for beta schedules: the embedded loader, embedded training and from_betas agree bit for bit."""
    from latent_ops.embedded import loader, train

    cfg = {"num_train_timesteps": 500, "beta_start": 0.001, "beta_end": 0.02}
    for name in ("scaled_linear", "linear", "squaredcos_cap_v2"):
        want = betas_for(name, 500, 0.001, 0.02)
        assert torch.equal(loader.betas_from_config({**cfg, "beta_schedule": name}), want)
        ms = DiscreteSampling.from_betas(name, 500, 0.001, 0.02)
        assert torch.equal(ms.alphas_cumprod, torch.cumprod(1.0 - want, 0).float())
    assert torch.equal(loader.betas_from_config(cfg), betas_for("scaled_linear", 500, 0.001, 0.02))
    assert torch.equal(train.scaled_linear_betas(), betas_for("scaled_linear"))
    assert torch.equal(train.scaled_linear_betas(7), betas_for("scaled_linear", 7))


@pytest.mark.parametrize("ms", [DiscreteSampling.from_betas(), FlowSampling(shift=2.0)], ids=["discrete", "flow"])
def test_sigma_table_ends_and_static_noise_scaling(ms):
    assert float(ms.sigma_min) == float(ms.sigmas.min()) and float(ms.sigma_max) == float(ms.sigmas.max())
    assert ms.sigma_min.ndim == 0 and bool((ms.sigmas[1:] > ms.sigmas[:-1]).all())
    n, x0 = torch.ones(2, 1, 2, 2), torch.full((2, 1, 2, 2), 0.5)
    sigma = torch.tensor([0.25, 0.5])
    # a staticmethod: the class and an instance give the same forward process
    assert torch.equal(type(ms).noise_scaling(sigma, n, x0), ms.noise_scaling(sigma, n, x0))
    got = ms.noise_scaling(sigma, n, x0)
    want = [0.25 + 0.375, 0.5 + 0.25] if isinstance(ms, FlowSampling) else [0.75, 1.0]
    torch.testing.assert_close(got[:, 0, 0, 0], torch.tensor(want))


def test_discrete_timestep_sigma_roundtrip():
    ms = DiscreteSampling.from_betas()
    k = torch.tensor([0, 1, 500, 999])
    torch.testing.assert_close(ms.sigma(k), ms.sigmas[k])
    assert torch.equal(ms.timestep(ms.sigmas[k]), k)
    assert int(ms.timestep(ms.sigmas[10] * 1.001)) == 10  # nearest, ComfyUI-style
    cont = DiscreteSampling.from_betas(continuous=True)
    t = torch.tensor([3.25, 410.5, 998.9])
    torch.testing.assert_close(cont.timestep(cont.sigma(t)), t, rtol=1e-4, atol=1e-3)
    with pytest.raises(ValueError, match="prediction"):
        DiscreteSampling.from_betas(prediction="x0")
    with pytest.raises(ValueError, match="alphas_cumprod"):
        DiscreteSampling(torch.tensor([0.5, 0.0]))


def _gauss_backbone(ms, kind: str):
    """A network that predicts the exact eps / v / velocity for N(0, S2) data."""

    def net(x_in, t, cond, **extra):
        if kind == "flow":
            sigma = _col(t / ms.multiplier, x_in)  # the network's time is the (shifted) sigma itself
            x = x_in
            a = 1 - sigma
            x0 = x * a * S2 / (a**2 * S2 + sigma**2)
            n = (x - a * x0) / sigma
            return n - x0
        sigma = _col(ms.sigma(t), x_in)
        x = x_in * (sigma**2 + 1) ** 0.5
        x0 = x * S2 / (S2 + sigma**2)
        eps = (x - x0) / sigma
        if kind == "eps":
            return eps
        return (eps - sigma * x0) / (1 + sigma**2) ** 0.5  # diffusers' v = sqrt(ac) eps - sqrt(1-ac) x0

    return net


@pytest.mark.parametrize("kind", ["eps", "v", "flow"])
def test_adapters_recover_x0(kind, gen):
    ms = FlowSampling(shift=2.0) if kind == "flow" else DiscreteSampling.from_betas(prediction=kind, continuous=True)
    den = model_denoiser(_gauss_backbone(ms, kind), ms)
    x = torch.randn(3, 4, 5, 5, generator=gen)
    sigma = torch.tensor([0.9, 0.3, 0.05]) if kind == "flow" else torch.tensor([14.0, 1.0, 0.1])
    if kind == "flow":
        a = _col(1 - sigma, x)
        expect = x * a * S2 / (a**2 * S2 + _col(sigma, x) ** 2)
    else:
        expect = x * S2 / (S2 + _col(sigma, x) ** 2)
    torch.testing.assert_close(den(x, sigma), expect, rtol=1e-4, atol=1e-5)


def test_noise_scaling_formulas(gen):
    x0, n = torch.randn(2, 3, 4, 4, generator=gen), torch.randn(2, 3, 4, 4, generator=gen)
    ms = DiscreteSampling.from_betas()
    s = torch.tensor([2.0, 0.5])
    torch.testing.assert_close(ms.noise_scaling(s, n, x0), x0 + n * _col(s, n))
    torch.testing.assert_close(ms.noise_scaling(s, n, x0, max_denoise=True), x0 + n * (1 + _col(s, n) ** 2) ** 0.5)
    fs = FlowSampling()
    s = torch.tensor([0.25, 1.0])
    torch.testing.assert_close(fs.noise_scaling(s, n, x0), _col(s, n) * n + (1 - _col(s, n)) * x0)
    torch.testing.assert_close(fs.inverse_noise_scaling(torch.tensor(0.5), x0), x0 * 2)


def test_cfg_batched_and_exact(gen):
    calls = []

    def batched(x, sigma, kinds):
        calls.append(list(kinds))
        k = torch.tensor(kinds, dtype=x.dtype).reshape(-1, 1, 1, 1)
        return x * (1 + k) + _col(sigma, x)

    x, sigma = torch.randn(2, 3, 4, 4, generator=gen), torch.tensor([1.5, 0.5])
    out = cfg_denoiser(batched, 7.5)(x, sigma)
    cond, uncond = x + _col(sigma, x), 2 * x + _col(sigma, x)
    torch.testing.assert_close(out, uncond + (cond - uncond) * 7.5)
    assert calls == [[0, 0, 1, 1]]
    calls.clear()
    torch.testing.assert_close(cfg_denoiser(batched, 1.0)(x, sigma), cond)
    assert calls == [[0, 0]]
    with pytest.raises(ValueError, match="cfg"):
        cfg_denoiser(batched, float("nan"))


def test_inpaint_keeps_unmasked(gen):
    latent, noise = torch.randn(1, 2, 4, 4, generator=gen), torch.randn(1, 2, 4, 4, generator=gen)
    mask = torch.zeros(1, 2, 4, 4)
    mask[..., :2] = 1.0
    seen = {}

    def den(x, sigma):
        seen["x"] = x
        return torch.full_like(x, 9.0)

    ms = DiscreteSampling.from_betas()
    out = inpaint_denoiser(den, latent, noise, mask, ms.noise_scaling)(torch.zeros(1, 2, 4, 4), torch.tensor([2.0]))
    torch.testing.assert_close(out[..., 2:], latent[..., 2:])
    assert bool((out[..., :2] == 9.0).all())
    torch.testing.assert_close(seen["x"][..., 2:], latent[..., 2:] + 2.0 * noise[..., 2:])
    assert bool((seen["x"][..., :2] == 0).all())


def test_prepare_mask_shapes():
    m = prepare_mask(torch.ones(16, 16), (3, 4, 8, 8))
    assert m.shape == (3, 4, 8, 8)
    m = prepare_mask(torch.rand(1, 1, 4, 4), (2, 16, 8, 8))
    assert m.shape == (2, 16, 8, 8) and float(m.min()) >= 0
    with pytest.raises(ValueError, match="dims"):
        prepare_mask(torch.ones(1, 1, 1, 4, 4), (1, 4, 4, 4))
