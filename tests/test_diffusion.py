"""The sampling entry point: noise conventions, step-noise batch invariance, variations, CFG,
img2img, inpainting, start/end steps, empty-latent channels and unsampling, on an analytic model."""

from __future__ import annotations

import pytest
import torch

from latent_ops import progress
from latent_ops.latent_format import LatentFormat
from latent_ops.noise.conventions import make_noise
from latent_ops.sampling.denoisers import DiscreteSampling, FlowSampling
from latent_ops.sampling.diffusion import DiffusionModel, sample, unsample

S2 = 0.6
FMT = LatentFormat("test", channels=4, downscale=8, scale=0.5, shift=0.25)


def _col(v, x):
    return v.reshape(-1, *([1] * (x.ndim - 1)))


def make_model(kind: str = "eps", channels: int = 4) -> DiffusionModel:
    """Exact eps (or flow velocity) of N(0, S2) data, biased by the mean of the conditioning."""
    if kind == "flow":
        ms = FlowSampling()

        def net(x_in, t, cond, **extra):
            s = _col(t / 1000, x_in)
            a = 1 - s
            x0 = x_in * a * S2 / (a**2 * S2 + s**2)
            return (x_in - a * x0) / s - x0
    else:
        ms = DiscreteSampling.from_betas(continuous=True)

        def net(x_in, t, cond, **extra):
            s = _col(ms.sigma(t), x_in)
            x = x_in * (s**2 + 1) ** 0.5
            bias = 0.0 if cond is None else _col(cond.mean(dim=(1, 2)), x_in)
            return x * s / (S2 + s**2) + 0.1 * bias

    fmt = LatentFormat("test", channels=channels, downscale=8, scale=0.5, shift=0.25)
    return DiffusionModel(net, ms, fmt, name=f"gauss-{kind}")


def cond(v: float) -> list:
    return [[torch.full((1, 3, 8), v), {}]]


POS, NEG = cond(1.0), cond(-1.0)
KW = dict(seed=7, steps=12, cfg=1.0, sampler_name="euler", scheduler="karras")


def _empty(b: int = 2, c: int = 4) -> dict:
    return {"samples": torch.zeros(b, c, 6, 6)}


def test_txt2img_matches_exact_ode_and_latent_format():
    model = make_model()
    out = sample(model, _empty(), cond(0.0), cond(0.0), **{**KW, "sampler_name": "uni_pc", "steps": 40})
    n = make_noise((2, 4, 6, 6), 7)
    s0 = float(model.model_sampling.sigma_max)
    exact_model = n * (1 + s0**2) ** 0.5 * (S2 / (S2 + s0**2)) ** 0.5
    torch.testing.assert_close(out["samples"], exact_model / FMT.scale + FMT.shift, rtol=5e-3, atol=1e-3)


def test_dict_copied_and_inputs_untouched():
    model = make_model()
    lat = {"samples": torch.randn(2, 4, 6, 6, generator=torch.Generator().manual_seed(0)),
           "batch_index": [0, 1], "custom": "kept"}
    before = lat["samples"].clone()
    out = sample(model, lat, POS, NEG, **{**KW, "denoise": 0.5})
    assert out is not lat and out["custom"] == "kept" and out["batch_index"] == [0, 1]
    assert torch.equal(lat["samples"], before)
    assert out["samples"].dtype == torch.float32 and out["samples"].shape == before.shape


@pytest.mark.parametrize("name", ["euler_ancestral", "dpmpp_2m_sde", "dpmpp_sde", "lcm"])
@pytest.mark.parametrize("convention", ["comfy", "a1111"])
def test_batch_item_equals_seed_alone(name, convention):
    model = make_model()
    kw = {**KW, "sampler_name": name, "steps": 6, "noise_convention": convention, "cfg": 3.0}
    batch = sample(model, _empty(3), POS, NEG, **kw)["samples"]
    for k in range(3):
        alone = sample(model, {"samples": torch.zeros(1, 4, 6, 6), "batch_index": [k]}, POS, NEG, **kw)["samples"]
        torch.testing.assert_close(batch[k : k + 1], alone, rtol=1e-5, atol=1e-5)


def test_variation_endpoints_include_step_noise():
    model = make_model()
    kw = {**KW, "sampler_name": "euler_ancestral", "steps": 6}
    base = sample(model, _empty(), POS, NEG, **kw)["samples"]
    s0 = sample(model, _empty(), POS, NEG, **kw, subseed=99, subseed_strength=0.0)["samples"]
    torch.testing.assert_close(s0, base)
    s1 = sample(model, _empty(), POS, NEG, **{**kw, "subseed": 99, "subseed_strength": 1.0})["samples"]
    other = sample(model, _empty(), POS, NEG, **{**kw, "seed": 99})["samples"]
    torch.testing.assert_close(s1, other, rtol=1e-5, atol=1e-5)
    mid = sample(model, _empty(), POS, NEG, **{**kw, "subseed": 99, "subseed_strength": 0.5})["samples"]
    assert not torch.allclose(mid, base) and not torch.allclose(mid, other)


def test_cfg_changes_result_and_is_linear():
    model = make_model()
    kw = {**KW, "steps": 1, "sampler_name": "euler", "scheduler": "simple"}
    outs = [sample(model, _empty(), POS, NEG, **{**kw, "cfg": c})["samples"] for c in (0.0, 1.0, 2.0)]
    # one euler step to sigma 0 returns x0 = uncond + (cond - uncond) cfg: linear in cfg
    torch.testing.assert_close(outs[2] - outs[1], outs[1] - outs[0], rtol=1e-4, atol=1e-5)
    assert not torch.allclose(outs[0], outs[1])


def test_img2img_denoise():
    model = make_model()
    lat = {"samples": torch.randn(1, 4, 6, 6, generator=torch.Generator().manual_seed(1))}
    assert torch.equal(sample(model, lat, POS, NEG, **{**KW, "denoise": 0.0})["samples"], lat["samples"])
    near = sample(model, lat, POS, NEG, **{**KW, "denoise": 0.1})["samples"]
    far = sample(model, lat, POS, NEG, **{**KW, "denoise": 1.0})["samples"]
    assert float((near - lat["samples"]).abs().mean()) < float((far - lat["samples"]).abs().mean()) / 2


def test_inpaint_mask_keeps_unmasked_exactly():
    model = make_model()
    raw = torch.randn(1, 4, 6, 6, generator=torch.Generator().manual_seed(2))
    mask = torch.zeros(1, 1, 6, 6)
    mask[..., :, :3] = 1.0
    for name in ("euler", "ddim", "euler_ancestral"):
        out = sample(model, {"samples": raw, "noise_mask": mask}, POS, NEG, **{**KW, "sampler_name": name})
        torch.testing.assert_close(out["samples"][..., 3:], raw[..., 3:], rtol=1e-5, atol=1e-5)
        assert not torch.allclose(out["samples"][..., :3], raw[..., :3], atol=1e-2)
        assert "noise_mask" in out


def test_two_stage_advanced_equals_full_run():
    model = make_model()
    kw = {**KW, "cfg": 2.0}
    full = sample(model, _empty(), POS, NEG, **kw)["samples"]
    first = sample(model, _empty(), POS, NEG, **kw, end_step=5, return_leftover_noise=True)
    second = sample(model, first, POS, NEG, **kw, start_step=5, add_noise=False)["samples"]
    torch.testing.assert_close(second, full, rtol=1e-4, atol=1e-4)
    done = sample(model, _empty(), POS, NEG, **kw, end_step=5)["samples"]
    assert float(done.abs().mean()) < float(first["samples"].abs().mean())


def test_empty_latent_channels_and_explicit_noise():
    model = make_model(channels=16)
    out = sample(model, _empty(1, 4), POS, NEG, **KW)
    assert out["samples"].shape == (1, 16, 6, 6)
    with pytest.raises(ValueError, match="channels"):
        sample(model, {"samples": torch.ones(1, 4, 6, 6)}, POS, NEG, **KW)
    n = make_noise((1, 16, 6, 6), 12345)
    a = sample(model, _empty(1, 4), POS, NEG, **KW, noise=n)["samples"]
    b = sample(model, _empty(1, 4), POS, NEG, **{**KW, "seed": 12345})["samples"]
    torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="noise shape"):
        sample(model, _empty(1, 4), POS, NEG, **KW, noise=torch.zeros(2, 16, 6, 6))


def test_bad_inputs_raise():
    model = make_model()
    with pytest.raises(ValueError, match="NaN"):
        sample(model, {"samples": torch.full((1, 4, 6, 6), float("nan"))}, POS, NEG, **KW)
    with pytest.raises(ValueError, match="unknown sampler"):
        sample(model, _empty(), POS, NEG, **{**KW, "sampler_name": "magic"})
    with pytest.raises(ValueError, match="not supported"):
        sample(model, _empty(), [[torch.zeros(1, 3, 8), {"area": (1, 1, 0, 0)}]], NEG, **KW)
    with pytest.raises(ValueError, match="CONDITIONING"):
        sample(model, _empty(), [], NEG, **KW)


def test_progress_and_interrupt():
    model = make_model()
    seen = []
    with progress.reporting(lambda d, t: seen.append((d, t))):
        sample(model, _empty(), POS, NEG, **{**KW, "steps": 4})
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]

    def stop(done, total):
        if done == 2:
            raise progress.Interrupted

    with pytest.raises(progress.Interrupted):
        sample(model, _empty(), POS, NEG, **KW, callback=stop)


def test_flow_model_sampling():
    model = make_model("flow")
    out = sample(model, _empty(), POS, NEG, **{**KW, "sampler_name": "heun", "steps": 30, "scheduler": "normal"})
    n = make_noise((2, 4, 6, 6), 7)
    # the flow ODE maps N(0,1) to N(0,S2) by scaling; bias from the conditioning is 0 for flow net
    torch.testing.assert_close(out["samples"], n * S2**0.5 / FMT.scale + FMT.shift, rtol=0.01, atol=1e-3)
    out = sample(model, _empty(), POS, NEG, **{**KW, "sampler_name": "euler_ancestral"})
    assert bool(torch.isfinite(out["samples"]).all())


@pytest.mark.parametrize("name", ["dpmpp_2m", "heun"])
def test_unsample_round_trip(name):
    model = make_model()
    raw = torch.randn(2, 4, 6, 6, generator=torch.Generator().manual_seed(5)) * 0.6 + FMT.shift
    lat = {"samples": raw}
    kw = dict(steps=30, cfg=1.0, sampler_name=name, scheduler="karras")
    noise = unsample(model, lat, POS, NEG, **kw)
    assert noise["samples"].shape == raw.shape
    back = sample(model, lat, POS, NEG, seed=0, noise=noise["samples"], **kw)["samples"]
    err = float((back - raw).abs().max()) / float(raw.std())
    fresh = sample(model, lat, POS, NEG, seed=0, **kw)["samples"]
    assert err < 0.1 and err < float((fresh - raw).abs().max()) / float(raw.std()) / 10, err
    with pytest.raises(ValueError, match="cannot be inverted"):
        unsample(model, lat, POS, NEG, **{**kw, "sampler_name": "euler_ancestral"})


@pytest.mark.parametrize("scheduler", ["normal", "exponential", "kl_optimal", "karras"])
@pytest.mark.parametrize("name", ["dpmpp_2m", "lms"])
def test_unsample_round_trip_with_schedules_that_end_at_sigma_min(name, scheduler):
    """These schedules end at sigma_min (to float32 rounding): the climb must not start with a
    zero-length step (multistep samplers divided by it: NaN, ZeroDivisionError, a refusal)."""
    model = make_model()
    raw = torch.randn(2, 4, 6, 6, generator=torch.Generator().manual_seed(5)) * 0.6 + FMT.shift
    kw = dict(steps=30, cfg=1.0, sampler_name=name, scheduler=scheduler)
    noise = unsample(model, {"samples": raw}, POS, NEG, **kw)["samples"]
    back = sample(model, {"samples": raw}, POS, NEG, seed=0, noise=noise, **kw)["samples"]
    assert float((back - raw).abs().max()) / float(raw.std()) < 0.1


def test_multiple_conditioning_entries_are_averaged():
    model = make_model()
    kw = {**KW, "steps": 3, "cfg": 2.0}
    ref = sample(model, _empty(), cond(2.0), NEG, **kw)["samples"]
    two = cond(1.0) + cond(3.0)  # same shapes: one batched call
    torch.testing.assert_close(sample(model, _empty(), two, NEG, **kw)["samples"], ref, rtol=1e-5, atol=1e-5)
    mixed = cond(1.0) + [[torch.full((1, 5, 8), 3.0), {}]]  # different token counts: separate calls
    torch.testing.assert_close(sample(model, _empty(), mixed, NEG, **kw)["samples"], ref, rtol=1e-5, atol=1e-5)


def test_stacked_variation_weight_one_is_that_seed():
    model = make_model()
    kw = {**KW, "sampler_name": "dpmpp_2m_sde", "steps": 5}
    a = sample(model, _empty(), POS, NEG, **kw, variations=[(42, 1.0)])["samples"]
    b = sample(model, _empty(), POS, NEG, **{**kw, "seed": 42})["samples"]
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_ensd_reaches_the_ancestral_step_noise_only():
    """sample(ensd=...): A1111's eta noise seed delta changes ancestral samplers' step noise, not the initial
    noise, deterministic samplers or the Brownian trees of SDE samplers (as in A1111)."""
    model = make_model()
    for convention in ("a1111", "comfy"):
        kw = {**KW, "steps": 6, "noise_convention": convention}
        runs = {(name, ensd): sample(model, _empty(2), POS, NEG, **{**kw, "sampler_name": name}, ensd=ensd)["samples"]
                for name in ("euler_ancestral", "euler", "dpmpp_sde") for ensd in (0, 31337)}
        assert not torch.allclose(runs["euler_ancestral", 0], runs["euler_ancestral", 31337])
        assert torch.equal(runs["euler", 0], runs["euler", 31337])
        assert torch.equal(runs["dpmpp_sde", 0], runs["dpmpp_sde", 31337])
        alone = sample(model, {"samples": torch.zeros(1, 4, 6, 6), "batch_index": [1]}, POS, NEG,
                       **{**kw, "sampler_name": "euler_ancestral"}, ensd=31337)["samples"]
        torch.testing.assert_close(runs["euler_ancestral", 31337][1:], alone, rtol=1e-5, atol=1e-6)
