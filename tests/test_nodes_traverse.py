"""Nodes LatentOpsTraverse and LatentOpsImageGrid: LATENT dict handling, wiring, errors."""

from __future__ import annotations

import pytest
import torch
from latent_ops_nodes.traverse import LatentOpsImageGrid, LatentOpsTraverse


def _latent(gen: torch.Generator, b: int = 1, c: int = 4) -> dict:
    return {"samples": torch.randn(b, c, 4, 4, generator=gen)}


def _run(samples: dict, **kw: object) -> tuple:
    args = dict(mode="channel", channels="all", range_mode="interval", lo=-1.0, hi=1.0, steps=3, op="offset",
                pingpong=False)
    args.update(kw)
    return LatentOpsTraverse().execute(samples, **args)


def test_channel_mode_keeps_keys_and_does_not_mutate(gen: torch.Generator) -> None:
    x = torch.randn(2, 4, 4, 4, generator=gen)
    mask = torch.rand(2, 1, 4, 4, generator=gen)
    inp = {"samples": x, "noise_mask": mask, "batch_index": [3, 7], "extra": "kept"}
    before = {"samples": x.clone(), "noise_mask": mask.clone(), "batch_index": [3, 7], "extra": "kept"}
    out, labels, row_labels, col_labels, columns = _run(inp, channels="1,3", steps=3)
    assert inp.keys() == before.keys() and torch.equal(inp["samples"], before["samples"])
    assert torch.equal(inp["noise_mask"], before["noise_mask"]) and inp["batch_index"] == [3, 7]
    assert set(out) == set(inp) and out is not inp and out["extra"] == "kept"
    n = 2 * 2 * 3  # items x channels x values
    assert out["samples"].shape == (n, 4, 4, 4) and columns == 3
    assert out["batch_index"] == [3] * 6 + [7] * 6  # each item's entry repeated for its outputs
    assert torch.equal(out["noise_mask"][:6], mask[:1].expand(6, 1, 4, 4))
    assert torch.equal(out["noise_mask"][6:], mask[1:].expand(6, 1, 4, 4))
    assert len(labels.split("\n")) == n and labels.split("\n")[0] == "#0 ch1 -1.0"
    assert row_labels.split("\n") == ["#0 ch1", "#0 ch3", "#1 ch1", "#1 ch3"]
    assert col_labels.split("\n") == ["-1.0", "+0.0", "+1.0"]
    assert torch.equal(out["samples"][5, 3], x[0, 3] + 1.0)


def test_single_mask_passes_through(gen: torch.Generator) -> None:
    inp = _latent(gen)
    inp["noise_mask"] = torch.ones(1, 1, 4, 4)
    out = _run(inp, channels="0")[0]
    assert out["noise_mask"] is inp["noise_mask"] and out["samples"].shape[0] == 3


def test_pca_and_std_with_reference(gen: torch.Generator) -> None:
    ref = _latent(gen, b=5)
    out, labels, rows, cols, columns = _run(_latent(gen), mode="pca", channels="0-1", range_mode="std",
                                            lo=-2.0, hi=2.0, steps=4, pingpong=True, reference=ref)
    assert out["samples"].shape == (2 * 6, 4, 4, 4) and columns == 6
    assert labels.split("\n")[0] == "pc0 -2.0σ" and rows.split("\n")[1].startswith("pc1 (")


def test_direction_mode(gen: torch.Generator) -> None:
    base, a, b = _latent(gen), _latent(gen), _latent(gen)
    out, labels, *_ = _run(base, mode="direction", lo=0.0, hi=1.0, steps=2, direction_a=a, direction_b=b)
    assert torch.allclose(out["samples"][1], base["samples"][0] + a["samples"][0] - b["samples"][0], atol=1e-6)
    assert labels == "dir +0.0\ndir +1.0"


def test_errors_name_inputs(gen: torch.Generator) -> None:
    """The node adds nothing to the library's messages: the host already names the node."""
    s = _latent(gen)
    with pytest.raises(ValueError, match=r"^traverse: reference \(2, 3, 4, 4\) .* latent \(1, 4, 4, 4\)"):
        _run(s, reference=_latent(gen, b=2, c=3))
    with pytest.raises(ValueError, match="^traverse: channels .*0\\.\\.3.*9"):
        _run(s, channels="0,9")
    with pytest.raises(ValueError, match="^traverse: mode 'direction' needs both direction_a and direction_b"):
        _run(s, mode="direction", direction_a=_latent(gen))
    with pytest.raises(ValueError, match=r"direction_a \(1, 4, 4, 4\) and direction_b \(1, 3, 4, 4\)"):
        _run(s, mode="direction", direction_a=_latent(gen), direction_b=_latent(gen, c=3))
    with pytest.raises(ValueError, match="op='replace' is not defined for mode 'direction'"):
        _run(s, mode="direction", op="replace", direction_a=_latent(gen), direction_b=_latent(gen))
    with pytest.raises(ValueError, match="^traverse: steps must be an int >= 1, got 0"):
        _run(s, steps=0)
    with pytest.raises(ValueError, match="^traverse: quantile mode needs lo and hi in"):
        _run(s, range_mode="quantile")
    with pytest.raises(ValueError, match=r"^traverse: mode must be one of \['channel', 'pca', 'direction'\]"):
        _run(s, mode="diagonal")


def test_node_is_one_library_call(gen: torch.Generator) -> None:
    """The node's outputs are traverse_latent's, joined one label per line (direction: normalize=False)."""
    from latent_ops import traverse

    base, a, b = _latent(gen, b=2), _latent(gen), _latent(gen)
    args = dict(range_mode="std", lo=-1.0, hi=1.5, steps=3, op="offset", pingpong=True)
    out, labels, rows, cols, columns = _run(base, mode="direction", channels="all", direction_a=a,
                                            direction_b=b, **args)
    want, result = traverse.traverse_latent(base, "direction", direction_a=a, direction_b=b, normalize=False,
                                            **args)
    assert torch.equal(out["samples"], want["samples"]) and columns == result.cols == 4
    assert (labels, rows, cols) == ("\n".join(result.labels), "\n".join(result.row_labels),
                                    "\n".join(result.col_labels))


def test_grid_node_takes_traverse_outputs(gen: torch.Generator) -> None:
    out, labels, rows, cols, columns = _run(_latent(gen, c=3), channels="0,2", steps=4)
    lat = out["samples"]  # stand-in decode: channels as colours, 4x4 -> 8x8
    images = torch.sigmoid(lat).repeat_interleave(2, -1).repeat_interleave(2, -2).movedim(1, -1)
    images0 = images.clone()
    (sheet,) = LatentOpsImageGrid().execute(images, columns, 2, labels=labels, row_labels=rows, col_labels=cols)
    assert torch.equal(images, images0)
    assert sheet.ndim == 4 and sheet.shape[0] == 1 and sheet.shape[-1] == 3 and sheet.dtype == torch.float32
    (plain,) = LatentOpsImageGrid().execute(images, columns, 2)
    assert plain.shape == (1, 2 + 2 * (16 + 2), 2 + 4 * (16 + 2), 3)
    assert sheet.shape[1] > plain.shape[1] and sheet.shape[2] > plain.shape[2]


def test_grid_node_comma_labels_and_errors(gen: torch.Generator) -> None:
    images = torch.rand(3, 8, 8, 3, generator=gen)
    (sheet,) = LatentOpsImageGrid().execute(images, 0, 1, labels="a, b, c", pad=0, font_size=9)
    assert sheet.shape[2] == 2 * 8  # near-square: 2 columns
    with pytest.raises(ValueError, match="^grid: labels has 2 entries, expected 3"):
        LatentOpsImageGrid().execute(images, 0, 1, labels="a\nb")
    with pytest.raises(ValueError, match="^grid: col_labels has 1 entries, expected 3"):
        LatentOpsImageGrid().execute(images, 3, 1, col_labels="x")
