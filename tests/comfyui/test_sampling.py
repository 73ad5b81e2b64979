"""Our sampling nodes inside the real ComfyUI 0.3.64, on a tiny SD1.5-class model (no mocks).

- convention ``comfy`` + a deterministic sampler: LatentOpsComfyKSampler equals ComfyUI's own
  KSampler / KSamplerAdvanced (txt2img, img2img with noise_mask, batch_index, empty 16-channel
  latent, step windows);
- every stochastic sampler is batch-invariant: image k of a batch equals seed k alone;
- our NOISE and SAMPLER objects inside SamplerCustomAdvanced;
- a LoRA-like weight patch on the ModelPatcher still applies; previews and interrupts work.
"""

from __future__ import annotations

import copy

import comfy.cli_args
import comfy.model_management
import comfy.model_patcher
import comfy.samplers
import comfy.utils
import latent_ops_nodes
import pytest
import torch
from comfy_extras import nodes_custom_sampler as custom

import nodes as comfy_nodes  # ComfyUI's nodes.py (first on sys.path), not this repository's nodes/
from latent_ops.sampling import per_image

OURS = latent_ops_nodes.NODE_CLASS_MAPPINGS
STOCHASTIC = [n for n in comfy.samplers.KSampler.SAMPLERS
              if per_image.accepts_noise_sampler(comfy.samplers.sampler_object(n).sampler_function)]
STEPS, CFG = 4, 3.0


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest absolute difference relative to the largest magnitude of ``b``."""
    return float((a - b).detach().abs().max() / b.detach().abs().max())


def latent(batch: int = 2, *, channels: int = 4, seed: int | None = None, **extra: object) -> dict:
    """An 8x8 LATENT: zeros (txt2img) or seeded raw-space values (img2img)."""
    if seed is None:
        samples = torch.zeros(batch, channels, 8, 8)
    else:
        samples = torch.randn(batch, channels, 8, 8, generator=torch.Generator().manual_seed(seed))
    return {"samples": samples, **extra}


def ours(model: object, conds: tuple, lat: dict, *, seed: int = 42, sampler: str = "euler",
         convention: str = "comfy", denoise: float = 1.0, steps: int = STEPS, **opts: object) -> torch.Tensor:
    pos, neg = conds
    subseed, strength = opts.pop("subseed", 0), opts.pop("subseed_strength", 0.0)
    out = OURS["LatentOpsComfyKSampler"]().sample(model, seed, steps, CFG, sampler, "normal", pos, neg, lat, denoise,
                                                  convention, subseed, strength, **opts)
    return out[0]["samples"]


def core(model: object, conds: tuple, lat: dict, *, seed: int = 42, sampler: str = "euler",
         denoise: float = 1.0) -> torch.Tensor:
    pos, neg = conds
    return comfy_nodes.KSampler().sample(model, seed, STEPS, CFG, sampler, "normal", pos, neg, lat, denoise)[0]["samples"]


# --- parity with ComfyUI's KSampler (convention comfy, deterministic samplers) -------------------

@pytest.mark.parametrize("sampler", ["euler", "dpmpp_2m", "heun", "lms", "ddim", "uni_pc", "dpm_2"])
def test_txt2img_equals_core_ksampler(tiny_model, conds, sampler: str) -> None:
    lat = latent(2)
    assert rel(ours(tiny_model, conds, lat, sampler=sampler), core(tiny_model, conds, lat, sampler=sampler)) <= 1e-6


@pytest.mark.parametrize("sampler", ["euler", "ddim"])
@pytest.mark.parametrize("case", ["img2img_mask", "batch_index", "empty_16_channels"])
def test_latent_options_equal_core_ksampler(tiny_model, conds, sampler: str, case: str) -> None:
    denoise = 1.0
    if case == "img2img_mask":
        mask = torch.zeros(1, 1, 8, 8)
        mask[..., 2:6, 2:6] = 1.0
        lat, denoise = latent(2, seed=3, noise_mask=mask), 0.6
    elif case == "batch_index":
        lat = latent(2, batch_index=[3, 1])
    else:
        lat = latent(1, channels=16)
    got = ours(tiny_model, conds, lat, sampler=sampler, denoise=denoise)
    want = core(tiny_model, conds, lat, sampler=sampler, denoise=denoise)
    assert got.shape == want.shape == (lat["samples"].shape[0], 4, 8, 8)
    assert rel(got, want) <= 1e-6


@pytest.mark.parametrize(("add_noise", "start", "end", "leftover"), [
    (True, 1, 3, True), (False, 0, 2, False), (True, 0, 10000, False), (True, 5, 10000, False),
])
def test_advanced_options_equal_core_ksampler_advanced(tiny_model, conds, add_noise, start, end, leftover) -> None:
    pos, neg = conds
    lat = latent(2, seed=5)
    want = comfy_nodes.KSamplerAdvanced().sample(
        tiny_model, "enable" if add_noise else "disable", 9, STEPS, CFG, "euler", "normal", pos, neg, lat, start, end,
        "enable" if leftover else "disable")[0]["samples"]
    got = ours(tiny_model, conds, lat, seed=9, add_noise=add_noise, start_at_step=start, end_at_step=end,
               return_with_leftover_noise=leftover)
    assert rel(got, want) <= 1e-6
    if start >= STEPS:  # nothing to run: the latent comes back as it went in
        assert torch.equal(got, lat["samples"])


# --- batch invariance: image k of a batch == seed k alone ----------------------------------------

def test_stochastic_list_is_complete() -> None:
    assert {"euler_ancestral", "dpmpp_sde", "dpmpp_2m_sde", "dpmpp_3m_sde", "lcm", "ddpm"} <= set(STOCHASTIC)
    assert not {"euler", "dpmpp_2m", "heun", "lms", "ddim", "uni_pc"} & set(STOCHASTIC)


@pytest.mark.parametrize("sampler", STOCHASTIC)
def test_every_stochastic_sampler_is_batch_invariant(tiny_model, conds, sampler: str) -> None:
    batch = ours(tiny_model, conds, latent(3), seed=100, sampler=sampler, convention="a1111")
    for k in range(3):
        alone = ours(tiny_model, conds, latent(1), seed=100 + k, sampler=sampler, convention="a1111")
        assert rel(batch[k:k + 1], alone) <= 1e-5, (sampler, k)
    assert rel(batch[0], batch[1]) > 1e-2


@pytest.mark.parametrize(("convention", "opts"), [
    ("comfy", {}),
    ("a1111_nv", {}),
    ("diffusers", {"subseed": 5, "subseed_strength": 0.3, "variations": "77:0.2, 78:0.1"}),
])
@pytest.mark.parametrize("sampler", ["euler_ancestral", "dpmpp_2m_sde"])
def test_batch_index_and_variations_are_per_image(tiny_model, conds, sampler, convention, opts) -> None:
    # Image k of a batch equals the same latent item run alone with batch_index [k] (seed + k).
    batch = ours(tiny_model, conds, latent(2), seed=11, sampler=sampler, convention=convention, **opts)
    for k in range(2):
        alone = ours(tiny_model, conds, latent(1, batch_index=[k]), seed=11, sampler=sampler,
                     convention=convention, **opts)
        assert rel(batch[k:k + 1], alone) <= 1e-5, (convention, k)
    if opts:  # the variation reaches the image (initial and step noise)
        plain = ours(tiny_model, conds, latent(2), seed=11, sampler=sampler, convention=convention)
        assert rel(batch, plain) > 1e-3


def test_core_ksampler_is_not_batch_invariant(tiny_model, conds) -> None:
    # The property above is not automatic: ComfyUI's own step noise is one stream for the batch.
    batch = core(tiny_model, conds, latent(2), sampler="euler_ancestral")
    alone = core(tiny_model, conds, latent(1, batch_index=[1]), sampler="euler_ancestral")
    assert rel(batch[1:], alone) > 1e-3
    # ... and ours differs from it on purpose (per-image CPU step noise)
    mine = ours(tiny_model, conds, latent(2), sampler="euler_ancestral")
    assert rel(mine, batch) > 1e-3


# --- NOISE and SAMPLER inside SamplerCustomAdvanced ----------------------------------------------

def _noise(seed: int, convention: str = "comfy", **opts: object) -> object:
    subseed, strength = opts.pop("subseed", 0), opts.pop("subseed_strength", 0.0)
    return OURS["LatentOpsRandomNoise"]().get_noise(seed, convention, opts.pop("noise_type", "gaussian"),
                                                    subseed, strength, **opts)[0]


def _wrap(name: str, convention: str = "comfy", sampler: object | None = None) -> object:
    return OURS["LatentOpsSamplerStepNoise"]().get_sampler(name, convention, 0, 0.0, sampler=sampler)[0]


def _custom(model: object, conds: tuple, noise: object, sampler: object, lat: dict) -> torch.Tensor:
    pos, neg = conds
    guider = custom.CFGGuider().get_guider(model, pos, neg, CFG)[0]
    sigmas = custom.BasicScheduler().get_sigmas(model, "normal", STEPS, 1.0)[0]
    return custom.SamplerCustomAdvanced().sample(noise, guider, sampler, sigmas, lat)[0]["samples"]


@pytest.mark.parametrize("extra", [{}, {"batch_index": [2, 0, 2]}])
def test_noise_comfy_gaussian_equals_core_random_noise(extra: dict) -> None:
    lat = latent(3, **extra)
    mine, theirs = _noise(1234), custom.RandomNoise().get_noise(1234)[0]
    assert mine.seed == theirs.seed == 1234
    assert torch.equal(mine.generate_noise(lat), theirs.generate_noise(lat))
    lat16 = {**lat, "samples": lat["samples"].half()}
    assert torch.equal(mine.generate_noise(lat16), theirs.generate_noise(lat16))


@pytest.mark.parametrize("sampler", ["euler", "euler_ancestral", "dpmpp_2m_sde"])
def test_custom_advanced_equals_our_ksampler(tiny_model, conds, sampler: str) -> None:
    lat = latent(2)
    got = _custom(tiny_model, conds, _noise(42), _wrap(sampler), lat)
    assert rel(got, ours(tiny_model, conds, lat, sampler=sampler)) <= 1e-6
    if sampler == "euler":  # deterministic: the core RandomNoise + KSamplerSelect give the same image
        core_sampler = custom.KSamplerSelect().get_sampler("euler")[0]
        assert rel(got, _custom(tiny_model, conds, custom.RandomNoise().get_noise(42)[0], core_sampler, lat)) <= 1e-6


def test_custom_advanced_batch_invariance_with_a_wrapped_sampler(tiny_model, conds) -> None:
    wrapped = _wrap("euler", "a1111", sampler=custom.KSamplerSelect().get_sampler("dpmpp_sde")[0])
    batch = _custom(tiny_model, conds, _noise(500, "a1111"), wrapped, latent(2))
    for k in range(2):
        alone = _custom(tiny_model, conds, _noise(500 + k, "a1111"), wrapped, latent(1))
        assert rel(batch[k:k + 1], alone) <= 1e-5


def test_wrapper_keeps_extra_and_inpaint_options(tiny_model, conds) -> None:
    # SamplerEulerAncestral with eta 0 is euler: the wrapped copy must still pass eta=0.
    ancestral = custom.SamplerEulerAncestral().get_sampler(0.0, 1.0)[0]
    wrapped = _wrap("euler", sampler=ancestral)
    assert wrapped is not ancestral and wrapped.extra_options == {"eta": 0.0, "s_noise": 1.0}
    assert wrapped.sampler_function is not ancestral.sampler_function
    assert ancestral.sampler_function is comfy.samplers.sampler_object("euler_ancestral").sampler_function
    lat = latent(1)
    euler = custom.KSamplerSelect().get_sampler("euler")[0]
    assert rel(_custom(tiny_model, conds, _noise(3), wrapped, lat), _custom(tiny_model, conds, _noise(3), euler, lat)) <= 1e-6
    # ddim is euler with random inpainting noise; euler takes no noise sampler, so it passes through.
    ddim = _wrap("ddim")
    assert ddim.inpaint_options == {"random": True}
    assert ddim.sampler_function is comfy.samplers.sampler_object("euler").sampler_function


def test_wrapped_sampler_is_reusable_across_seeds(tiny_model, conds) -> None:
    wrapped, lat = _wrap("euler_ancestral"), latent(1)
    first = _custom(tiny_model, conds, _noise(8), wrapped, lat)
    assert torch.equal(first, _custom(tiny_model, conds, _noise(8), wrapped, lat))
    assert rel(first, _custom(tiny_model, conds, _noise(9), wrapped, lat)) > 1e-3


# --- model patches, previews, interrupts, errors -------------------------------------------------

def test_lora_like_patch_is_applied(tiny_model, conds) -> None:
    key = "diffusion_model.out.2.weight"
    weight = tiny_model.model.state_dict()[key]
    delta = 0.5 * torch.randn(weight.shape, generator=torch.Generator().manual_seed(1))
    patched = tiny_model.clone()
    assert patched.add_patches({key: (delta,)}, 1.0) == [key]
    baked_model = copy.deepcopy(tiny_model.model)
    with torch.no_grad():
        baked_model.state_dict()[key].add_(delta)
    mm = comfy.model_management
    baked = comfy.model_patcher.ModelPatcher(baked_model, load_device=mm.get_torch_device(),
                                             offload_device=mm.unet_offload_device())
    lat = latent(1)
    plain = ours(tiny_model, conds, lat)
    with_patch = ours(patched, conds, lat)
    assert rel(with_patch, plain) > 1e-3
    assert rel(with_patch, core(patched, conds, lat)) <= 1e-6  # changes exactly as KSampler's output does
    stochastic = ours(patched, conds, lat, sampler="euler_ancestral")
    assert rel(stochastic, ours(baked, conds, lat, sampler="euler_ancestral")) <= 1e-5
    assert rel(ours(tiny_model, conds, lat), plain) <= 1e-6  # and the patch comes off again


def test_previews_and_progress(tiny_model, conds, monkeypatch) -> None:
    monkeypatch.setattr(comfy.cli_args.args, "preview_method", comfy.cli_args.LatentPreviewMethod.Latent2RGB)
    calls = []
    comfy.utils.set_progress_bar_global_hook(lambda value, total, preview, node_id=None: calls.append((value, total, preview)))
    try:
        ours(tiny_model, conds, latent(1), steps=3)
    finally:
        comfy.utils.set_progress_bar_global_hook(None)
    assert [c[:2] for c in calls] == [(1, 3), (2, 3), (3, 3)]
    assert all(c[2] is not None and c[2][0] == "JPEG" for c in calls)


def test_interrupt_stops_sampling(tiny_model, conds) -> None:
    mm = comfy.model_management
    # ComfyUI's server hook checks for /interrupt on every progress update; this one does the same.
    comfy.utils.set_progress_bar_global_hook(lambda *a, **k: mm.throw_exception_if_processing_interrupted())
    mm.interrupt_current_processing(True)
    try:
        with pytest.raises(mm.InterruptProcessingException):
            ours(tiny_model, conds, latent(1), sampler="euler_ancestral")
    finally:
        mm.interrupt_current_processing(False)
        comfy.utils.set_progress_bar_global_hook(None)


def test_clear_errors(tiny_model, conds) -> None:
    with pytest.raises(ValueError, match="LatentOpsComfyKSampler: unknown sampler_name 'nope'"):
        ours(tiny_model, conds, latent(1), sampler="nope")
    with pytest.raises(ValueError, match="LatentOpsSamplerStepNoise: sampler object has no sampler_function"):
        _wrap("euler", sampler=object())
    with pytest.raises(ValueError, match="variations"):
        ours(tiny_model, conds, latent(1), variations="7:2")
    with pytest.raises(ValueError, match="unknown noise convention"):
        _noise(1, "a1112")
