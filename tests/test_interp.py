"""latent_ops.interp: endpoints, dtypes, guards (vs BlenderNeko's NaN), magnitude policies, granularity."""

from __future__ import annotations

import math

import pytest
import torch

from latent_ops import interp

MAGS = ("slerp", "lerp", "gaussian")
GRANS = ("sample", "pixel")


def bnk_slerp(val: float, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """BlenderNeko ComfyUI_Noise's slerp, written out from its description (no clamp, no fallback)."""
    dims = low.shape
    low = low.reshape(dims[0], -1)
    high = high.reshape(dims[0], -1)
    low_norm = low / torch.norm(low, dim=1, keepdim=True)
    high_norm = high / torch.norm(high, dim=1, keepdim=True)
    low_norm[low_norm != low_norm] = 0.0
    high_norm[high_norm != high_norm] = 0.0
    omega = torch.acos((low_norm * high_norm).sum(1))
    so = torch.sin(omega)
    res = (torch.sin((1.0 - val) * omega) / so).unsqueeze(1) * low + (torch.sin(val * omega) / so).unsqueeze(
        1
    ) * high
    return res.reshape(dims)


def ref_slerp_vec(a: torch.Tensor, b: torch.Tensor, t: float, magnitude: str) -> torch.Tensor:
    """Textbook slerp of two 1-D float64 vectors, generic (non-degenerate) case only."""
    na, nb = a.norm(), b.norm()
    ua, ub = a / na, b / nb
    omega = torch.acos(torch.clamp(ua @ ub, -1, 1))
    s0, s1 = torch.sin((1 - t) * omega) / torch.sin(omega), torch.sin(t * omega) / torch.sin(omega)
    if magnitude == "slerp":
        return s0 * a + s1 * b
    direction = s0 * ua + s1 * ub
    norm = (1 - t) * na + t * nb if magnitude == "lerp" else math.sqrt(a.numel())
    return direction * norm


@pytest.fixture
def pair(gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(3, 4, 6, 5, generator=gen), torch.randn(3, 4, 6, 5, generator=gen)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("gran", GRANS)
@pytest.mark.parametrize("mag", ("slerp", "lerp"))
def test_slerp_endpoints_exact_and_dtype_kept(pair, dtype, gran, mag) -> None:
    a, b = (x.to(dtype) for x in pair)
    for t, want in ((0.0, a), (1.0, b)):
        out = interp.slerp(a, b, t, granularity=gran, magnitude=mag)
        assert out.dtype == dtype and out.device == a.device and out.shape == a.shape
        assert torch.equal(out, want)
    assert interp.slerp(a, b, 0.5, granularity=gran, magnitude=mag).dtype == dtype


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
def test_lerp_endpoints_dtype_and_extrapolation(pair, dtype) -> None:
    a, b = (x.to(dtype) for x in pair)
    assert torch.equal(interp.lerp(a, b, 0.0), a) and torch.equal(interp.lerp(a, b, 1.0), b)
    assert interp.lerp(a, b, 0.3).dtype == dtype
    a32, b32 = pair
    torch.testing.assert_close(interp.lerp(a32, b32, 2.0), 2 * b32 - a32)
    torch.testing.assert_close(interp.lerp(a32, b32, -0.5), 1.5 * a32 - 0.5 * b32)


def test_slerp_matches_reference_and_bnk_on_generic_inputs(pair) -> None:
    a, b = pair
    for t in (0.2, 0.5, 0.9):
        torch.testing.assert_close(interp.slerp(a, b, t), bnk_slerp(t, a, b), rtol=1e-5, atol=1e-5)
        for mag in MAGS:
            got = interp.slerp(a, b, t, magnitude=mag)
            for i in range(a.shape[0]):
                want = ref_slerp_vec(a[i].flatten().double(), b[i].flatten().double(), t, mag)
                torch.testing.assert_close(got[i].flatten().double(), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mag", MAGS)
def test_pixel_granularity_equals_per_pixel_loop(pair, mag) -> None:
    a, b = pair
    t = torch.tensor([0.25, 0.5, 0.8])
    got = interp.slerp(a, b, t, granularity="pixel", magnitude=mag)
    for i in range(a.shape[0]):
        for h in range(a.shape[2]):
            for w in range(a.shape[3]):
                want = ref_slerp_vec(a[i, :, h, w].double(), b[i, :, h, w].double(), float(t[i]), mag)
                torch.testing.assert_close(got[i, :, h, w].double(), want, rtol=1e-5, atol=1e-5)


def test_per_sample_t_tensor_equals_separate_calls(pair) -> None:
    a, b = pair
    t = torch.tensor([0.0, 0.3, 1.0])
    for fn in (interp.lerp, interp.slerp):
        got = fn(a, b, t)
        for i in range(3):
            torch.testing.assert_close(got[i : i + 1], fn(a[i : i + 1], b[i : i + 1], float(t[i])))
    assert torch.equal(interp.slerp(a, b, t)[0], a[0]) and torch.equal(interp.slerp(a, b, t)[2], b[2])


def test_bnk_gives_nan_where_ours_is_finite(gen) -> None:
    a = torch.randn(2, 4, 8, 8, generator=gen)
    for b in (a.clone(), -a):
        assert torch.isnan(bnk_slerp(0.5, a, b).flatten(1)).all(1).any()  # the copies: whole samples NaN
        assert torch.isfinite(interp.slerp(a, b, 0.5)).all()


@pytest.mark.parametrize("gran", GRANS)
@pytest.mark.parametrize("mag", MAGS)
@pytest.mark.parametrize(
    "case", ["identical", "parallel", "antipodal", "antipodal_scaled", "zero_a", "zero_b", "zeros"]
)
def test_degenerate_inputs_finite_with_exact_endpoints(gen, gran, mag, case) -> None:
    x = torch.randn(2, 4, 5, 5, generator=gen)
    a, b = {
        "identical": (x, x.clone()),
        "parallel": (x, 3 * x),
        "antipodal": (x, -x),
        "antipodal_scaled": (x, -2 * x),
        "zero_a": (torch.zeros_like(x), x),
        "zero_b": (x, torch.zeros_like(x)),
        "zeros": (torch.zeros_like(x), torch.zeros_like(x)),
    }[case]
    for t in (0.0, 0.25, 0.5, 0.75, 1.0):
        assert torch.isfinite(interp.slerp(a, b, t, granularity=gran, magnitude=mag)).all()
    if mag != "gaussian":
        assert torch.equal(interp.slerp(a, b, 0.0, granularity=gran, magnitude=mag), a)
        assert torch.equal(interp.slerp(a, b, 1.0, granularity=gran, magnitude=mag), b)


def test_guard_values(gen) -> None:
    x = torch.randn(2, 4, 5, 5, generator=gen)
    zero = torch.zeros_like(x)
    for t in (0.25, 0.5, 0.75):
        torch.testing.assert_close(interp.slerp(x, x, t), x)  # identical: stays put
        torch.testing.assert_close(interp.slerp(x, 3 * x, t), (1 + 2 * t) * x)  # parallel: lerp
        torch.testing.assert_close(interp.slerp(x, -x, t), (1 - 2 * t) * x)  # antipodal: documented lerp
        torch.testing.assert_close(interp.slerp(zero, x, t), t * x)  # zero: linear fade along b
        torch.testing.assert_close(interp.slerp(zero, x, t, magnitude="lerp"), t * x)
        torch.testing.assert_close(interp.slerp(x, zero, t, granularity="pixel"), (1 - t) * x)
        g = interp.slerp(zero, x, t, magnitude="gaussian")  # direction of x at the Gaussian norm
        norms = x.flatten(1).norm(dim=1).reshape(2, 1, 1, 1)
        torch.testing.assert_close(g, x / norms * math.sqrt(x[0].numel()))
    assert torch.equal(interp.slerp(zero, x, 0.0, magnitude="gaussian"), zero)  # a zero vector stays zero


def test_magnitude_policies_on_independent_gaussians(gen) -> None:
    a = torch.randn(1, 4, 64, 64, generator=gen)
    b = torch.randn(1, 4, 64, 64, generator=gen)
    d = a.numel()
    assert abs(interp.slerp(a, b, 0.5).std().item() - 1.0) < 0.03
    assert abs(interp.lerp(a, b, 0.5).std().item() - math.sqrt(0.5)) < 0.03
    for t in (0.0, 0.3, 0.5, 1.0):
        g = interp.slerp(a, b, t, magnitude="gaussian")
        assert g.norm().item() == pytest.approx(math.sqrt(d), rel=1e-5)
        m = interp.slerp(a, b, t, magnitude="lerp")
        assert m.norm().item() == pytest.approx((1 - t) * a.norm().item() + t * b.norm().item(), rel=1e-5)
    gp = interp.slerp(a, b, 0.5, granularity="pixel", magnitude="gaussian")
    torch.testing.assert_close(gp.norm(dim=1), torch.full((1, 64, 64), 2.0))  # sqrt(C), C = 4


def test_slerp_weights_reproduce_slerp(pair) -> None:
    a, b = pair
    t = torch.tensor([0.1, 0.5, 0.7])
    for gran in GRANS:
        for mag in MAGS:
            wa, wb = interp.slerp_weights(a, b, t, granularity=gran, magnitude=mag)
            assert wa.ndim == a.ndim and wa.dtype == torch.float32
            torch.testing.assert_close(
                wa * a + wb * b, interp.slerp(a, b, t, granularity=gran, magnitude=mag)
            )


def test_pair_weights_nlerp_matches_comfy_latent_interpolate(pair) -> None:
    """spherical=False, magnitude="lerp" is ComfyUI's LatentInterpolate (with its keepdim fix)."""
    s1, s2 = pair
    ratio = 0.3  # LatentInterpolate's ratio weights samples1
    m1, m2 = s1.norm(dim=1, keepdim=True), s2.norm(dim=1, keepdim=True)
    u1, u2 = s1 / m1, s2 / m2
    mixed = u1 * ratio + u2 * (1 - ratio)
    want = mixed / mixed.norm(dim=1, keepdim=True) * (m1 * ratio + m2 * (1 - ratio))
    t = torch.tensor(1 - ratio)
    dot = (s1 * s2).sum(1, keepdim=True)
    wa, wb = interp.pair_weights(m1, m2, dot, t, spherical=False, magnitude="lerp", size=4)
    torch.testing.assert_close(wa * s1 + wb * s2, want, rtol=1e-5, atol=1e-5)


def test_deterministic_and_inputs_untouched(pair) -> None:
    a, b = pair
    a0, b0 = a.clone(), b.clone()
    assert torch.equal(interp.slerp(a, b, 0.4), interp.slerp(a, b, 0.4))
    interp.slerp(a, b, 0.4, granularity="pixel", magnitude="lerp")
    interp.lerp(a, b, 0.4)
    assert torch.equal(a, a0) and torch.equal(b, b0)


def test_errors(pair) -> None:
    a, b = pair
    with pytest.raises(ValueError, match=r"\(3, 4, 6, 5\) and \(3, 4, 6, 4\)"):
        interp.slerp(a, b[..., :4], 0.5)
    with pytest.raises(ValueError, match="same shape"):
        interp.lerp(a, b[:2], 0.5)
    for bad in (float("nan"), float("inf")):
        c = a.clone()
        c[1, 2, 3, 4] = bad
        with pytest.raises(ValueError, match="a contains NaN or Inf"):
            interp.slerp(c, b, 0.5)
        with pytest.raises(ValueError, match="b contains NaN or Inf"):
            interp.lerp(a, c, 0.5)
        with pytest.raises(ValueError, match="b contains NaN or Inf"):
            interp.slerp(a, c, 0.5, granularity="pixel")
    with pytest.raises(ValueError, match=r"t must lie in \[0, 1\]"):
        interp.slerp(a, b, 1.5)
    with pytest.raises(ValueError, match=r"\(3,\) tensor"):
        interp.slerp(a, b, torch.tensor([0.1, 0.2]))
    with pytest.raises(ValueError, match="t contains NaN"):
        interp.lerp(a, b, float("nan"))
    with pytest.raises(ValueError, match="granularity"):
        interp.slerp(a, b, 0.5, granularity="row")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="magnitude"):
        interp.slerp(a, b, 0.5, magnitude="unit")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="floating point"):
        interp.slerp(a.long(), b.long(), 0.5)


def test_match_batch() -> None:
    one, many = torch.zeros(1, 4, 2, 2), torch.ones(3, 4, 2, 2)
    a, b = interp.match_batch(one, many)
    assert a.shape == b.shape == (3, 4, 2, 2)
    b, a = interp.match_batch(many, one)
    assert a.shape == (3, 4, 2, 2)
    with pytest.raises(
        ValueError, match=r"samples1 and samples2 do not match: shapes \(2, 4, 2, 2\) and \(3, 4, 2, 2\)"
    ):
        interp.match_batch(torch.zeros(2, 4, 2, 2), many, ("samples1", "samples2"))
    with pytest.raises(ValueError, match=r"\(1, 16, 2, 2\)"):
        interp.match_batch(torch.zeros(1, 16, 2, 2), many)


def test_latent_dicts_keep_the_side_entries_of_the_result_batch(gen) -> None:
    mask = torch.rand(3, 1, 2, 2, generator=gen)
    many = {"samples": torch.randn(3, 4, 2, 2, generator=gen), "noise_mask": mask, "batch_index": [0, 1, 2]}
    one = {"samples": torch.randn(1, 4, 2, 2, generator=gen), "batch_index": [9]}
    for first, second in ((many, one), (one, many)):
        lerped = interp.lerp_latents(first, second, 0.25)
        slerped = interp.slerp_latents(first, second, 0.25, granularity="pixel", magnitude="gaussian")
        a, b = interp.match_batch(first["samples"], second["samples"])
        for out in (lerped, slerped):  # side entries come from the 3-item input, whichever side it is on
            assert out["batch_index"] == [0, 1, 2] and out["noise_mask"] is mask and out is not many
        assert torch.equal(lerped["samples"], interp.lerp(a, b, 0.25))
        assert torch.equal(slerped["samples"], interp.slerp(a, b, 0.25, granularity="pixel", magnitude="gaussian"))
    assert many["batch_index"] == [0, 1, 2] and one.keys() == {"samples", "batch_index"}  # inputs unchanged
    same = {"samples": torch.randn(1, 4, 2, 2, generator=gen), "batch_index": [4]}
    assert interp.lerp_latents(same, one, 0.5)["batch_index"] == [4]  # equal batches: samples1's entries


def test_latent_dicts_errors_name_the_inputs(gen) -> None:
    two, three = {"samples": torch.zeros(2, 4, 2, 2)}, {"samples": torch.zeros(3, 4, 2, 2)}
    with pytest.raises(ValueError, match=r"^samples1 and samples2 do not match: shapes \(2, 4, 2, 2\) and \(3,"):
        interp.lerp_latents(two, three, 0.5)
    with pytest.raises(ValueError, match=r"^slerp: t must lie in \[0, 1\]"):
        interp.slerp_latents(two, two, 1.5)
