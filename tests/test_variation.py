"""Variation mixing: A1111's per-column slerp, whole-sample slerp endpoints, seed:weight lists."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from latent_ops.noise import variation


def numpy_column_slerp(val: float, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """A1111's slerp in float64 numpy, one (c, w) column at a time (independent reference)."""
    out = np.empty_like(low)
    c_, _, w_ = low.shape
    cols = [(c, w) for c in range(c_) for w in range(w_)]
    dots = [float(np.dot(low[c, :, w] / np.linalg.norm(low[c, :, w]), high[c, :, w] / np.linalg.norm(high[c, :, w])))
            for c, w in cols]
    if np.mean(dots) > 0.9995:
        return low * val + high * (1 - val)
    for (c, w), d in zip(cols, dots, strict=True):
        om = np.arccos(d)
        out[c, :, w] = np.sin((1 - val) * om) / np.sin(om) * low[c, :, w] + np.sin(val * om) / np.sin(om) * high[c, :, w]
    return out


def test_slerp_a1111_matches_column_reference(gen: torch.Generator) -> None:
    low, high = torch.randn(4, 8, 6, generator=gen), torch.randn(4, 8, 6, generator=gen)
    for val in (0.1, 0.5, 0.9):
        got = variation.slerp_a1111(val, low, high)
        ref = numpy_column_slerp(val, low.double().numpy(), high.double().numpy())
        np.testing.assert_allclose(got.numpy(), ref, atol=2e-5)


def test_slerp_a1111_is_per_column_not_per_image(gen: torch.Generator) -> None:
    low, high = torch.randn(4, 8, 6, generator=gen), torch.randn(4, 8, 6, generator=gen)
    base = variation.slerp_a1111(0.5, low, high)
    high2 = high.clone()
    high2[1, :, 2] *= 3.0  # rescale one column: only that column's angle is unchanged, its output moves
    moved = variation.slerp_a1111(0.5, low, high2)
    changed = (moved - base).abs().amax(dim=1) > 1e-6
    assert changed[1, 2] and changed.sum() == 1


def test_slerp_a1111_swapped_lerp_fallback(gen: torch.Generator) -> None:
    low = torch.randn(4, 8, 6, generator=gen)
    high = low + 1e-4 * torch.randn(4, 8, 6, generator=gen)
    got = variation.slerp_a1111(0.25, low, high)
    assert torch.equal(got, low * 0.25 + high * 0.75)  # A1111 issue #3068: weights swapped


def test_slerp_a1111_shape_errors() -> None:
    with pytest.raises(ValueError, match="slerp_a1111"):
        variation.slerp_a1111(0.5, torch.zeros(1, 4, 8, 8), torch.zeros(1, 4, 8, 8))
    with pytest.raises(ValueError, match=r"\(4, 8, 8\)"):
        variation.slerp_a1111(0.5, torch.zeros(4, 8, 8), torch.zeros(4, 8, 7))


@pytest.mark.parametrize("method", ["slerp", "a1111"])
def test_mix_noise_endpoints_and_variance(method: str, gen: torch.Generator) -> None:
    a, b = torch.randn(2, 4, 32, 32, generator=gen), torch.randn(2, 4, 32, 32, generator=gen)
    assert torch.equal(variation.mix_noise(a, b, 0.0, method=method), a)
    one = variation.mix_noise(a, b, 1.0, method=method)
    if method == "slerp":
        assert torch.equal(one, b)
    else:
        torch.testing.assert_close(one, b, atol=1e-5, rtol=0)
    half = variation.mix_noise(a, b, 0.5, method=method)
    assert abs(half.std().item() - 1.0) < 0.05  # a lerp would give ~0.707
    assert half.dtype == a.dtype and half.shape == a.shape


def test_mix_noise_low_precision(gen: torch.Generator) -> None:
    a, b = torch.randn(1, 4, 8, 8, generator=gen).half(), torch.randn(1, 4, 8, 8, generator=gen).half()
    out = variation.mix_noise(a, b, 0.3)
    assert out.dtype == torch.float16 and torch.isfinite(out).all()


def test_mix_noise_errors() -> None:
    a = torch.zeros(1, 4, 8, 8)
    with pytest.raises(ValueError, match="differ"):
        variation.mix_noise(a, torch.zeros(1, 4, 8, 7), 0.5)
    with pytest.raises(ValueError, match="strength"):
        variation.mix_noise(a, a, -0.1)
    with pytest.raises(ValueError, match="method"):
        variation.mix_noise(a, a, 0.5, method="lerp")
    with pytest.raises(ValueError, match="a1111"):
        variation.mix_noise(torch.zeros(1, 4, 2, 8, 8), torch.zeros(1, 4, 2, 8, 8), 0.5, method="a1111")


def test_parse_variations() -> None:
    assert variation.parse_variations("123:0.2, 456:0.1") == [(123, 0.2), (456, 0.1)]
    assert variation.parse_variations(" 7 : 1 | 8:.5 ") == [(7, 1.0), (8, 0.5)]
    assert variation.parse_variations("   ") == []
    assert variation.parse_variations("18446744073709551615:1e-1") == [(2**64 - 1, 0.1)]


@pytest.mark.parametrize(
    ("text", "match"),
    [("123", "'123'"), ("a:0.1", "'a:0.1'"), ("1:0.2,,2:0.3", "''"), ("5:1.5", "weight"),
     ("18446744073709551616:0.1", "seed"), ("1:0.2; 2:0.3", "1:0.2; 2:0.3")],
)
def test_parse_variations_errors(text: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        variation.parse_variations(text)


def test_check_variations() -> None:
    assert variation.check_variations([(1, 0.5)]) == [(1, 0.5)]
    assert variation.check_variations("2:0.25") == [(2, 0.25)]
    with pytest.raises(ValueError, match=r"variations\[0\]"):
        variation.check_variations([(1, 0.5, 3)])
    with pytest.raises(ValueError, match=r"variations\[1\] weight"):
        variation.check_variations([(1, 0.5), (2, float("nan"))])
