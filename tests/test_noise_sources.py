"""latent_ops.noise.sources: SeedOptions and SeededNoise (ComfyUI's NOISE interface, no ComfyUI)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from latent_ops.noise import make_noise, make_step_noise
from latent_ops.noise.sources import SeededNoise, SeedOptions


def comfy_prepare_noise(samples: torch.Tensor, seed: int, batch_index: list[int] | None = None) -> torch.Tensor:
    """ComfyUI 0.3.64 ``comfy.sample.prepare_noise``, written out: one CPU generator, latent dtype."""
    g = torch.Generator("cpu").manual_seed(seed)
    if batch_index is None:
        return torch.randn(samples.size(), dtype=samples.dtype, generator=g)
    draws = [torch.randn([1, *samples.shape[1:]], dtype=samples.dtype, generator=g)
             for _ in range(max(batch_index) + 1)]
    return torch.cat([draws[i] for i in batch_index])


def test_seed_options_normalise_and_freeze() -> None:
    o = SeedOptions("a1111", 7, 0.25, "5:0.5, 6:0.125")
    assert o.variations == ((5, 0.5), (6, 0.125))
    assert SeedOptions(variations=[(5, 0.5), (6, 0.125)]).variations == o.variations
    assert SeedOptions(subseed=3.0).subseed == 3 and isinstance(SeedOptions(subseed=3.0).subseed, int)
    with pytest.raises(dataclasses.FrozenInstanceError):
        o.subseed = 1  # type: ignore[misc]
    assert hash(o) == hash(SeedOptions("a1111", 7, 0.25, "5:0.5,6:0.125"))


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"convention": "a1111_gpu"}, "a1111_gpu"),
    ({"convention": "nope"}, "unknown noise convention 'nope'"),
    ({"subseed": -1}, r"subseed must be in \[0, 2\*\*64\)"),
    ({"subseed_strength": 1.5}, r"subseed_strength must be in \[0, 1\], got 1.5"),
    ({"variations": "5:2"}, "variations weight"),
    ({"variations": "five"}, "cannot parse item 'five'"),
    ({"ensd": 1.5}, "ensd must be an integer"),
    ({"ensd": True}, "ensd must be an integer"),
])
def test_seed_options_reject_bad_values(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SeedOptions(**kwargs)


def test_step_noise_is_make_step_noise() -> None:
    o = SeedOptions("diffusers", 9, 0.5, "11:0.25")
    like = torch.empty(3, 4, 5, 6)
    got = o.step_noise(100, 3, [0, 4, 2])
    want = make_step_noise(100, 3, convention="diffusers", batch_index=[0, 4, 2], subseed=9, subseed_strength=0.5,
                           variations="11:0.25")
    for _ in range(2):
        assert torch.equal(got(like), want(like))
    with pytest.raises(ValueError, match="batch_index has 2 entries but the batch has 3 items"):
        o.step_noise(100, 3, [0, 1])
    # ENSD: 0 is the default stream (comfy) or A1111's continued generator (a1111); else seed + ENSD
    for convention in ("comfy", "a1111"):
        for ensd in (0, 31337):
            got = SeedOptions(convention, ensd=ensd).step_noise(100, 3)
            want = make_step_noise(100, 3, convention=convention, seed_delta=ensd or None)
            assert torch.equal(got(like), want(like))


@pytest.mark.parametrize("batch_index", [None, [3, 1, 3]])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_comfy_gaussian_equals_comfyui_prepare_noise(batch_index, dtype) -> None:
    samples = torch.zeros(3, 4, 6, 5, dtype=dtype)
    latent = {"samples": samples} if batch_index is None else {"samples": samples, "batch_index": batch_index}
    got = SeededNoise(1234).generate_noise(latent)
    assert got.dtype == dtype and got.device.type == "cpu" and got.shape == samples.shape
    assert torch.equal(got, comfy_prepare_noise(samples, 1234, batch_index))


def test_generate_noise_is_make_noise_with_every_option() -> None:
    o = SeedOptions("a1111_nv", 5, 0.3, "8:0.2")
    latent = {"samples": torch.zeros(2, 4, 8, 8), "batch_index": [1, 0]}
    got = SeededNoise(77, o, "perlin").generate_noise(latent)
    want = make_noise((2, 4, 8, 8), 77, convention="a1111_nv", noise_type="perlin", subseed=5, subseed_strength=0.3,
                      variations="8:0.2", batch_index=[1, 0])
    assert torch.equal(got, want)
    assert not torch.equal(got, SeededNoise(77, SeedOptions("a1111_nv"), "perlin").generate_noise(latent))


def test_video_latents_get_5d_noise() -> None:
    got = SeededNoise(3, SeedOptions("diffusers")).generate_noise({"samples": torch.zeros(2, 16, 3, 4, 4)})
    assert got.shape == (2, 16, 3, 4, 4)
    assert torch.equal(got[1:], SeededNoise(4, SeedOptions("diffusers")).generate_noise({"samples": torch.zeros(1, 16, 3, 4, 4)}))


def test_seeded_noise_rejects_bad_inputs() -> None:
    with pytest.raises(ValueError, match=r"seed must be in \[0, 2\*\*64\)"):
        SeededNoise(2**64)
    with pytest.raises(ValueError, match="unknown noise_type .plaid."):
        SeededNoise(1, noise_type="plaid")
    with pytest.raises(ValueError, match="options must be SeedOptions, got dict"):
        SeededNoise(1, {"convention": "comfy"})  # type: ignore[arg-type]
    noise = SeededNoise(1)
    with pytest.raises(ValueError, match="expected a LATENT dict with a float 'samples' tensor, got Tensor"):
        noise.generate_noise(torch.zeros(1, 4, 8, 8))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="got Tensor"):
        noise.generate_noise({"samples": torch.zeros(1, 4, 8, 8, dtype=torch.long)})
    with pytest.raises(ValueError, match="batch_index has 1 entries but the batch has 2 items"):
        noise.generate_noise({"samples": torch.zeros(2, 4, 8, 8), "batch_index": [0]})
