"""latent_ops.walk: easing curves, walk == per-frame reference loop, endpoints, loops, constant angular speed."""

from __future__ import annotations

import math

import pytest
import torch

from latent_ops import interp
from latent_ops.walk import EASINGS, ease, walk, walk_latent, walk_weights


def angle(x: torch.Tensor, y: torch.Tensor) -> float:
    x, y = x.flatten().double(), y.flatten().double()
    return math.acos(max(-1.0, min(1.0, float(x @ y / (x.norm() * y.norm())))))


def reference_walk(
    kf: torch.Tensor, frames: int, easing: str, loop: bool, method: str, magnitude: str
) -> torch.Tensor:
    """One interp call per frame; frames spread evenly over the segments, eased within each."""
    k = kf.shape[0]
    segments = k if loop else k - 1
    den = frames if loop else frames - 1
    out = []
    for f in range(frames):
        seg = min(f * segments // den, segments - 1)
        u = f * segments / den - seg
        u = float(ease(torch.tensor(u), easing, 2.0))
        a, b = kf[seg : seg + 1], kf[(seg + 1) % k : (seg + 1) % k + 1]
        if method == "slerp":
            out.append(interp.slerp(a, b, u, magnitude=magnitude))
        else:
            out.append(interp.lerp(a, b, u))
    return torch.cat(out)


@pytest.fixture
def keyframes(gen: torch.Generator) -> torch.Tensor:
    return torch.randn(4, 4, 6, 6, generator=gen)


@pytest.mark.parametrize("easing", [e for e in EASINGS if e != "constant_angular"])
def test_ease_monotone_with_exact_endpoints(easing) -> None:
    u = torch.linspace(0, 1, 201)
    for power in (0.5, 2.0, 3.5):
        v = ease(u, easing, power)
        assert v[0].item() == 0.0 and v[-1].item() == 1.0
        assert (v.diff() >= 0).all() and (v >= 0).all() and (v <= 1).all()


def test_ease_values() -> None:
    u = torch.tensor([0.25, 0.5])
    torch.testing.assert_close(ease(u, "smoothstep"), torch.tensor([0.15625, 0.5]))
    torch.testing.assert_close(ease(u, "cosine"), torch.tensor([(1 - math.cos(math.pi / 4)) / 2, 0.5]))
    torch.testing.assert_close(ease(u, "ease_in", 3.0), u**3)
    torch.testing.assert_close(ease(u, "ease_out", 2.0), torch.tensor([1 - 0.75**2, 0.75]))
    torch.testing.assert_close(ease(u, "ease_in_out", 2.0), torch.tensor([0.125, 0.5]))
    torch.testing.assert_close(ease(u, "linear"), u)
    with pytest.raises(ValueError, match="easing"):
        ease(u, "bounce")
    with pytest.raises(ValueError, match="power"):
        ease(u, "ease_in", 0.0)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ease(torch.tensor([1.5]), "linear")


@pytest.mark.parametrize(
    ("k", "frames", "easing", "loop", "method", "magnitude"),
    [
        (2, 9, "linear", False, "slerp", "slerp"),
        (3, 10, "smoothstep", False, "slerp", "lerp"),
        (4, 13, "cosine", True, "slerp", "gaussian"),
        (4, 7, "ease_in_out", False, "slerp", "slerp"),
        (3, 8, "ease_out", True, "lerp", "slerp"),
        (2, 5, "ease_in", False, "lerp", "slerp"),
    ],
)
def test_walk_equals_per_frame_reference(keyframes, k, frames, easing, loop, method, magnitude) -> None:
    kf = keyframes[:k]
    got = walk(kf, frames, easing=easing, loop=loop, method=method, magnitude=magnitude)
    want = reference_walk(kf, frames, easing, loop, method, magnitude)
    assert got.shape == (frames, *kf.shape[1:])
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    weights = walk_weights(kf, frames, easing=easing, loop=loop, method=method, magnitude=magnitude)
    assert weights.shape == (frames, k) and ((weights != 0).sum(1) <= 2).all()
    torch.testing.assert_close((weights @ kf.flatten(1)).reshape(got.shape), got, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("easing", EASINGS)
def test_walk_keyframes_exact(keyframes, dtype, easing) -> None:
    kf = keyframes.to(dtype)
    out = walk(kf, 10, easing=easing)  # 3 segments, 9 steps: frames 0, 3, 6, 9 are keyframes
    assert out.dtype == dtype
    assert torch.equal(out[0], kf[0]) and torch.equal(out[-1], kf[-1])
    if easing != "constant_angular":
        assert torch.equal(out[3], kf[1]) and torch.equal(out[6], kf[2])
    looped = walk(kf, 8, easing=easing, loop=True)  # 4 segments: frames 0, 2, 4, 6 are keyframes
    assert torch.equal(looped[0], kf[0])
    if easing != "constant_angular":
        assert all(torch.equal(looped[2 * i], kf[i]) for i in range(4))


def test_loop_is_seamless(gen) -> None:
    kf = torch.randn(3, 4, 8, 8, generator=gen)
    out = walk(kf, 12, loop=True, magnitude="gaussian")
    assert not torch.equal(out[-1], out[0])  # keyframe 0 is not repeated at the end
    # a loop is the open walk through k0, k1, k2, k0 without its last frame
    closed = walk(torch.cat((kf, kf[:1])), 13, magnitude="gaussian")
    torch.testing.assert_close(out, closed[:-1])
    steps = [angle(out[i], out[(i + 1) % 12]) for i in range(12)]
    wrap_segment = steps[8:]  # frames 8..11 and the wrap 11 -> 0 lie on the segment k2 -> k0
    assert max(wrap_segment) - min(wrap_segment) < 1e-4


def test_constant_angular_speed(gen) -> None:
    a = torch.randn(1, 4, 8, 8, generator=gen)
    b = a + 0.15 * torch.randn(1, 4, 8, 8, generator=gen)  # small angle
    c = torch.randn(1, 4, 8, 8, generator=gen)  # large angle from b
    kf = torch.cat((a, b, c))
    frames = 25
    straddle = int(angle(a, b) / ((angle(a, b) + angle(b, c)) / (frames - 1)))  # the pair around b

    def uneven(steps: torch.Tensor, step: float) -> torch.Tensor:
        keep = [i for i in range(frames - 1) if i != straddle]
        return (steps[keep] - step).abs().max() / step

    out = walk(kf, frames, easing="constant_angular", magnitude="gaussian")
    steps = torch.tensor([angle(out[i], out[i + 1]) for i in range(frames - 1)])
    assert uneven(steps, (angle(a, b) + angle(b, c)) / (frames - 1)) < 1e-3
    assert steps[straddle] <= steps.max() + 1e-6
    linear = walk(kf, frames, magnitude="gaussian")
    lsteps = torch.tensor([angle(linear[i], linear[i + 1]) for i in range(frames - 1)])
    assert lsteps.max() / lsteps.min() > 3  # frames spread by index are uneven here
    exact = walk(kf, frames, easing="constant_angular")
    assert torch.equal(exact[0], kf[0]) and torch.equal(exact[-1], kf[-1])
    # method="lerp": frames spread by Euclidean length, so steps are equal in distance
    out_lerp = walk(kf, frames, easing="constant_angular", method="lerp")
    dist = (out_lerp[1:] - out_lerp[:-1]).flatten(1).norm(dim=1).double()
    length = float((b - a).norm() + (c - b).norm())
    straddle = int(float((b - a).norm()) / (length / (frames - 1)))
    assert uneven(dist, length / (frames - 1)) < 1e-3


def test_walk_out_and_inputs_untouched(keyframes) -> None:
    kf0 = keyframes.clone()
    buf = torch.empty(16, *keyframes.shape[1:])
    res = walk(keyframes, 16, easing="cosine", out=buf)
    assert res is buf
    torch.testing.assert_close(buf, walk(keyframes, 16, easing="cosine"))
    assert torch.equal(keyframes, kf0)
    half = torch.empty(16, *keyframes.shape[1:], dtype=torch.float16)
    walk(keyframes.half(), 16, out=half)
    torch.testing.assert_close(half, walk(keyframes.half(), 16))
    with pytest.raises(ValueError, match="out must be"):
        walk(keyframes, 15, out=buf)
    with pytest.raises(ValueError, match="out must be"):
        walk(keyframes, 16, out=buf.double())


def test_walk_degenerate_keyframes_finite(gen) -> None:
    x = torch.randn(4, 5, 5, generator=gen)
    kf = torch.stack((x, x, -x, torch.zeros_like(x), 2 * x))
    for magnitude in ("slerp", "lerp", "gaussian"):
        for easing in ("linear", "constant_angular"):
            out = walk(kf, 17, easing=easing, magnitude=magnitude, loop=True)
            assert torch.isfinite(out).all()
    same = walk(torch.stack((x, x)), 5, easing="constant_angular")  # zero total angle: spread by index
    torch.testing.assert_close(same, x.expand(5, -1, -1, -1))


def test_walk_errors(keyframes) -> None:
    with pytest.raises(ValueError, match="at least 2 keyframes"):
        walk(keyframes[:1], 8)
    with pytest.raises(ValueError, match="frames must be an int >= 2"):
        walk(keyframes, 1)
    with pytest.raises(ValueError, match="easing"):
        walk(keyframes, 8, easing="bounce")
    with pytest.raises(ValueError, match="method"):
        walk(keyframes, 8, method="cubic")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="magnitude"):
        walk(keyframes, 8, magnitude="unit")  # type: ignore[arg-type]
    bad = keyframes.clone()
    bad[2, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="keyframes contains NaN or Inf"):
        walk(bad, 8)


def test_walk_latent_dict(keyframes) -> None:
    mask = torch.rand(1, 1, *keyframes.shape[2:])
    kf = {"samples": keyframes, "noise_mask": mask, "batch_index": [5, 6, 7, 8][: keyframes.shape[0]], "x": 1}
    out = walk_latent(kf, 9, easing="ease_in", loop=True, method="lerp", magnitude="lerp", power=3.0)
    assert set(out) == {"samples", "noise_mask", "x"} and out["noise_mask"] is mask  # frames are new samples
    assert torch.equal(out["samples"], walk(keyframes, 9, easing="ease_in", loop=True, method="lerp",
                                            magnitude="lerp", power=3.0))
    assert "batch_index" in kf and kf["samples"] is keyframes  # the input dict is unchanged
    flat_mask = {"samples": keyframes, "noise_mask": torch.ones(*keyframes.shape[2:])}  # [H, W]: one mask
    assert walk_latent(flat_mask, 4)["noise_mask"] is flat_mask["noise_mask"]


def test_walk_latent_errors(keyframes) -> None:
    per_key = {"samples": keyframes, "noise_mask": torch.ones(keyframes.shape[0], 1, *keyframes.shape[2:])}
    with pytest.raises(ValueError, match=r"^walk: keyframes has a per-keyframe noise_mask of shape \(\d+, 1,"):
        walk_latent(per_key, 8)
    with pytest.raises(ValueError, match=r"^walk: needs at least 2 keyframes, got shape \(1,"):
        walk_latent({"samples": keyframes[:1]}, 8)
