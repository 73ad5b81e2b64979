"""Seed conventions of latent_ops.noise.conventions, each against a reference written out here."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from latent_ops import noise
from latent_ops.noise.philox import PhiloxGenerator


def comfy_prepare_noise(shape: tuple, seed: int, noise_inds: list | None = None, dtype=torch.float32):
    """ComfyUI comfy/sample.py:prepare_noise, written out with an explicit generator."""
    generator = torch.Generator().manual_seed(seed)
    if noise_inds is None:
        return torch.randn(shape, dtype=dtype, generator=generator, device="cpu")
    unique_inds, inverse = np.unique(noise_inds, return_inverse=True)
    noises = []
    for i in range(unique_inds[-1] + 1):
        n = torch.randn([1] + list(shape)[1:], dtype=dtype, generator=generator, device="cpu")
        if i in unique_inds:
            noises.append(n)
    return torch.cat([noises[i] for i in inverse], dim=0)


# AUTOMATIC1111 written out from stable-diffusion-webui itself (modules/processing.py process_images:
# all_seeds / all_subseeds; modules/rng.py: randn, slerp, ImageRNG.first), in float64 numpy, not from
# latent_ops.noise.variation. Shapes are one image's (C, H, W).


def a1111_randn(seed: int, shape: tuple, source: str) -> np.ndarray:
    """rng.randn(seed, shape): a fresh stream per call (CPU: torch's CPU generator; NV: Philox)."""
    if source == "NV":
        return PhiloxGenerator(seed).randn(shape).numpy()
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed)).numpy()


def a1111_slerp(val: float, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """rng.slerp(val, low, high) on (C, H, W): torch.norm(dim=1) runs along H, so each (c, w)
    column gets its own angle; a mean cosine above 0.9995 falls back to ``low*val + high*(1-val)``."""
    lo, hi = low.astype(np.float64), high.astype(np.float64)
    cos = ((lo / np.linalg.norm(lo, axis=1, keepdims=True)) * (hi / np.linalg.norm(hi, axis=1, keepdims=True))).sum(1)
    if cos.mean() > 0.9995:
        return lo * val + hi * (1 - val)
    omega = np.arccos(cos)  # (C, W)
    w_low, w_high = np.sin((1 - val) * omega) / np.sin(omega), np.sin(val * omega) / np.sin(omega)
    return w_low[:, None, :] * lo + w_high[:, None, :] * hi


def a1111_span(big: int, small: int) -> tuple[slice, slice]:
    """(source, destination) of ImageRNG.first's centred paste along one axis. Cropping keeps
    ``small + 2 * d`` cells with ``d = (big - small) // 2`` floored, so an odd excess leaves the
    last cell of the full-size noise uncovered (A1111's arithmetic, kept)."""
    d = (big - small) // 2
    if d >= 0:
        return slice(0, small), slice(d, d + small)
    return slice(-d, small + d), slice(0, small + 2 * d)


def a1111_first(shape, seed, subseed, strength, batch, source, resize_hw=(0, 0)) -> torch.Tensor:
    """process_images' seeds, then ImageRNG.first(); ``resize_hw`` in latent cells (A1111: pixels // 8)."""
    seeds = [seed + (i if strength == 0 else 0) for i in range(batch)]  # the main seed stays put
    subseeds = [subseed + i for i in range(batch)]
    c, h, w = shape
    rh, rw = resize_hw
    small = shape if rh <= 0 or rw <= 0 else (c, rh, rw)
    images = []
    for s, sub in zip(seeds, subseeds, strict=True):
        x = a1111_randn(s, small, source).astype(np.float64)
        if strength != 0:
            x = a1111_slerp(strength, x, a1111_randn(sub, small, source))
        if small != shape:  # paste centred into the full-size noise of the same seed, cropping
            full = a1111_randn(s, shape, source).astype(np.float64)
            (ys, yd), (xs, xd) = a1111_span(h, small[1]), a1111_span(w, small[2])
            full[:, yd, xd] = x[:, ys, xs]
            x = full
        images.append(torch.from_numpy(x.astype(np.float32)))
    return torch.stack(images)


# ---------------------------------------------------------------- comfy


@pytest.mark.parametrize("shape", [(2, 4, 8, 8), (3, 16, 5, 7), (1, 1, 1, 1), (2, 4, 3, 6, 6)])
def test_comfy_matches_prepare_noise(shape: tuple) -> None:
    assert torch.equal(noise.make_noise(shape, 123), comfy_prepare_noise(shape, 123))


@pytest.mark.parametrize("inds", [[0, 1], [3, 1], [2, 2], [5, 0]])
def test_comfy_batch_index_matches_prepare_noise(inds: list) -> None:
    shape = (2, 4, 5, 7)
    got = noise.make_noise(shape, 7, batch_index=inds)
    assert torch.equal(got, comfy_prepare_noise(shape, 7, inds))
    if inds[0] == inds[1]:
        assert torch.equal(got[0], got[1])


def test_comfy_batch_index_reproduces_full_batch_item() -> None:
    full = noise.make_noise((4, 4, 8, 8), 99)
    assert torch.equal(noise.make_noise((1, 4, 8, 8), 99, batch_index=[2])[0], full[2])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_comfy_dtypes_match_prepare_noise(dtype: torch.dtype) -> None:
    got = noise.make_noise((2, 4, 8, 8), 5, dtype=dtype)
    assert got.dtype == dtype
    assert torch.equal(got, comfy_prepare_noise((2, 4, 8, 8), 5, dtype=dtype))


def test_comfy_pinned_values() -> None:
    # torch 2.x CPU stream; guards against silent changes in torch or in our code.
    x = noise.make_noise((2, 4, 8, 8), 0).flatten()
    pinned = [-1.1258398294448853, -1.152360200881958, -0.2505785822868347, -0.4338788092136383]
    assert x[:4].tolist() == pinned
    assert x[256:258].tolist() == [-0.03937254101037979, -0.8014721870422363]


# ---------------------------------------------------------------- a1111


@pytest.mark.parametrize(("convention", "source"), [("a1111", "CPU"), ("a1111_nv", "NV")])
@pytest.mark.parametrize(
    ("strength", "resize"),
    [(0.0, (0, 0)), (0.3, (0, 0)), (1.0, (0, 0)), (0.0, (6, 4)), (0.4, (4, 12)), (0.0, (5, 11)), (0.3, (9, 3))],
)
def test_a1111_matches_reference(convention: str, source: str, strength: float, resize: tuple) -> None:
    shape = (4, 8, 8)
    ref = a1111_first(shape, 1000, 77, strength, 3, source, resize)
    got = noise.make_noise(
        (3, *shape), 1000, convention=convention, subseed=77, subseed_strength=strength, resize_from=resize
    )
    if strength == 0:
        assert torch.equal(got, ref)  # no arithmetic: the same draws, pasted the same way
    else:  # our float32 slerp against the float64 reference (exact bits: tests/test_noise_golden.py)
        torch.testing.assert_close(got, ref, atol=2e-6, rtol=2e-6)


def test_a1111_reference_paste_is_centred() -> None:
    # the reference's paste checked by hand: 2 x 7 seed noise in a 4 x 4 latent sits in rows 1-2;
    # its columns 2-4 cover columns 0-2 and column 3 keeps the full-size noise (A1111's odd crop)
    got = a1111_first((1, 4, 4), 3, 0, 0.0, 1, "CPU", (2, 7))[0, 0]
    small = torch.randn((1, 2, 7), generator=torch.Generator().manual_seed(3))[0]
    full = torch.randn((1, 4, 4), generator=torch.Generator().manual_seed(3))[0]
    assert torch.equal(got[1:3, :3], small[:, 2:5])
    assert torch.equal(got[[0, 3]], full[[0, 3]]) and torch.equal(got[:, 3], full[:, 3])


def test_a1111_cpu_image_equals_comfy_batch_one() -> None:
    got = noise.make_noise((3, 4, 8, 8), 10, convention="a1111")
    for i in range(3):
        assert torch.equal(got[i : i + 1], noise.make_noise((1, 4, 8, 8), 10 + i, convention="comfy"))


def test_a1111_nv_pinned_values() -> None:
    # A1111 documents these for seed 0, shape (3, 4) (image 0 of (1, 3, 2, 2) has 12 values).
    got = noise.make_noise((1, 3, 2, 2), 0, convention="a1111_nv").flatten()
    doc = [-0.92466259, -0.42534415, -2.6438457, 0.14518388, -0.12086647, -0.57972564]
    torch.testing.assert_close(got[:6], torch.tensor(doc), rtol=0, atol=5e-7)
    second = noise.make_noise((2, 4, 8, 8), 0, convention="a1111_nv").flatten()[256:258]
    assert second.tolist() == [-0.29627782106399536, 2.676448106765747]


def test_a1111_variation_quirk_seeds() -> None:
    assert noise.image_seeds(5, 3, convention="a1111") == [5, 6, 7]
    assert noise.image_seeds(5, 3, convention="a1111", subseed_strength=0.5) == [5, 5, 5]
    assert noise.image_seeds(5, 3, convention="comfy", subseed_strength=0.5) == [5, 6, 7]
    assert noise.image_seeds(5, 2, batch_index=[4, 4]) == [9, 9]
    assert noise.image_seeds(2**64 - 1, 2) == [2**64 - 1, 0]


def test_a1111_strength_one_is_subseed_noise_up_to_rounding() -> None:
    got = noise.make_noise((2, 4, 8, 8), 1, convention="a1111", subseed=50, subseed_strength=1.0)
    torch.testing.assert_close(got, noise.make_noise((2, 4, 8, 8), 50, convention="a1111"), atol=1e-5, rtol=0)


def test_gpu_source_is_refused() -> None:
    with pytest.raises(ValueError, match="a1111_nv"):
        noise.make_noise((1, 4, 8, 8), 0, convention="a1111_gpu")


# ---------------------------------------------------------------- diffusers


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_diffusers_matches_randn_tensor(dtype: torch.dtype) -> None:
    from diffusers.utils.torch_utils import randn_tensor

    shape = (3, 4, 9, 7)
    gens = [torch.Generator("cpu").manual_seed(40 + i) for i in range(3)]
    ref = randn_tensor(shape, generator=gens, device=torch.device("cpu"), dtype=dtype)
    got = noise.make_noise(shape, 40, convention="diffusers", dtype=dtype)
    assert got.dtype == dtype and torch.equal(got, ref)


# ---------------------------------------------------------------- variations and layout


@pytest.mark.parametrize("convention", ["comfy", "diffusers", "a1111", "a1111_nv"])
def test_strength_zero_and_one(convention: str) -> None:
    shape = (2, 4, 6, 6)
    base = noise.make_noise(shape, 3, convention=convention)
    assert torch.equal(noise.make_noise(shape, 3, convention=convention, subseed=9, subseed_strength=0.0), base)
    assert torch.equal(noise.make_noise(shape, 3, convention=convention, variations=[(9, 0.0)]), base)
    other = noise.make_noise(shape, 9, convention=convention)
    by_subseed = noise.make_noise(shape, 3, convention=convention, subseed=9, subseed_strength=1.0)
    by_list = noise.make_noise(shape, 3, convention=convention, variations=[(9, 1.0)])
    if convention.startswith("a1111"):  # A1111's slerp at 1.0 is exact only up to rounding
        torch.testing.assert_close(by_subseed, other, atol=1e-5, rtol=0)
        torch.testing.assert_close(by_list, other, atol=1e-5, rtol=0)
    else:
        assert torch.equal(by_subseed, other) and torch.equal(by_list, other)


def test_stacked_variations_order_and_string_form() -> None:
    shape = (2, 4, 8, 8)
    a = noise.make_noise(shape, 1, variations=[(2, 0.3), (3, 0.5)])
    b = noise.make_noise(shape, 1, variations="2:0.3, 3:0.5")
    c = noise.make_noise(shape, 1, variations=[(3, 0.5), (2, 0.3)])
    assert torch.equal(a, b) and not torch.allclose(a, c)
    assert abs(a.std().item() - 1.0) < 0.1


def test_variation_applies_to_every_noise_type() -> None:
    shape = (1, 4, 16, 16)
    for t in ("uniform", "perlin", "pink"):
        base = noise.make_noise(shape, 1, noise_type=t)
        mixed = noise.make_noise(shape, 1, noise_type=t, subseed=2, subseed_strength=0.5)
        assert not torch.equal(base, mixed)
        assert torch.equal(noise.make_noise(shape, 1, noise_type=t, subseed=2, subseed_strength=1.0),
                           noise.make_noise(shape, 2, noise_type=t))


def test_resize_from_pastes_centre() -> None:
    shape = (1, 4, 10, 12)
    small = noise.make_noise((1, 4, 4, 6), 8, convention="diffusers")
    full = noise.make_noise(shape, 8, convention="diffusers")
    got = noise.make_noise(shape, 8, convention="diffusers", resize_from=(4, 6))
    assert torch.equal(got[..., 3:7, 3:9], small)
    mask = torch.ones(10, 12, dtype=torch.bool)
    mask[3:7, 3:9] = False
    assert torch.equal(got[..., mask], full[..., mask])
    bigger = noise.make_noise(shape, 8, convention="diffusers", resize_from=(14, 12))
    assert torch.equal(bigger, noise.make_noise((1, 4, 14, 12), 8, convention="diffusers")[..., 2:12, :])
    assert torch.equal(noise.make_noise(shape, 8, resize_from=(0, 5)), noise.make_noise(shape, 8))


def test_device_dtype_and_determinism() -> None:
    a = noise.make_noise((2, 4, 8, 8), 11, convention="a1111", dtype=torch.bfloat16, device="cpu")
    assert a.dtype == torch.bfloat16 and a.device.type == "cpu"
    assert torch.equal(a, noise.make_noise((2, 4, 8, 8), 11, convention="a1111").bfloat16())
    before = torch.random.get_rng_state()
    noise.make_noise((2, 4, 8, 8), 11, noise_type="pyramid")
    assert torch.equal(before, torch.random.get_rng_state())  # global RNG untouched


def test_empty_batch() -> None:
    for c in noise.CONVENTIONS:
        assert noise.make_noise((0, 4, 8, 8), 1, convention=c).shape == (0, 4, 8, 8)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"shape": (4, 8, 8)}, "shape"),
        ({"shape": (1, 0, 8, 8)}, "shape"),
        ({"seed": -1}, "seed"),
        ({"seed": 2**64}, "seed"),
        ({"seed": 1.5}, "seed"),
        ({"subseed": -3}, "subseed"),
        ({"convention": "invoke"}, "convention"),
        ({"noise_type": "plaid"}, "noise_type"),
        ({"subseed_strength": 1.5}, "subseed_strength"),
        ({"variations": "12-0.3"}, "12-0.3"),
        ({"batch_index": [0]}, "batch_index"),
        ({"batch_index": [0, -1]}, "batch_index"),
        ({"dtype": torch.int32}, "dtype"),
        ({"resize_from": (4, 4, 4)}, "resize_from"),
    ],
)
def test_bad_input_raises(kwargs: dict, match: str) -> None:
    args = {"shape": (2, 4, 8, 8), "seed": 0, **kwargs}
    with pytest.raises(ValueError, match=match):
        noise.make_noise(args.pop("shape"), args.pop("seed"), **args)


def test_seed_bits_each_convention_uses() -> None:
    # torch CPU generators keep 32 bits of a seed (as ComfyUI, A1111 CPU and diffusers draw); Philox keeps 64
    shape, s = (2, 4, 6, 6), 1234
    for c in ("comfy", "a1111", "diffusers"):
        assert torch.equal(noise.make_noise(shape, s, convention=c), noise.make_noise(shape, s + 2**32, convention=c))
    nv = noise.make_noise(shape, s, convention="a1111_nv")
    assert not torch.equal(nv, noise.make_noise(shape, s + 2**32, convention="a1111_nv"))


def test_versions_cover_conventions() -> None:
    assert set(noise.NOISE_VERSIONS) == set(noise.CONVENTIONS)
    assert all(isinstance(v, int) and v >= 1 for v in noise.NOISE_VERSIONS.values())


def test_versions_flat_table() -> None:
    v = noise.versions()
    assert v["convention.comfy"] == noise.NOISE_VERSIONS["comfy"] and v["type.perlin"] >= 1
    assert {"variation", "step_noise", "philox"} <= set(v)
