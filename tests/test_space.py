"""latent_ops.space.project: features and projections (PCA against a numpy SVD reference, t-SNE, errors)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from latent_ops import space


def _blobs(gen: torch.Generator, n_per: int = 20, k: int = 3, shape: tuple[int, ...] = (4, 8, 8), spread: float = 6.0) -> tuple[torch.Tensor, torch.Tensor]:
    centers = torch.randn(k, *shape, generator=gen) * spread
    x = centers.repeat_interleave(n_per, 0) + torch.randn(k * n_per, *shape, generator=gen)
    return x, torch.arange(k).repeat_interleave(n_per)


def test_features_flat_channel_stats_pooled(gen) -> None:
    x = torch.randn(5, 3, 6, 4, generator=gen)
    assert torch.equal(space.features(x, "flat"), x.reshape(5, -1))
    stats = space.features(x, "channel_stats")
    xn = x.numpy().reshape(5, 3, -1)
    ref = np.concatenate([xn.mean(2), xn.std(2)], axis=1)
    np.testing.assert_allclose(stats.numpy(), ref, rtol=1e-5, atol=1e-6)
    pooled = space.features(x, "pooled", pool=2)  # 6x4 -> 3x2 cells of 2x2 pixels
    ref = x.numpy().reshape(5, 3, 3, 2, 2, 2).mean(axis=(3, 5)).reshape(5, -1)
    np.testing.assert_allclose(pooled.numpy(), ref, rtol=1e-5, atol=1e-6)
    assert torch.equal(space.features(x, "pooled", pool=1), x.reshape(5, -1))
    assert space.features(x, "pooled", pool=100).shape == (5, 3)  # at least one cell


def test_features_low_precision_inputs(gen) -> None:
    x = torch.randn(4, 4, 8, 8, generator=gen)
    for dtype in (torch.float16, torch.bfloat16):
        f = space.features(x.to(dtype), "channel_stats")
        assert f.dtype == torch.float32
        assert torch.allclose(f, space.features(x.to(dtype).float(), "channel_stats"), rtol=1e-6, atol=1e-6)


def test_pca_projection_matches_numpy_svd(gen) -> None:
    x, _ = _blobs(gen, n_per=15, k=4)
    proj = space.project(x, "pca", 2)
    a = x.reshape(len(x), -1).double().numpy()
    ac = a - a.mean(0)
    _, s, vt = np.linalg.svd(ac, full_matrices=False)
    ref = ac @ vt[:2].T
    got = proj.coords.double().numpy()
    signs = np.sign((got * ref).sum(0))  # components are defined up to sign
    np.testing.assert_allclose(got, ref * signs, rtol=1e-4, atol=1e-3)
    ratio = s[:2] ** 2 / (s**2).sum()
    np.testing.assert_allclose(proj.explained_variance_ratio.numpy(), ratio, rtol=1e-4)
    assert proj.coords.dtype == torch.float32 and proj.coords.shape == (60, 2)
    assert proj.axis_labels[0] == f"PC1 ({100 * ratio[0]:.1f}% var)"
    assert "explained variance" in proj.summary()
    # the fitted PCA places new latents on the same axes
    again = proj.pca.transform(space.features(x[:3]))
    assert torch.allclose(again, proj.coords[:3], rtol=1e-4, atol=1e-4)


def test_pca_three_dims_and_features(gen) -> None:
    x, _ = _blobs(gen)
    for feature in space.FEATURES:
        proj = space.project(x, "pca", 3, feature=feature)
        assert proj.coords.shape == (60, 3) and proj.feature == feature
        ev = proj.explained_variance_ratio
        assert bool((ev[:-1] >= ev[1:]).all()) and float(ev.sum()) <= 1.0 + 1e-6


def test_projection_errors(gen) -> None:
    x = torch.randn(10, 4, 8, 8, generator=gen)
    with pytest.raises(ValueError, match="dims"):
        space.project(x, "pca", 4)
    with pytest.raises(ValueError, match="method"):
        space.project(x, "mds")
    with pytest.raises(ValueError, match="at least 3"):
        space.project(x[:2], "pca", 2)
    with pytest.raises(ValueError, match="at least 4"):
        space.project(x[:3], "tsne", 2)
    with pytest.raises(ValueError, match=r"\[N, C, H, W\]"):
        space.project(x.reshape(10, -1))
    bad = x.clone()
    bad[3, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        space.project(bad)
    with pytest.raises(ValueError, match="kind"):
        space.features(x, "histogram")
    with pytest.raises(ValueError, match="pool"):
        space.features(x, "pooled", pool=0)
    with pytest.raises(ValueError, match="fewer than dims"):
        space.project(torch.randn(10, 1, 2, 2, generator=gen), "pca", 3, feature="pooled", pool=2)


def test_tsne_separates_blobs_and_is_deterministic(gen) -> None:
    pytest.importorskip("sklearn")
    x, truth = _blobs(gen, n_per=12, k=3)
    a = space.project(x, "tsne", 2, seed=3, tsne_iter=400)
    b = space.project(x, "tsne", 2, seed=3, tsne_iter=400)
    assert torch.equal(a.coords, b.coords)
    assert a.explained_variance_ratio is None and a.axis_labels == ("t-SNE 1", "t-SNE 2")
    # every point's nearest neighbour in the embedding belongs to its own blob
    d = torch.cdist(a.coords, a.coords)
    d.fill_diagonal_(float("inf"))
    assert torch.equal(truth[d.argmin(1)], truth)


def test_tsne_random_state_is_the_seed_below_2_32_and_never_folded(gen, monkeypatch) -> None:
    manifold = pytest.importorskip("sklearn.manifold")
    states = []

    class Recorder:
        def __init__(self, n_components: int, random_state: int, **_: object) -> None:
            states.append(random_state)
            self.dims = n_components

        def fit_transform(self, x: np.ndarray) -> np.ndarray:
            return np.zeros((len(x), self.dims))

    monkeypatch.setattr(manifold, "TSNE", Recorder)
    x = torch.randn(8, 2, 2, 2, generator=gen)
    for seed in (0, 7, 2**32 - 1, 7 + 2**32, 2**64 - 1):
        space.project(x, "tsne", seed=seed)
    assert states[:3] == [0, 7, 2**32 - 1]  # what numpy/scikit-learn always got for these seeds
    assert states[3] != 7 and all(0 <= s < 2**32 for s in states)  # not seed % 2**32
    assert len(set(states)) == 5


@pytest.mark.parametrize("seed", [-1, 2**64, 1.5, True])
def test_project_refuses_a_bad_seed(gen, seed: object) -> None:
    with pytest.raises(ValueError, match="project: seed"):
        space.project(torch.randn(8, 2, 2, 2, generator=gen), "pca", seed=seed)


def test_missing_optional_packages_name_what_to_install(gen, monkeypatch) -> None:
    x = torch.randn(10, 4, 4, 4, generator=gen)
    monkeypatch.setitem(sys.modules, "sklearn.manifold", None)  # import now raises ImportError
    with pytest.raises(ImportError, match="scikit-learn"):
        space.project(x, "tsne")
    monkeypatch.setitem(sys.modules, "umap", None)
    with pytest.raises(ImportError, match="umap-learn"):
        space.project(x, "umap")
