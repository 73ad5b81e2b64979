"""Non-Gaussian noise types: statistics, spectra, determinism, any channel count and shape."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from latent_ops import noise
from latent_ops.noise import types as noise_types
from latent_ops.noise.philox import PhiloxGenerator

TYPES = ["gaussian", "uniform", "perlin", "pyramid", "pink", "brown", "blue", "violet", "offset"]


def src(seed: int = 0) -> noise_types.TorchSource:
    return noise_types.TorchSource(torch.Generator().manual_seed(seed))


def radial_power(x: torch.Tensor) -> tuple[float, float]:
    """(low-frequency, high-frequency) mean power of (B, C, H, W) noise."""
    p = torch.fft.fft2(x.double()).abs().pow(2).mean(dim=(0, 1))
    fy = torch.fft.fftfreq(x.shape[-2]).abs().view(-1, 1)
    fx = torch.fft.fftfreq(x.shape[-1]).abs().view(1, -1)
    r = torch.sqrt(fy**2 + fx**2)
    low = p[(r > 0) & (r < 0.1)].mean().item()
    high = p[r > 0.35].mean().item()
    return low, high


@pytest.mark.parametrize("name", TYPES)
def test_unit_stats(name: str) -> None:
    x = noise_types.get_type(name)(src(1), (2, 4, 64, 64))
    assert x.shape == (2, 4, 64, 64) and x.dtype == torch.float32
    assert abs(x.mean().item()) < 0.1
    assert abs(x.std().item() - 1.0) < 0.06


@pytest.mark.parametrize("name", TYPES)
@pytest.mark.parametrize("shape", [(1, 1, 9, 13), (2, 16, 5, 7), (3, 4, 8, 8), (1, 4, 3, 10, 6), (1, 4, 1, 1)])
def test_shape_agnostic_finite_and_deterministic(name: str, shape: tuple) -> None:
    fn = noise_types.get_type(name)
    a, b = fn(src(5), shape), fn(src(5), shape)
    assert a.shape == shape and torch.isfinite(a).all()
    assert torch.equal(a, b)
    if shape[-1] * shape[-2] > 1:
        assert not torch.equal(a, fn(src(6), shape))


@pytest.mark.parametrize("name", TYPES)
def test_philox_source(name: str) -> None:
    x = noise_types.get_type(name)(PhiloxGenerator(3), (1, 4, 16, 16))
    y = noise_types.get_type(name)(PhiloxGenerator(3), (1, 4, 16, 16))
    assert torch.equal(x, y) and torch.isfinite(x).all() and x.std() > 0.5


def test_coloured_spectral_slopes() -> None:
    shape = (2, 4, 64, 64)
    ratio = {}
    for name in ("brown", "pink", "gaussian", "blue", "violet"):
        low, high = radial_power(noise_types.get_type(name)(src(2), shape))
        ratio[name] = low / high
    assert ratio["brown"] > ratio["pink"] > ratio["gaussian"] > ratio["blue"] > ratio["violet"]
    assert ratio["pink"] > 3 and ratio["blue"] < 1 / 3
    assert 0.5 < ratio["gaussian"] < 2


def test_coloured_power_law_exponent() -> None:
    # PSD ~ 1/f**alpha: compare two radial bands an octave apart.
    x = noise_types.coloured(src(4), (4, 1, 128, 128), alpha=2.0).double()
    p = torch.fft.fft2(x).abs().pow(2).mean(dim=(0, 1))
    f = torch.sqrt(torch.fft.fftfreq(128).view(-1, 1) ** 2 + torch.fft.fftfreq(128).view(1, -1) ** 2)
    band = lambda lo: p[(f >= lo) & (f < lo * 1.2)].mean().item()  # noqa: E731
    slope = torch.log2(torch.tensor(band(0.05) / band(0.1))).item()
    assert 1.7 < slope < 2.3


def test_perlin_and_pyramid_are_smooth() -> None:
    def neighbour_corr(x: torch.Tensor) -> float:
        a, b = x[..., :, :-1].flatten(), x[..., :, 1:].flatten()
        return torch.corrcoef(torch.stack([a, b]))[0, 1].item()

    shape = (2, 4, 64, 64)
    assert abs(neighbour_corr(noise_types.gaussian(src(), shape))) < 0.05
    assert neighbour_corr(noise_types.perlin(src(), shape)) > 0.8
    assert neighbour_corr(noise_types.pyramid(src(), shape)) > 0.1  # two white levels dominate
    low, high = radial_power(noise_types.pyramid(src(), shape))
    assert low > 2 * high


def test_uniform_range_and_offset_channel_shift() -> None:
    u = noise_types.uniform(src(), (2, 4, 32, 32))
    assert u.abs().max() <= 3**0.5 + 1e-6
    o = noise_types.offset(src(), (8, 4, 32, 32), offset_strength=1.0)
    channel_means = o.mean(dim=(2, 3))
    assert channel_means.std() > 0.5  # each (sample, channel) is shifted by its own constant
    assert torch.equal(noise_types.offset(src(), (1, 4, 8, 8), offset_strength=0.0), noise_types.gaussian(src(), (1, 4, 8, 8)))


def test_per_sample_normalisation_is_batch_invariant() -> None:
    # a1111 draws images one by one; normalised types must not depend on the rest of the batch.
    x = noise.make_noise((3, 4, 16, 16), 9, convention="a1111", noise_type="pink")
    y = noise.make_noise((1, 4, 16, 16), 10, convention="a1111", noise_type="pink")
    assert torch.equal(x[1:2], y)
    per_sample_std = x.flatten(1).std(dim=1, unbiased=False)
    torch.testing.assert_close(per_sample_std, torch.ones(3), atol=1e-5, rtol=0)


def test_options_and_errors() -> None:
    a = noise.make_noise((1, 4, 32, 32), 0, noise_type="perlin", octaves=1, scale=2.0)
    b = noise.make_noise((1, 4, 32, 32), 0, noise_type="perlin")
    assert not torch.equal(a, b)
    with pytest.raises(ValueError, match="octaves"):
        noise_types.perlin(src(), (1, 4, 8, 8), octaves=0)
    with pytest.raises(ValueError, match="discount"):
        noise_types.pyramid(src(), (1, 4, 8, 8), discount=1.5)
    with pytest.raises(ValueError, match="alpha"):
        noise_types.coloured(src(), (1, 4, 8, 8), alpha=float("inf"))
    with pytest.raises(ValueError, match="offset_strength"):
        noise_types.offset(src(), (1, 4, 8, 8), offset_strength=-1.0)
    with pytest.raises(ValueError, match="noise_type"):
        noise_types.get_type("plaid")
    with pytest.raises(TypeError):
        noise.make_noise((1, 4, 8, 8), 0, noise_type="uniform", octaves=2)


def test_type_table_is_the_documented_one() -> None:
    # Adding, renaming or re-versioning a type must be deliberate (and re-recorded in test_noise_golden.py).
    names = ["gaussian", "uniform", "perlin", "pyramid", "pink", "brown", "blue", "violet", "coloured", "offset"]
    assert list(noise_types.NOISE_TYPES) == names
    assert noise_types.TYPE_VERSIONS == dict.fromkeys(names, 1)
    assert noise_types.COLOUR_ALPHAS == {"white": 0.0, "pink": 1.0, "brown": 2.0, "blue": -1.0, "violet": -2.0}


def test_uniform_and_offset_follow_their_formulas() -> None:
    g = torch.Generator().manual_seed(8)
    u = torch.rand((2, 3, 5, 7), generator=g).double().numpy()
    np.testing.assert_allclose(noise_types.uniform(src(8), (2, 3, 5, 7)).numpy(), (u - 0.5) * np.sqrt(12.0), rtol=0, atol=1e-6)
    g = torch.Generator().manual_seed(8)
    base = torch.randn((2, 3, 5, 7), generator=g).double().numpy()  # the plane draw comes first,
    const = torch.randn((2, 3, 1, 1), generator=g).double().numpy()  # then one value per (b, c)
    got = noise_types.offset(src(8), (2, 3, 5, 7), offset_strength=0.3).numpy()
    np.testing.assert_allclose(got, base + 0.3 * const, rtol=0, atol=1e-6)


@pytest.mark.parametrize("alpha", [1.0, 2.0, -1.0, 0.5])
def test_coloured_follows_its_formula(alpha: float) -> None:
    # white noise * |f|**(-alpha/2) in the 2-D spectrum, no DC, then per-sample mean 0 / std 1; numpy
    shape = (2, 3, 6, 9)
    white = torch.randn(shape, generator=torch.Generator().manual_seed(4)).double().numpy()
    f = np.hypot(np.fft.fftfreq(6)[:, None], np.fft.rfftfreq(9)[None, :])
    gain = np.zeros_like(f)
    gain[f > 0] = f[f > 0] ** (-alpha / 2)
    x = np.fft.irfft2(np.fft.rfft2(white) * gain, s=(6, 9)).reshape(2, -1)
    x = (x - x.mean(1, keepdims=True)) / x.std(1, keepdims=True)
    got = noise_types.coloured(src(4), shape, alpha=alpha).numpy()
    np.testing.assert_allclose(got, x.reshape(shape), rtol=0, atol=2e-6)
