"""Per-image step noise: batch invariance, variation endpoints, seed derivation."""

from __future__ import annotations

import pytest
import torch

from latent_ops import noise
from latent_ops.noise import step as step_noise
from latent_ops.noise.philox import PhiloxGenerator

M64 = 2**64 - 1


def splitmix64(x: int) -> int:
    """SplitMix64 output for state ``x`` (Steele, Lea, Flood 2014), written out."""
    z = (x + 0x9E3779B97F4A7C15) & M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def test_derivation_is_splitmix_finaliser() -> None:
    for seed in (0, 1, 12345, M64):
        # the finaliser of (seed + salt) equals SplitMix64's output for state seed + salt - gamma
        state = (seed + step_noise.STEP_SEED_SALT - 0x9E3779B97F4A7C15) & M64
        assert step_noise.derive_step_seed(seed) == splitmix64(state)
    assert step_noise.derive_step_seed(10, seed_delta=31337) == 31347
    assert step_noise.derive_step_seed(M64, seed_delta=1) == 0
    assert step_noise.derive_step_seed(0) == 16174238450949927419  # pinned, version 1


def test_stream_is_the_derived_generator() -> None:
    sn = step_noise.StepNoise([7])
    like = torch.zeros(1, 4, 8, 8)
    g = torch.Generator().manual_seed(step_noise.derive_step_seed(7))
    assert torch.equal(sn(like), torch.randn(1, 4, 8, 8, generator=g))
    assert torch.equal(sn(like), torch.randn(1, 4, 8, 8, generator=g))  # advances
    nv = step_noise.StepNoise([7], source="nv")
    assert torch.equal(nv(like), PhiloxGenerator(step_noise.derive_step_seed(7)).randn((1, 4, 8, 8)))


def test_step_noise_differs_from_initial_noise() -> None:
    sn = noise.make_step_noise(3, 1)
    assert not torch.allclose(sn(torch.zeros(1, 4, 8, 8)), noise.make_noise((1, 4, 8, 8), 3))


@pytest.mark.parametrize("convention", ["comfy", "a1111", "a1111_nv", "diffusers"])
def test_image_k_equals_seed_alone(convention: str) -> None:
    kw = {"convention": convention, "subseed": 40, "subseed_strength": 0.3, "variations": [(90, 0.2)]}
    batch = noise.make_step_noise(5, 3, **kw)
    alone = noise.make_step_noise(5, 1, batch_index=[2], **kw)
    like_b, like_1 = torch.zeros(3, 4, 6, 6), torch.zeros(1, 4, 6, 6)
    for _ in range(4):
        assert torch.equal(batch(like_b)[2:3], alone(like_1))


@pytest.mark.parametrize("convention", ["comfy", "diffusers"])
def test_strength_endpoints(convention: str) -> None:
    like = torch.zeros(2, 4, 6, 6)
    plain = noise.make_step_noise(5, 2, convention=convention)
    zero = noise.make_step_noise(5, 2, convention=convention, subseed=40, subseed_strength=0.0)
    full = noise.make_step_noise(5, 2, convention=convention, subseed=40, subseed_strength=1.0)
    target = noise.make_step_noise(40, 2, convention=convention)
    for _ in range(3):
        assert torch.equal(plain(like), zero(like))
        assert torch.equal(full(like), target(like))


@pytest.mark.parametrize("convention", ["a1111", "a1111_nv"])
def test_a1111_stream_continues_the_initial_noise_generator(convention: str) -> None:
    """ENSD 0 (or None): image k's generator is the one that drew its initial noise, one draw in;
    ENSD != 0: a fresh generator seeded seed + k + ENSD. No variation mixes in (A1111 mixes none)."""
    like = torch.zeros(2, 4, 6, 6)
    nv = convention == "a1111_nv"

    def gen(seed: int):  # noqa: ANN202
        return PhiloxGenerator(seed) if nv else torch.Generator().manual_seed(seed)

    def draw(g) -> torch.Tensor:  # noqa: ANN001
        return g.randn((1, 4, 6, 6)) if nv else torch.randn(1, 4, 6, 6, generator=g)

    for delta in (None, 0):
        gens = [gen(5), gen(6)]
        initial = torch.cat([draw(g) for g in gens])
        assert torch.equal(initial, noise.make_noise((2, 4, 6, 6), 5, convention=convention))
        sn = noise.make_step_noise(5, 2, convention=convention, seed_delta=delta)
        for _ in range(3):
            assert torch.equal(sn(like), torch.cat([draw(g) for g in gens]))
    gens = [gen(5 + 31337), gen(6 + 31337)]
    sn = noise.make_step_noise(5, 2, convention=convention, seed_delta=31337)
    for _ in range(2):
        assert torch.equal(sn(like), torch.cat([draw(g) for g in gens]))
    # a variation keeps every image on the batch seed (A1111's all_seeds) and stays out of step noise
    varied = noise.make_step_noise(5, 2, convention=convention, subseed=40, subseed_strength=1.0, variations="9:1")
    plain = noise.make_step_noise(5, 1, convention=convention)
    for _ in range(2):
        out, want = varied(like), plain(like[:1])
        assert torch.equal(out[:1], want) and torch.equal(out[1:], want)


def test_step_plan() -> None:
    plan = noise.conventions.step_plan(5, 2, convention="diffusers", batch_index=[3, 1], subseed=40,
                                       subseed_strength=0.25, variations="9:0.5, 10:0")
    assert plan == step_noise.StepPlan(seeds=(8, 6), layers=(((43, 41), 0.25), ((12, 10), 0.5)), source="cpu")
    nv = noise.conventions.step_plan(5, 2, convention="a1111_nv", subseed=40, subseed_strength=0.25)
    assert nv == step_noise.StepPlan(seeds=(5, 5), layers=(), source="nv", a1111=True)
    with pytest.raises(ValueError, match="batch_index"):
        noise.conventions.step_plan(5, 2, batch_index=[1])


def test_half_strength_keeps_unit_variance() -> None:
    sn = noise.make_step_noise(1, 2, subseed=2, subseed_strength=0.5, variations="3:0.5")
    x = sn(torch.zeros(2, 4, 32, 32))
    assert abs(x.std().item() - 1.0) < 0.05


def test_dtype_device_and_5d() -> None:
    sn = step_noise.StepNoise([1, 2])
    out = sn(torch.zeros(2, 4, 8, 8, dtype=torch.bfloat16))
    assert out.dtype == torch.bfloat16 and out.device.type == "cpu"
    assert sn(torch.zeros(2, 4, 3, 5, 5)).shape == (2, 4, 3, 5, 5)
    assert step_noise.StepNoise([])(torch.zeros(0, 4, 8, 8)).shape == (0, 4, 8, 8)


def test_per_image_variation_seed_lists() -> None:
    like = torch.zeros(2, 4, 6, 6)
    shared = step_noise.StepNoise([1, 2], variations=[(9, 1.0)])
    explicit = step_noise.StepNoise([1, 2], variations=[([9, 9], 1.0)])
    out = shared(like)
    assert torch.equal(out, explicit(like))
    assert torch.equal(out[0], out[1])  # weight 1 on the same variation seed


def test_errors() -> None:
    with pytest.raises(ValueError, match="seeds"):
        step_noise.StepNoise([1, 2])(torch.zeros(3, 4, 8, 8))
    with pytest.raises(ValueError, match="subseeds"):
        step_noise.StepNoise([1, 2], subseed_strength=0.5)
    with pytest.raises(ValueError, match="source"):
        step_noise.StepNoise([1], source="gpu")
    with pytest.raises(ValueError, match="seeds"):
        step_noise.StepNoise([-1])
    with pytest.raises(ValueError, match=r"variations\[0\]"):
        step_noise.StepNoise([1, 2], variations=[([1], 0.5)])
    with pytest.raises(ValueError, match="subseed_strength"):
        noise.make_step_noise(1, 2, subseed_strength=2.0)
