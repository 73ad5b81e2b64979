"""The sampler registry: one record per sampler, read by every place that needs a sampler fact.

Adding a sampler must be one function plus one record: a toy record added to a copy of the table
is picked up by ``run_sampler``, the schedule's penultimate-sigma rule, ``sample``'s inpainting
noise, ``unsample``'s invertibility check and the node combo lists, with nothing else edited.
"""

from __future__ import annotations

import dataclasses
import inspect

import pytest
import torch

from latent_ops.latent_format import LatentFormat
from latent_ops.sampling import diffusion, schedules
from latent_ops.sampling import registry as sampler_table
from latent_ops.sampling.basic import denoise_step, sigma_steps
from latent_ops.sampling.denoisers import DiscreteSampling, FlowSampling
from latent_ops.sampling.registry import SAMPLERS, SamplerRecord, SamplerRegistry, run_sampler

S2 = 0.7


def gauss_model(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    s = sigma.reshape(-1, *([1] * (x.ndim - 1)))
    return x * S2 / (S2 + s**2)


@torch.no_grad()
def sample_toy(model, x: torch.Tensor, sigmas: torch.Tensor, *, callback=None) -> torch.Tensor:
    """A new deterministic sampler written the way the library's are: jump to x0, re-noise deterministically."""
    for i in sigma_steps(x, sigmas, "sample_toy"):
        denoised = denoise_step(model, x, sigmas, i, callback)
        x = denoised + (x - denoised) * (sigmas[i + 1] / sigmas[i])
    return x


@pytest.fixture
def ms() -> DiscreteSampling:
    return DiscreteSampling.from_betas()


@pytest.fixture
def nodes(registry):
    """The node classes as the headless runner sees them (the conftest ``registry``)."""
    return registry


@pytest.fixture
def with_toy(monkeypatch):
    """The library as it is after adding ``sample_toy`` and one record to the table."""

    def add(**flags: bool) -> SamplerRecord:
        rec = SamplerRecord("toy", sample_toy, **flags)
        monkeypatch.setattr(sampler_table, "SAMPLERS", SAMPLERS.plus(rec))
        return rec

    return add


def _x(sig: torch.Tensor, seed: int = 0) -> torch.Tensor:
    return torch.randn(2, 4, 5, 5, generator=torch.Generator().manual_seed(seed)) * sig[0]


def _model(kind: str = "eps") -> diffusion.DiffusionModel:
    ms = FlowSampling() if kind == "flow" else DiscreteSampling.from_betas(continuous=True)

    def net(x_in, t, cond, **extra):  # a smooth fake network that mixes neighbouring pixels
        return torch.tanh(x_in) * 0.5 + 0.2 * x_in.roll(1, -1) + 0.01 * t.reshape(-1, 1, 1, 1) / 1000

    return diffusion.DiffusionModel(net, ms, LatentFormat("t", channels=4, downscale=8, scale=0.5, shift=0.1))


COND = [[torch.zeros(1, 2, 8), {}]]


def test_adding_a_sampler_is_one_function_plus_one_record(with_toy, ms, nodes):
    with pytest.raises(ValueError, match="unknown sampler 'toy'"):
        run_sampler("toy", gauss_model, torch.zeros(1, 4, 2, 2), torch.tensor([1.0, 0.0]))
    with_toy(flow_safe=True, invertible=True, discard_penultimate_sigma=True)
    # dispatch: run_sampler runs the new function, for eps and (flow_safe) flow models
    sig = schedules.ksampler_sigmas(ms, "karras", 5, sampler_name="toy")
    x = _x(sig)
    torch.testing.assert_close(run_sampler("toy", gauss_model, x, sig), sample_toy(gauss_model, x, sig), rtol=0, atol=0)
    assert torch.isfinite(run_sampler("toy", gauss_model, x, sig, prediction="flow")).all()
    # the schedule quirk: 6 sigmas computed, the penultimate dropped
    six = schedules.calculate_sigmas(ms, "karras", 6)
    torch.testing.assert_close(sig, torch.cat([six[:-2], six[-1:]]), rtol=0, atol=0)
    # sampling and inversion through the model
    model, lat = _model(), {"samples": torch.randn(1, 4, 4, 4, generator=torch.Generator().manual_seed(1))}
    out = diffusion.sample(model, lat, COND, COND, seed=3, steps=4, cfg=1.0, sampler_name="toy", scheduler="karras")
    assert out["samples"].shape == (1, 4, 4, 4) and torch.isfinite(out["samples"]).all()
    noise = diffusion.unsample(model, lat, COND, COND, steps=4, cfg=1.0, sampler_name="toy", scheduler="karras")
    assert torch.isfinite(noise["samples"]).all()
    # the node combos (read at INPUT_TYPES time)
    assert "toy" in nodes["LatentOpsSampler"].INPUT_TYPES()["required"]["sampler_name"][0]
    assert "toy" in nodes["LatentOpsUnsample"].INPUT_TYPES()["required"]["sampler_name"][0]


def test_toy_record_flags_decide_behaviour(with_toy, ms, nodes):
    with_toy()  # no flags: not flow safe, not invertible, keeps every sigma
    sig = schedules.ksampler_sigmas(ms, "karras", 5, sampler_name="toy")
    torch.testing.assert_close(sig, schedules.calculate_sigmas(ms, "karras", 5), rtol=0, atol=0)
    with pytest.raises(ValueError, match="not supported for flow models"):
        run_sampler("toy", gauss_model, _x(sig), sig, prediction="flow")
    model, lat = _model(), {"samples": torch.randn(1, 4, 4, 4)}
    with pytest.raises(ValueError, match="cannot be inverted"):
        diffusion.unsample(model, lat, COND, COND, steps=3, cfg=1.0, sampler_name="toy")
    assert "toy" not in nodes["LatentOpsUnsample"].INPUT_TYPES()["required"]["sampler_name"][0]


@pytest.mark.parametrize("random_inpaint_noise", [False, True])
def test_record_alone_decides_inpainting_noise(monkeypatch, random_inpaint_noise):
    """A record with euler's function and ddim's flag samples exactly like ddim; without the flag, like euler."""
    rec = SamplerRecord("toy", SAMPLERS["euler"].fn, random_inpaint_noise=random_inpaint_noise)
    monkeypatch.setattr(sampler_table, "SAMPLERS", SAMPLERS.plus(rec))
    model = _model()
    lat = {"samples": torch.randn(1, 4, 4, 4, generator=torch.Generator().manual_seed(2)),
           "noise_mask": (torch.arange(16).reshape(4, 4) % 2).float()}
    kw = dict(seed=9, steps=4, cfg=1.0, scheduler="karras", denoise=0.7)
    toy = diffusion.sample(model, lat, COND, COND, sampler_name="toy", **kw)["samples"]
    same_as = "ddim" if random_inpaint_noise else "euler"
    other = "euler" if random_inpaint_noise else "ddim"
    assert torch.equal(toy, diffusion.sample(model, lat, COND, COND, sampler_name=same_as, **kw)["samples"])
    assert not torch.equal(toy, diffusion.sample(model, lat, COND, COND, sampler_name=other, **kw)["samples"])


def test_table_matches_comfyui():
    """Golden facts from ComfyUI's comfy/samplers.py (KSAMPLER_NAMES order, DISCARD_PENULTIMATE_SIGMA_SAMPLERS)
    and comfy/k_diffusion/sampling.py (the samplers that build a BrownianTreeNoiseSampler); then our extra
    record, k-diffusion's LMS."""
    assert list(SAMPLERS) == ["euler", "euler_ancestral", "heun", "dpm_2", "dpm_2_ancestral", "lms",
                              "dpmpp_2s_ancestral", "dpmpp_sde", "dpmpp_2m", "dpmpp_2m_sde", "dpmpp_3m_sde", "lcm",
                              "ddim", "uni_pc", "uni_pc_bh2", "lms_kdiffusion"]
    assert SAMPLERS.names(brownian_noise=True) == ("dpmpp_sde", "dpmpp_2m_sde", "dpmpp_3m_sde")
    assert set(SAMPLERS.names(discard_penultimate_sigma=True)) == {"dpm_2", "dpm_2_ancestral", "uni_pc", "uni_pc_bh2"}
    assert set(SAMPLERS.names(stochastic=True)) == {"euler_ancestral", "dpm_2_ancestral", "dpmpp_2s_ancestral",
                                                    "dpmpp_sde", "dpmpp_2m_sde", "dpmpp_3m_sde", "lcm"}
    assert SAMPLERS.names(invertible=True) == ("euler", "heun", "dpm_2", "lms", "dpmpp_2m", "ddim", "lms_kdiffusion")
    assert set(SAMPLERS.names(flow_safe=False)) == {"dpm_2_ancestral", "dpmpp_2s_ancestral", "dpmpp_sde",
                                                    "dpmpp_2m_sde", "dpmpp_3m_sde"}
    assert SAMPLERS.names(random_inpaint_noise=True) == ("ddim",)
    assert SAMPLERS.names(uses_noise_scaling=True) == ("lcm",)


def test_old_names_are_views_of_the_table():
    from latent_ops import sampling

    assert sampling.SAMPLER_NAMES == tuple(SAMPLERS) and sampling.SAMPLERS is SAMPLERS
    assert sampling.STOCHASTIC_SAMPLERS == {n for n, r in SAMPLERS.items() if r.stochastic}
    assert diffusion.INVERTIBLE_SAMPLERS == tuple(n for n, r in SAMPLERS.items() if r.invertible)
    assert schedules.DISCARD_PENULTIMATE_SIGMA_SAMPLERS == {
        n for n, r in SAMPLERS.items() if r.discard_penultimate_sigma}
    sig = torch.tensor([2.0, 1.0, 0.0])
    x = _x(sig)
    torch.testing.assert_close(SAMPLERS["heun"](gauss_model, x, sig), run_sampler("heun", gauss_model, x, sig))


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_every_record_is_consistent_with_its_sampler(name, ms):
    rec = SAMPLERS[name]
    assert rec.name == name
    params = inspect.signature(rec.fn).parameters
    assert list(params)[:3] == ["model", "x", "sigmas"] and "callback" in params
    sig = schedules.ksampler_sigmas(ms, "karras", 6, sampler_name=name)
    assert len(sig) == 7 and float(sig[-1]) == 0.0
    x = _x(sig)
    seen: list[int] = []

    def run(seed: int, **kw) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        ns = (lambda s, sn: torch.randn(x.shape, generator=g)) if rec.stochastic else None
        return run_sampler(name, gauss_model, x, sig, noise_sampler=ns, callback=lambda d: seen.append(d["i"]), **kw)

    a = run(0)
    assert a.shape == x.shape and torch.isfinite(a).all()
    assert seen == list(range(len(sig) - 1))  # one callback per step, in order
    assert torch.equal(run(0), a)
    if rec.stochastic:
        assert "noise_sampler" in params and not rec.invertible
        assert not torch.equal(run(1), a)  # fresh noise matters
        with pytest.raises(ValueError, match="needs a noise_sampler"):
            run_sampler(name, gauss_model, x, sig)
    else:
        assert "noise_sampler" not in params
    if rec.uses_noise_scaling:
        flow_blend = FlowSampling.noise_scaling
        assert not torch.equal(run(0, noise_scaling=flow_blend), a)
    else:
        assert torch.equal(run(0, noise_scaling=FlowSampling.noise_scaling), a)  # ignored
    if rec.flow_safe:
        fs = FlowSampling(shift=3.0)
        fsig = schedules.ksampler_sigmas(fs, "normal", 6, sampler_name=name)
        g = torch.Generator().manual_seed(0)
        ns = (lambda s, sn: torch.randn(x.shape, generator=g)) if rec.stochastic else None
        assert torch.isfinite(run_sampler(name, gauss_model, _x(fsig), fsig, noise_sampler=ns, prediction="flow")).all()
    else:
        with pytest.raises(ValueError, match="not supported for flow models"):
            run_sampler(name, gauss_model, x, sig, noise_sampler=lambda s, sn: x, prediction="flow")


def test_flow_fn_replaces_fn_on_flow_models():
    rec = SAMPLERS["euler_ancestral"]
    assert rec.flow_fn is not None and rec.flow_fn is not rec.fn
    sig = torch.tensor([0.9, 0.5, 0.2, 0.0])
    x = _x(sig)
    noises = [torch.randn(x.shape, generator=torch.Generator().manual_seed(k)) for k in range(3)]

    def replay():
        it = iter(noises)
        return lambda s, sn: next(it)

    got = run_sampler("euler_ancestral", gauss_model, x, sig, noise_sampler=replay(), prediction="flow")
    assert torch.equal(got, rec.flow_fn(gauss_model, x, sig, noise_sampler=replay()))
    assert not torch.equal(got, rec.fn(gauss_model, x, sig, noise_sampler=replay()))


def test_records_refuse_contradictions():
    with pytest.raises(ValueError, match="'toy'.*stochastic"):
        SamplerRecord("toy", sample_toy, stochastic=True)
    with pytest.raises(ValueError, match="'lcm2'.*stochastic"):
        SamplerRecord("lcm2", SAMPLERS["lcm"].fn, uses_noise_scaling=True)
    with pytest.raises(ValueError, match="cannot be invertible"):
        SamplerRecord("x", SAMPLERS["euler_ancestral"].fn, stochastic=True, invertible=True)
    with pytest.raises(ValueError, match="flow_fn needs flow_safe"):
        SamplerRecord("x", sample_toy, flow_fn=sample_toy)
    with pytest.raises(ValueError, match="same parameters"):
        SamplerRecord("x", sample_toy, flow_safe=True, flow_fn=SAMPLERS["lms"].fn)
    with pytest.raises(ValueError, match="uses_noise_scaling"):
        SamplerRecord("x", sample_toy, uses_noise_scaling=True)
    with pytest.raises(ValueError, match="'x': bad brownian_noise: brownian_noise needs stochastic"):
        SamplerRecord("x", sample_toy, brownian_noise=True)
    with pytest.raises(dataclasses.FrozenInstanceError):
        SAMPLERS["euler"].invertible = False  # type: ignore[misc]


def test_registry_is_an_immutable_mapping():
    with pytest.raises(ValueError, match="duplicate sampler name 'euler'"):
        SAMPLERS.plus(SamplerRecord("euler", sample_toy))
    bigger = SAMPLERS.plus(SamplerRecord("toy", sample_toy))
    assert list(bigger)[-1] == "toy" and len(bigger) == len(SAMPLERS) + 1 and "toy" not in SAMPLERS
    with pytest.raises(TypeError):
        SAMPLERS["toy"] = bigger["toy"]  # type: ignore[index]
    assert SamplerRegistry().names() == ()
    with pytest.raises(ValueError, match=r"unknown flags \['fast'\]"):
        SAMPLERS.names(fast=True)
    with pytest.raises(ValueError, match=r"ksampler_sigmas: unknown sampler 'nope'; known: \['euler'"):
        SAMPLERS.record("nope", "ksampler_sigmas")
    with pytest.raises(KeyError):
        SAMPLERS["nope"]
