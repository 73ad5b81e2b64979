"""Nodes LatentOpsLerp / LatentOpsSlerp / LatentOpsWalk: dict keys survive, inputs untouched, clear errors."""

from __future__ import annotations

import latent_ops_nodes
import pytest
import torch
from latent_ops_nodes import interp as nodes

from latent_ops import interp
from latent_ops.walk import walk


def latent(gen: torch.Generator, batch: int, channels: int = 4, **extra: object) -> dict:
    return {"samples": torch.randn(batch, channels, 6, 5, generator=gen), **extra}


def snapshot(d: dict) -> dict:
    return {
        k: v.clone() if isinstance(v, torch.Tensor) else list(v) if isinstance(v, list) else v
        for k, v in d.items()
    }


def assert_unchanged(d: dict, snap: dict) -> None:
    assert d.keys() == snap.keys()
    for k, v in snap.items():
        assert torch.equal(d[k], v) if isinstance(v, torch.Tensor) else d[k] == v


def test_registered_with_display_names() -> None:
    for node_id, name in (
        ("LatentOpsLerp", "Latent Lerp"),
        ("LatentOpsSlerp", "Latent Slerp"),
        ("LatentOpsWalk", "Latent Walk"),
    ):
        assert latent_ops_nodes.NODE_CLASS_MAPPINGS[node_id] is getattr(nodes, node_id)
        assert latent_ops_nodes.NODE_DISPLAY_NAME_MAPPINGS[node_id] == name
        assert getattr(nodes, node_id).CATEGORY == "latent_ops/interpolate"


def test_lerp_and_slerp_keep_keys_and_inputs(gen) -> None:
    mask = torch.rand(2, 1, 6, 5, generator=gen)
    s1 = latent(gen, 2, noise_mask=mask, batch_index=[4, 5])
    s2 = latent(gen, 2, batch_index=[0, 1])
    snaps = snapshot(s1), snapshot(s2)
    (lerped,) = nodes.LatentOpsLerp().execute(s1, s2, 0.25)
    (slerped,) = nodes.LatentOpsSlerp().execute(s1, s2, 0.25, "pixel", "lerp")
    for out in (lerped, slerped):
        assert out is not s1 and out.keys() == s1.keys()
        assert out["noise_mask"] is mask and out["batch_index"] == [4, 5]
    torch.testing.assert_close(lerped["samples"], interp.lerp(s1["samples"], s2["samples"], 0.25))
    torch.testing.assert_close(
        slerped["samples"],
        interp.slerp(s1["samples"], s2["samples"], 0.25, granularity="pixel", magnitude="lerp"),
    )
    assert_unchanged(s1, snaps[0])
    assert_unchanged(s2, snaps[1])


def test_batch_of_one_is_broadcast(gen) -> None:
    one = latent(gen, 1, batch_index=[7])
    many = latent(gen, 3, batch_index=[0, 1, 2])
    (out,) = nodes.LatentOpsSlerp().execute(one, many, 0.5, "sample", "slerp")
    assert out["samples"].shape == (3, 4, 6, 5)
    assert out["batch_index"] == [0, 1, 2]  # side keys from the input whose batch the result has
    for i in range(3):
        torch.testing.assert_close(
            out["samples"][i], interp.slerp(one["samples"], many["samples"][i : i + 1], 0.5)[0]
        )
    (back,) = nodes.LatentOpsLerp().execute(many, one, 1.0)
    assert torch.equal(back["samples"], one["samples"].expand(3, -1, -1, -1))
    assert back["batch_index"] == [0, 1, 2]


@pytest.mark.parametrize("node", [nodes.LatentOpsLerp, nodes.LatentOpsSlerp])
def test_mismatch_names_inputs_and_shapes(gen, node) -> None:
    args = ("sample", "slerp") if node is nodes.LatentOpsSlerp else ()
    with pytest.raises(ValueError, match=r"samples1 and samples2 .*\(2, 4, 6, 5\) and \(3, 4, 6, 5\)"):
        node().execute(latent(gen, 2), latent(gen, 3), 0.5, *args)
    with pytest.raises(ValueError, match=r"samples1 and samples2 .*\(1, 4, 6, 5\) and \(1, 16, 6, 5\)"):
        node().execute(latent(gen, 1), latent(gen, 1, channels=16), 0.5, *args)


def test_walk_node(gen) -> None:
    mask = torch.rand(1, 1, 6, 5, generator=gen)
    kf = latent(gen, 3, noise_mask=mask, batch_index=[0, 1, 2])
    snap = snapshot(kf)
    (out,) = nodes.LatentOpsWalk().execute(kf, 9, "smoothstep", True, "slerp", "gaussian", 2.0)
    assert out["samples"].shape == (9, 4, 6, 5)
    assert "batch_index" not in out and out["noise_mask"] is mask
    torch.testing.assert_close(
        out["samples"], walk(kf["samples"], 9, easing="smoothstep", loop=True, magnitude="gaussian")
    )
    assert_unchanged(kf, snap)
    (plain,) = nodes.LatentOpsWalk().execute(
        {"samples": kf["samples"]}, 5, "linear", False, "lerp", "slerp", 2.0
    )
    assert plain.keys() == {"samples"} and torch.equal(plain["samples"][-1], kf["samples"][-1])


def test_walk_node_errors(gen) -> None:
    with pytest.raises(ValueError, match=r"^walk: needs at least 2 keyframes, got shape \(1, 4, 6, 5\)"):
        nodes.LatentOpsWalk().execute(latent(gen, 1), 8, "linear", False, "slerp", "slerp", 2.0)
    per_key = latent(gen, 3, noise_mask=torch.ones(3, 1, 6, 5))
    with pytest.raises(ValueError, match=r"per-keyframe noise_mask of shape \(3, 1, 6, 5\)"):
        nodes.LatentOpsWalk().execute(per_key, 8, "linear", False, "slerp", "slerp", 2.0)
