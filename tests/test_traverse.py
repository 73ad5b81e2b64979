"""latent_ops.traverse: channel / PCA / direction sweeps against independent numpy computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from latent_ops import traverse as T
from latent_ops.space.pca import fit_pca


def _latent(gen: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=gen) * 0.7 + 0.3


def _cell(tr: T.Traversal, row: int, col: int) -> torch.Tensor:
    return tr.samples[row * tr.cols + col]


# ---- sweep positions ---------------------------------------------------------------------------


def test_positions_linspace_and_pingpong() -> None:
    np.testing.assert_allclose(T.sweep_positions(-2.0, 2.0, 5).numpy(), np.linspace(-2, 2, 5))
    pp = T.sweep_positions(-2.0, 2.0, 5, pingpong=True).numpy()
    np.testing.assert_allclose(pp, [-2, -1, 0, 1, 2, 1, 0, -1])
    # seamless cycle: every step (wrapping round to the start) has the same size, endpoints once
    steps = np.diff(np.append(pp, pp[0]))
    np.testing.assert_allclose(np.abs(steps), 1.0)
    assert (pp == -2).sum() == 1 and (pp == 2).sum() == 1
    assert T.sweep_positions(0.5, 0.5, 1, pingpong=True).tolist() == [0.5]
    assert T.sweep_positions(0.0, 1.0, 2, pingpong=True).tolist() == [0.0, 1.0]
    assert T.sweep_positions(1.0, -1.0, 3).tolist() == [1.0, 0.0, -1.0]


def test_quantiles_match_numpy(gen: torch.Generator) -> None:
    x = torch.randn(37, 3, generator=gen, dtype=torch.float64)
    q = torch.tensor([0.0, 0.1, 0.25, 0.5, 0.93, 1.0], dtype=torch.float64)
    ref = np.quantile(x.numpy(), q.numpy(), axis=0).T  # numpy linear interpolation
    np.testing.assert_allclose(T.quantiles(x, q).numpy(), ref, rtol=0, atol=1e-12)


# ---- channel traversal -------------------------------------------------------------------------


@pytest.mark.parametrize("channels", [1, 4, 16])
def test_channel_offset_adds_exactly_v_to_channel_k_only(gen: torch.Generator, channels: int) -> None:
    x = _latent(gen, 1, channels, 5, 6)
    dims = [channels - 1, 0]
    tr = T.traverse_channels(x, dims, mode="interval", lo=-1.5, hi=2.5, steps=5)
    assert tr.samples.shape == (2 * 5, channels, 5, 6) and (tr.rows, tr.cols) == (2, 5)
    np.testing.assert_allclose(tr.values.numpy(), np.tile(np.linspace(-1.5, 2.5, 5), (2, 1)), atol=1e-7)
    for r, k in enumerate(dims):
        for c in range(5):
            out = _cell(tr, r, c)
            v = tr.values[r, c]
            assert torch.equal(out[k], x[0, k] + v)
            others = [i for i in range(channels) if i != k]
            assert torch.equal(out[others], x[0, others])


def test_channel_replace_sets_value(gen: torch.Generator) -> None:
    x = _latent(gen, 1, 4, 3, 3)
    tr = T.traverse_channels(x, [2], mode="interval", lo=-1.0, hi=1.0, steps=3, op="replace")
    for c, v in enumerate([-1.0, 0.0, 1.0]):
        assert torch.equal(_cell(tr, 0, c)[2], torch.full((3, 3), v))
        assert torch.equal(_cell(tr, 0, c)[[0, 1, 3]], x[0, [0, 1, 3]])
    assert tr.labels == ["ch2 =-1.0", "ch2 =0.0", "ch2 =1.0"]


def test_std_mode_uses_reference_std(gen: torch.Generator) -> None:
    x = _latent(gen, 1, 4, 4, 4)
    ref = _latent(gen, 6, 4, 3, 5) * torch.tensor([1.0, 2.0, 0.5, 3.0]).view(1, 4, 1, 1)
    tr = T.traverse_channels(x, [1, 3], mode="std", lo=-2.0, hi=2.0, steps=5, reference=ref)
    r = ref.numpy()
    for row, k in enumerate([1, 3]):
        std = np.std(r[:, k].ravel(), ddof=1)
        np.testing.assert_allclose(tr.values[row].numpy(), np.linspace(-2, 2, 5) * std, rtol=1e-6)
    rep = T.traverse_channels(x, [3], mode="std", lo=-1.0, hi=1.0, steps=3, reference=ref, op="replace")
    mean, std = r[:, 3].mean(), np.std(r[:, 3].ravel(), ddof=1)
    np.testing.assert_allclose(rep.values[0].numpy(), [mean - std, mean, mean + std], rtol=1e-5)
    assert torch.allclose(_cell(rep, 0, 2)[3], torch.full((4, 4), float(mean + std)))
    assert tr.labels[:3] == ["ch1 -2.0σ", "ch1 -1.0σ", "ch1 +0.0σ"]
    # without a reference the latent itself is fitted
    own = T.traverse_channels(x, [0], mode="std", lo=1.0, hi=1.0, steps=1)
    np.testing.assert_allclose(own.values[0].numpy(), [np.std(x[0, 0].numpy(), ddof=1)], rtol=1e-6)


def test_quantile_mode_matches_numpy(gen: torch.Generator) -> None:
    x = _latent(gen, 1, 3, 4, 4)
    ref = _latent(gen, 5, 3, 4, 4) ** 3  # skewed
    q = np.linspace(0.05, 0.95, 4)
    rep = T.traverse_channels(x, [0], mode="quantile", lo=0.05, hi=0.95, steps=4, reference=ref, op="replace")
    off = T.traverse_channels(x, [0], mode="quantile", lo=0.05, hi=0.95, steps=4, reference=ref)
    vals = ref[:, 0].numpy().ravel().astype(np.float64)
    np.testing.assert_allclose(rep.values[0].numpy(), np.quantile(vals, q), rtol=1e-6)
    np.testing.assert_allclose(off.values[0].numpy(), np.quantile(vals, q) - np.median(vals), rtol=1e-5, atol=1e-6)
    assert rep.labels == ["ch0 q0.05", "ch0 q0.35", "ch0 q0.65", "ch0 q0.95"]


def test_batch_rows_are_item_major(gen: torch.Generator) -> None:
    x = _latent(gen, 2, 4, 3, 3)
    tr = T.traverse_channels(x, [0, 2], mode="interval", lo=0.0, hi=1.0, steps=2)
    assert tr.rows == 4 and tr.source.tolist() == [0, 0, 1, 1]
    assert tr.row_labels == ["#0 ch0", "#0 ch2", "#1 ch0", "#1 ch2"]
    assert len(tr.labels) == tr.samples.shape[0] == 8
    assert torch.equal(_cell(tr, 3, 1)[2], x[1, 2] + 1.0)  # item 1, channel 2, value 1
    assert torch.equal(_cell(tr, 3, 1)[0], x[1, 0])


def test_fp16_and_video_latents(gen: torch.Generator) -> None:
    x = _latent(gen, 1, 4, 4, 4)
    half = T.traverse_channels(x.half(), [1], mode="interval", lo=-1.0, hi=1.0, steps=3)
    full = T.traverse_channels(x.half().float(), [1], mode="interval", lo=-1.0, hi=1.0, steps=3)
    assert half.samples.dtype == torch.float16
    assert torch.equal(half.samples, full.samples.half())
    bf = T.traverse_pca(x.bfloat16(), components=2, steps=3)
    assert bf.samples.dtype == torch.bfloat16 and torch.isfinite(bf.samples.float()).all()
    video = _latent(gen, 1, 16, 2, 3, 3)  # [B, C, T, H, W]
    tr = T.traverse_channels(video, [5], mode="interval", lo=0.0, hi=2.0, steps=2)
    assert tr.samples.shape == (2, 16, 2, 3, 3)
    assert torch.equal(tr.samples[1, 5], video[0, 5] + 2.0)


def test_inputs_not_mutated(gen: torch.Generator) -> None:
    x, ref = _latent(gen, 1, 4, 3, 3), _latent(gen, 3, 4, 3, 3)
    x0, ref0 = x.clone(), ref.clone()
    T.traverse_channels(x, None, reference=ref, op="replace")
    T.traverse_pca(x, ref, components=2, op="replace")
    T.traverse_direction(x, ref[0] - ref[1], reference=ref, mode="std")
    assert torch.equal(x, x0) and torch.equal(ref, ref0)


# ---- PCA traversal -----------------------------------------------------------------------------


def test_pca_offset_moves_along_first_component(gen: torch.Generator) -> None:
    mix = torch.tensor([[3.0, 0.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.5, 0.0], [0.0, 0.0, 0.0, 0.2]])
    ref = torch.einsum("dc,nchw->ndhw", mix, torch.randn(8, 4, 5, 5, generator=gen))
    x = _latent(gen, 1, 4, 5, 5)
    tr = T.traverse_pca(x, ref, components=2, mode="std", lo=-2.0, hi=2.0, steps=5)
    pix = ref.movedim(1, -1).reshape(-1, 4)
    pca = fit_pca(pix)
    # independent check of the first direction: top eigenvector of the numpy covariance
    evals, evecs = np.linalg.eigh(np.cov(pix.numpy().astype(np.float64), rowvar=False))
    top = evecs[:, -1]
    assert abs(abs(float(np.dot(top, pca.components[0].numpy()))) - 1) < 1e-5
    for row in range(2):
        u = pca.components[row]
        std = float(pca.explained_variance[row].sqrt())
        np.testing.assert_allclose(tr.values[row].numpy(), np.linspace(-2, 2, 5) * std, rtol=1e-5)
        diff = (_cell(tr, row, 4) - x[0]).movedim(0, -1).reshape(-1, 4)  # every pixel moved by v * u
        assert torch.allclose(diff, (2 * std * u).expand_as(diff), atol=1e-5)
    np.testing.assert_allclose(float(tr.values[0, 4]) ** 2 / 4, evals[-1], rtol=1e-4)
    assert tr.row_labels[0].startswith("pc0 (") and tr.labels[0] == "pc0 -2.0σ"


def test_pca_replace_sets_coordinate(gen: torch.Generator) -> None:
    ref = _latent(gen, 4, 4, 4, 4)
    x = _latent(gen, 2, 4, 4, 4)
    tr = T.traverse_pca(x, ref, components=[1], mode="interval", lo=-1.0, hi=1.0, steps=3, op="replace")
    pca = fit_pca(ref.movedim(1, -1).reshape(-1, 4))
    for row in range(2):
        for c, v in enumerate([-1.0, 0.0, 1.0]):
            pix = _cell(tr, row, c).movedim(0, -1).reshape(-1, 4)
            coord = (pix - pca.mean) @ pca.components[1]
            assert torch.allclose(coord, torch.full_like(coord, v), atol=1e-5)
            other = (pix - pca.mean) @ pca.components[0]
            orig = (x[row].movedim(0, -1).reshape(-1, 4) - pca.mean) @ pca.components[0]
            assert torch.allclose(other, orig, atol=1e-5)


def test_pca_quantile_uses_projected_reference(gen: torch.Generator) -> None:
    ref = _latent(gen, 3, 3, 4, 4)
    tr = T.traverse_pca(ref[:1], ref, components=1, mode="quantile", lo=0.2, hi=0.8, steps=2, op="replace")
    pix = ref.movedim(1, -1).reshape(-1, 3)
    pca = fit_pca(pix)
    proj = ((pix - pca.mean) @ pca.components[0]).numpy().astype(np.float64)
    np.testing.assert_allclose(tr.values[0].numpy(), np.quantile(proj, [0.2, 0.8]), rtol=1e-5, atol=1e-6)


# ---- direction traversal -----------------------------------------------------------------------


def test_direction_is_linear_in_value(gen: torch.Generator) -> None:
    a, b = _latent(gen, 1, 4, 4, 4), _latent(gen, 1, 4, 4, 4)
    d = T.direction_between(a, b)
    tr = T.traverse_direction(b, d, lo=0.0, hi=1.0, steps=5, normalize=False)
    assert torch.allclose(tr.samples[-1], a[0], atol=1e-6)  # v = 1 walks from b to a
    for c, v in enumerate(np.linspace(0, 1, 5)):
        assert torch.allclose(tr.samples[c], b[0] + float(v) * d[0], atol=1e-6)
    assert tr.labels[2] == "dir +0.5"
    unit = T.traverse_direction(b, d[0], lo=0.0, hi=1.0, steps=2)  # [C, H, W] direction, RMS-normalised
    step = unit.samples[1] - unit.samples[0]
    assert abs(float(step.pow(2).mean().sqrt()) - 1.0) < 1e-5
    assert torch.allclose(step / step.norm(), d[0] / d[0].norm(), atol=1e-6)


def test_direction_std_mode_and_per_item_directions(gen: torch.Generator) -> None:
    ref = _latent(gen, 6, 2, 3, 3)
    x = _latent(gen, 2, 2, 3, 3)
    d = torch.stack([ref[0] - ref[1], ref[2] - ref[3]])
    tr = T.traverse_direction(x, d, mode="std", lo=-1.0, hi=1.0, steps=3, reference=ref)
    for row in range(2):
        u = (d[row] / d[row].norm()).numpy().ravel()
        std = np.std(ref.numpy().reshape(6, -1) @ u, ddof=1)
        np.testing.assert_allclose(tr.values[row].numpy(), [-std, 0, std], rtol=1e-5)
        moved = (_cell(tr, row, 2) - x[row]).numpy().ravel()
        np.testing.assert_allclose(moved, std * u, atol=1e-5)
    assert tr.row_labels == ["#0 dir", "#1 dir"]


def test_pingpong_labels_and_counts(gen: torch.Generator) -> None:
    x = _latent(gen, 1, 4, 2, 2)
    for tr in (
        T.traverse_channels(x, [0, 1], steps=4, pingpong=True),
        T.traverse_pca(x, components=2, steps=4, pingpong=True),
        T.traverse_direction(x, x[0], steps=4, pingpong=True),
    ):
        assert tr.cols == 6 and len(tr.labels) == tr.samples.shape[0] == tr.rows * 6
        assert len(tr.col_labels) == 6 and tr.values.shape == (tr.rows, 6)
        assert torch.allclose(tr.values[:, 1], tr.values[:, 5]) and not torch.allclose(tr.values[:, 0], tr.values[:, 3])


# ---- errors ------------------------------------------------------------------------------------


def test_errors_name_parameter_and_values(gen: torch.Generator) -> None:
    x = _latent(gen, 1, 4, 3, 3)
    with pytest.raises(ValueError, match=r"channels .*0\.\.3.*\[4\]"):
        T.traverse_channels(x, [4])
    with pytest.raises(ValueError, match="steps must be an int >= 1, got 0"):
        T.traverse_channels(x, [0], steps=0)
    with pytest.raises(ValueError, match="lo must be a finite number"):
        T.traverse_channels(x, [0], lo=float("nan"))
    with pytest.raises(ValueError, match=r"quantile mode needs lo and hi in \[0, 1\], got lo=-2"):
        T.traverse_channels(x, [0], mode="quantile")
    with pytest.raises(ValueError, match="latent contains NaN"):
        T.traverse_channels(torch.full((1, 4, 2, 2), float("nan")), [0])
    with pytest.raises(ValueError, match=r"reference has 3 channels, latent has 4"):
        T.traverse_channels(x, [0], reference=torch.zeros(2, 3, 3, 3))
    with pytest.raises(ValueError, match=r"direction of shape \(4, 3, 2\) does not fit latent \(1, 4, 3, 3\)"):
        T.traverse_direction(x, torch.ones(4, 3, 2))
    with pytest.raises(ValueError, match="direction is all zero"):
        T.traverse_direction(x, torch.zeros(1, 4, 3, 3))
    with pytest.raises(ValueError, match=r"direction a \(1, 4, 3, 3\) and b \(2, 4, 3, 3\)"):
        T.direction_between(x, torch.zeros(2, 4, 3, 3))
    with pytest.raises(ValueError, match="std mode needs at least 2 reference values"):
        T.traverse_direction(x, x, mode="std")
    with pytest.raises(ValueError, match=r"components must be in 1\.\.4"):
        T.traverse_pca(x, components=5)
    with pytest.raises(ValueError, match="op must be one of"):
        T.traverse_channels(x, [0], op="scale")


def test_parse_indices() -> None:
    assert T.parse_indices("all", 4) == [0, 1, 2, 3]
    assert T.parse_indices(" 0-2, 7 ", 8) == [0, 1, 2, 7]
    assert T.parse_indices("3-1", 4) == [3, 2, 1]
    with pytest.raises(ValueError, match=r"channels .*0\.\.3, got '9' in '0,9'"):
        T.parse_indices("0,9", 4)
    with pytest.raises(ValueError, match="cannot parse 'x'"):
        T.parse_indices("1,x", 4)
    assert T.parse_indices("0-3," * 256, 4) == [0, 1, 2, 3] * 256  # MAX_INDICES exactly
    with pytest.raises(ValueError, match=r"^traverse: the number of channels in .* is 1025, at most 1024"):
        T.parse_indices("0-3," * 256 + "0", 4)
    with pytest.raises(ValueError, match=r"^traverse: channels must be indices in 0\.\.3, got '0-100000000' in"):
        T.parse_indices("0-100000000", 4)  # refused before the range is expanded


def test_repeated_coordinates_repeat_their_rows(gen: torch.Generator) -> None:
    x = _latent(gen, 2, 4, 8, 8)
    for sweep in (T.traverse_channels, lambda x, idx, **kw: T.traverse_pca(x, components=idx, **kw)):
        for kw in ({"mode": "std"}, {"mode": "quantile", "lo": 0.1, "hi": 0.9}):
            twice, once = sweep(x, [1, 0, 1], **kw), sweep(x, [1, 0], **kw)
            assert torch.equal(twice.values[[0, 1, 3, 4]], once.values)
            assert torch.equal(twice.values[2], twice.values[0]) and torch.equal(twice.values[5], twice.values[3])
            s = twice.cols
            assert torch.equal(twice.samples[2 * s:3 * s], twice.samples[:s])


def test_check_range_and_indices() -> None:
    T.ranges.check_range(0.0, 1.0, 1, "quantile")  # the edges are allowed
    with pytest.raises(ValueError, match="steps must be an int >= 1, got True"):
        T.ranges.check_range(0.0, 1.0, True, "interval")
    with pytest.raises(ValueError, match=r"mode must be one of .*got 'lin'"):
        T.ranges.check_range(0.0, 1.0, 3, "lin")
    assert T.ranges.check_indices(None, 3, "channels") == [0, 1, 2]
    assert T.ranges.check_indices((2, 0), 3, "channels") == [2, 0]
    with pytest.raises(ValueError, match=r"components must be a non-empty list .*got \[\]"):
        T.ranges.check_indices([], 3, "components")


# ---- one dispatch for all three (what the node calls) -------------------------------------------


def test_dispatch_equals_each_traversal(gen: torch.Generator) -> None:
    x, ref = _latent(gen, 2, 4, 3, 3), _latent(gen, 5, 4, 2, 2)
    a, b = _latent(gen, 1, 4, 3, 3), _latent(gen, 1, 4, 3, 3)
    sweep = dict(range_mode="std", lo=-1.0, hi=2.0, steps=4, pingpong=True)
    plain = dict(mode="std", lo=-1.0, hi=2.0, steps=4, pingpong=True)
    cases = [
        (T.traverse(x, "channel", channels="3, 0-1", op="replace", reference=ref, **sweep),
         T.traverse_channels(x, [3, 0, 1], op="replace", reference=ref, **plain)),
        (T.traverse(x, "channel", **sweep), T.traverse_channels(x, None, **plain)),
        (T.traverse(x, "pca", channels=[1, 0], reference=ref, **sweep),
         T.traverse_pca(x, ref, components=[1, 0], **plain)),
        (T.traverse(x, "pca", **sweep), T.traverse_pca(x, components=4, **plain)),
        (T.traverse(x, "direction", direction_a=a, direction_b=b, normalize=False, **sweep),
         T.traverse_direction(x, a - b, normalize=False, **plain)),
    ]
    for got, want in cases:
        assert torch.equal(got.samples, want.samples) and got.labels == want.labels
        assert torch.equal(got.values, want.values) and (got.rows, got.cols) == (want.rows, want.cols)


def test_dispatch_direction_normalize_and_channels_ignored(gen: torch.Generator) -> None:
    x, a, b = _latent(gen, 1, 4, 3, 3), _latent(gen, 1, 4, 3, 3), _latent(gen, 1, 4, 3, 3)
    whole = T.traverse(x, "direction", channels="0", range_mode="interval", lo=0.0, hi=1.0, steps=2,
                       direction_a=a, direction_b=b, normalize=False)
    torch.testing.assert_close(whole.samples[1], (x + a - b)[0])  # v = 1 adds the whole a - b
    unit = T.traverse(x, "direction", range_mode="interval", lo=0.0, hi=1.0, steps=2, direction_a=a,
                      direction_b=b)
    step = unit.samples[1] - x[0]
    torch.testing.assert_close(step.pow(2).mean().sqrt(), torch.tensor(1.0))  # unit RMS per element


def test_dispatch_errors_name_inputs(gen: torch.Generator) -> None:
    x = _latent(gen, 2, 4, 3, 3)
    a = _latent(gen, 1, 4, 3, 3)
    with pytest.raises(ValueError, match=r"traverse: mode must be one of \['channel', 'pca', 'direction'\], got 'x'"):
        T.traverse(x, "x")
    with pytest.raises(ValueError, match=r"traverse: range_mode must be one of .*got 'sd'"):
        T.traverse(x, range_mode="sd")
    with pytest.raises(ValueError, match=r"traverse: op must be one of \['offset', 'replace'\], got 'add'"):
        T.traverse(x, op="add")
    with pytest.raises(ValueError, match=r"latent must be a float tensor \[B, C, \*spatial\], got \(4,\)"):
        T.traverse(torch.zeros(4))
    with pytest.raises(ValueError, match=r"reference \(2, 4, 3\) must have the channels of latent \(2, 4, 3, 3\)"):
        T.traverse(x, reference=torch.zeros(2, 4, 3))
    with pytest.raises(ValueError, match="needs both direction_a and direction_b"):
        T.traverse(x, "direction", direction_b=a)
    with pytest.raises(ValueError, match="op='replace' is not defined for mode 'direction'"):
        T.traverse(x, "direction", op="replace", direction_a=a, direction_b=a)
    with pytest.raises(ValueError, match=r"direction_a \(3, 4, 3, 3\) .* batch 1 or 2"):
        T.traverse(x, "direction", direction_a=a.repeat(3, 1, 1, 1), direction_b=a.repeat(3, 1, 1, 1))
    with pytest.raises(ValueError, match="cannot parse 'first'"):
        T.traverse(x, "pca", channels="first")


def test_repeat_per_item() -> None:
    assert T.repeat_per_item([3, 7], 2, 3) == [3, 3, 3, 7, 7, 7]
    masks = torch.arange(2.0).reshape(2, 1, 1, 1)
    assert T.repeat_per_item(masks, 2, 2).flatten().tolist() == [0.0, 0.0, 1.0, 1.0]
    single = torch.ones(1, 1, 2, 2)
    assert T.repeat_per_item(single, 2, 5) is single  # one mask applies to every output already
    assert T.repeat_per_item("kept", 2, 5) == "kept"
    assert T.repeat_per_item([1, 2, 3], 2, 5) == [1, 2, 3]  # not one entry per item: unchanged


def test_traverse_latent_keeps_side_entries_per_item(gen: torch.Generator) -> None:
    x = _latent(gen, 2, 4, 3, 3)
    mask = torch.rand(2, 1, 3, 3, generator=gen)
    samples = {"samples": x, "noise_mask": mask, "batch_index": [4, 9], "extra": "kept"}
    ref = {"samples": _latent(gen, 3, 4, 3, 3)}
    out, result = T.traverse_latent(samples, "channel", channels="1,2", range_mode="interval", lo=-1.0,
                                    hi=1.0, steps=3, reference=ref)
    want = T.traverse_channels(x, [1, 2], mode="interval", lo=-1.0, hi=1.0, steps=3, reference=ref["samples"])
    assert torch.equal(out["samples"], want.samples) and result.labels == want.labels
    assert out["batch_index"] == [4] * 6 + [9] * 6 and out["extra"] == "kept"
    assert torch.equal(out["noise_mask"], mask.repeat_interleave(6, dim=0))
    assert samples["samples"] is x and samples["batch_index"] == [4, 9]  # the input dict is unchanged
