"""The space nodes run as ComfyUI would call them and keep the LATENT conventions."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def blobs(gen) -> tuple[dict, torch.Tensor]:
    centers = torch.randn(3, 4, 4, 4, generator=gen) * 8
    x = centers.repeat_interleave(10, 0) + torch.randn(30, 4, 4, 4, generator=gen)
    mask = torch.ones(1, 1, 16, 16)
    return {"samples": x, "noise_mask": mask, "batch_index": list(range(100, 130))}, torch.arange(3).repeat_interleave(10)


def test_registered(registry) -> None:
    for node_id in ("LatentOpsProject", "LatentOpsCluster", "LatentOpsNearest", "LatentOpsMap"):
        assert registry[node_id].CATEGORY == "latent_ops/space"


def test_project_cluster_map_chain(registry, blobs) -> None:
    samples, truth = blobs
    before = samples["samples"].clone()
    proj, summary = registry["LatentOpsProject"]().execute(samples, "pca", 2, "flat", 2, 0, 30.0)
    assert proj.coords.shape == (30, 2) and "explained variance" in summary
    centroids, labels, k, text = registry["LatentOpsCluster"]().execute(samples, 0, 6, "flat", 2, 0, 2)
    assert k == 3 and centroids["samples"].shape == (3, 4, 4, 4) and "silhouette" in text
    assert "batch_index" not in centroids and centroids["noise_mask"] is samples["noise_mask"]
    assert torch.equal(torch.bincount(labels), torch.tensor([10, 10, 10]))
    for j in range(3):
        assert torch.allclose(centroids["samples"][j], samples["samples"][labels == j].mean(0), rtol=1e-5, atol=1e-5)
    assert torch.equal(samples["samples"], before) and "batch_index" in samples  # inputs untouched
    images = torch.rand(30, 8, 8, 3)
    (img,) = registry["LatentOpsMap"]().execute(proj, 20, 256, 0, images=images, labels=labels)
    assert img.shape == (1, 256, 256, 3) and img.dtype == torch.float32

    class FakeVAE:
        calls = 0

        def decode(self, z: torch.Tensor) -> torch.Tensor:
            FakeVAE.calls += len(z)
            return torch.full((len(z), 16, 16, 3), 0.5)

    (img2,) = registry["LatentOpsMap"]().execute(proj, 5, 256, 0, vae=FakeVAE(), samples=samples)
    assert 0 < FakeVAE.calls <= 5 and img2.shape == (1, 256, 256, 3)
    (dots,) = registry["LatentOpsMap"]().execute(proj, 10, 256, 0)
    assert dots.shape == (1, 256, 256, 3)


def test_nearest_node(registry, blobs) -> None:
    samples, truth = blobs
    query = {"samples": samples["samples"][[0, 15]]}
    out, text = registry["LatentOpsNearest"]().execute(query, samples, 3, "euclidean", False, "flat", 2)
    assert out["samples"].shape == (6, 4, 4, 4) and "batch_index" not in out
    assert torch.equal(out["samples"][0], samples["samples"][0]) and torch.equal(out["samples"][3], samples["samples"][15])
    assert text.splitlines()[1].startswith("query 0: 0 (0.0000)")
    same, _ = registry["LatentOpsNearest"]().execute(samples, samples, 2, "cosine", True, "channel_stats", 2)
    assert same["samples"].shape == (60, 4, 4, 4)


def test_node_errors_name_the_problem(registry, blobs) -> None:
    samples, _ = blobs
    with pytest.raises(ValueError, match="k=31"):
        registry["LatentOpsCluster"]().execute(samples, 31, 10, "flat", 2, 0, 1)
    with pytest.raises(ValueError, match="differ"):
        registry["LatentOpsNearest"]().execute({"samples": torch.zeros(1, 16, 4, 4)}, samples, 1, "euclidean", False, "flat", 2)


def test_seeds_are_never_folded_to_32_bits(registry, gen) -> None:
    x = {"samples": torch.randn(60, 4, 2, 2, generator=gen)}  # no structure: k-means depends on its seed
    run = registry["LatentOpsCluster"]().execute
    small = run(x, 5, 10, "flat", 2, 3, 1)[0]["samples"]
    assert torch.equal(small, run(x, 5, 10, "flat", 2, 3, 1)[0]["samples"])
    assert not torch.equal(small, run(x, 5, 10, "flat", 2, 3 + 2**32, 1)[0]["samples"])  # seed % 2**32 would agree
    proj, _ = registry["LatentOpsProject"]().execute(x, "pca", 2, "flat", 2, 2**64 - 1, 30.0)
    images = torch.rand(60, 8, 8, 3, generator=gen)
    draw = registry["LatentOpsMap"]().execute
    (a,) = draw(proj, 6, 256, 7, images=images)
    (b,) = draw(proj, 6, 256, 7 + 2**32, images=images)
    assert not torch.equal(a, b)
    for node in ("LatentOpsProject", "LatentOpsCluster", "LatentOpsMap"):
        assert registry[node].INPUT_TYPES()["required"]["seed"][1]["max"] == 2**64 - 1
    with pytest.raises(ValueError, match=r"seed must be in \[0, 2\*\*64\), got 18446744073709551616"):
        run(x, 5, 10, "flat", 2, 2**64, 1)
    with pytest.raises(ValueError, match="seed must be in"):
        draw(proj, 6, 256, -1, images=images)
