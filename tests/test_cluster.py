"""latent_ops.space.cluster: k-means, silhouette (against brute-force references), purity, centroids."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from latent_ops import seeds
from latent_ops.space import cluster


def _blobs(gen: torch.Generator, n_per: int = 25, k: int = 4, shape: tuple[int, ...] = (4, 4, 4), spread: float = 8.0) -> tuple[torch.Tensor, torch.Tensor]:
    centers = torch.randn(k, *shape, generator=gen) * spread
    x = centers.repeat_interleave(n_per, 0) + torch.randn(k * n_per, *shape, generator=gen)
    return x, torch.arange(k).repeat_interleave(n_per)


def _silhouette_reference(x: np.ndarray, labels: np.ndarray) -> float:
    """Rousseeuw's definition written out with loops over points."""
    n = len(x)
    d = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))
    scores = []
    for i in range(n):
        own = labels == labels[i]
        if own.sum() == 1:
            scores.append(0.0)
            continue
        a = d[i, own].sum() / (own.sum() - 1)
        b = min(d[i, labels == c].mean() for c in np.unique(labels) if c != labels[i])
        scores.append((b - a) / max(a, b))
    return float(np.mean(scores))


def test_sq_distances_against_brute_force(gen) -> None:
    x, c = torch.randn(50, 7, generator=gen), torch.randn(5, 7, generator=gen)
    ref = ((x[:, None, :].double() - c[None].double()) ** 2).sum(-1)
    assert torch.allclose(cluster.sq_distances(x, c, chunk=8).double(), ref, rtol=1e-4, atol=1e-4)


def test_kmeans_recovers_planted_clusters(gen) -> None:
    x, truth = _blobs(gen)
    fit = cluster.kmeans(x.flatten(1), 4, seed=0, chunk=16)
    assert cluster.purity(fit.labels, truth) == 1.0
    assert cluster.purity(truth, fit.labels) == 1.0  # and no planted cluster is split
    assert cluster.adjusted_rand_index(fit.labels, truth) == pytest.approx(1.0)
    # each center is the mean of its members
    for j in range(4):
        assert torch.allclose(fit.centers[j], x.flatten(1)[fit.labels == j].mean(0), rtol=1e-4, atol=1e-4)
    inertia = ((x.flatten(1) - fit.centers[fit.labels]) ** 2).sum()
    assert fit.inertia == pytest.approx(float(inertia), rel=1e-4)


def test_kmeans_is_deterministic_for_a_seed(gen) -> None:
    x = torch.randn(300, 6, generator=gen)  # no structure: the result depends on the init
    a = cluster.kmeans(x, 7, seed=11, n_init=2)
    b = cluster.kmeans(x, 7, seed=11, n_init=2)
    assert torch.equal(a.labels, b.labels) and torch.equal(a.centers, b.centers)
    c = cluster.kmeans(x, 7, seed=12, n_init=2)
    assert not torch.equal(a.centers, c.centers)


def test_seeds_use_all_64_bits(gen) -> None:
    x = torch.randn(300, 6, generator=gen)
    small = cluster.kmeans(x, 7, seed=11, n_init=1, callback=lambda *_: None)
    big = cluster.kmeans(x, 7, seed=11 + 2**32, n_init=1, callback=lambda *_: None)
    assert not torch.equal(small.centers, big.centers)  # seed % 2**32 would make them equal
    assert cluster.kmeans(x, 7, seed=2**64 - 1, n_init=1, callback=lambda *_: None).centers.shape == (7, 6)
    xs, truth = _blobs(gen, n_per=100, k=3)
    xf = xs.flatten(1)
    a = cluster.silhouette_score(xf, truth, sample_size=50, seed=3)
    assert a != cluster.silhouette_score(xf, truth, sample_size=50, seed=3 + 2**32)


def test_seed_is_the_generator_seed(gen) -> None:
    # k-means++ picks its first center with seeds.cpu_generator(seed): manual_seed(seed) below 2**32
    x = torch.randn(50, 3, generator=gen)
    for seed, torch_seed in ((4, 4), (2**32 - 1, 2**32 - 1), (4 + 2**32, seeds.seed32(4 + 2**32))):
        first = int(torch.randint(50, (1,), generator=torch.Generator().manual_seed(torch_seed)))
        fit = cluster.kmeans(x, 1, seed=seed, n_init=1, callback=lambda *_: None)
        init = cluster.kmeans_plus_plus(x - x.mean(0), 1, seeds.cpu_generator(seed))
        assert int(init[0]) == first and torch.equal(fit.labels, torch.zeros(50, dtype=torch.long))


@pytest.mark.parametrize("seed", [-1, 2**64, 2.5])
def test_bad_seed_is_a_clear_error(gen, seed: object) -> None:
    x = torch.randn(20, 2, 2, 2, generator=gen)
    with pytest.raises(ValueError, match="kmeans: seed must be"):
        cluster.cluster(x, 2, seed=seed)
    with pytest.raises(ValueError, match="silhouette_score: seed must be"):
        cluster.silhouette_score(x.flatten(1), torch.arange(20) % 2, seed=seed)


def test_kmeans_as_good_as_scikit_learn(gen) -> None:
    sklearn_cluster = pytest.importorskip("sklearn.cluster")
    x = torch.randn(400, 5, generator=gen)
    ours = cluster.kmeans(x, 6, seed=0, n_init=4)
    ref = sklearn_cluster.KMeans(6, n_init=4, random_state=0).fit(x.double().numpy())
    assert ours.inertia <= ref.inertia_ * 1.02


def test_kmeans_duplicates_and_empty_clusters() -> None:
    x = torch.tensor([[0.0, 0.0]] * 6 + [[5.0, 5.0]] * 6)  # 2 distinct points, 3 clusters
    fit = cluster.kmeans(x, 3, seed=0)
    assert torch.isfinite(fit.centers).all() and fit.labels.max() < 3
    assert fit.inertia == pytest.approx(0.0, abs=1e-6)
    fit = cluster.kmeans(x, 12, seed=0)  # k = N
    assert fit.centers.shape == (12, 2)


def test_silhouette_matches_brute_force(gen) -> None:
    x, truth = _blobs(gen, n_per=10, k=3, spread=1.5)
    labels = torch.randint(0, 3, (30,), generator=gen)
    labels[:3] = torch.tensor([0, 1, 2])
    labels[-1] = 4  # a singleton cluster scores 0
    xf = x.flatten(1)
    for lab in (truth, labels):
        ref = _silhouette_reference(xf.double().numpy(), lab.numpy())
        got = cluster.silhouette_score(xf, lab, chunk=7)
        assert got == pytest.approx(ref, abs=1e-5)


def test_silhouette_sampled_is_seeded(gen) -> None:
    x, truth = _blobs(gen, n_per=100, k=3)
    xf = x.flatten(1)
    a = cluster.silhouette_score(xf, truth, sample_size=120, seed=1)
    assert a == cluster.silhouette_score(xf, truth, sample_size=120, seed=1)
    exact = cluster.silhouette_score(xf, truth, sample_size=None)
    assert a == pytest.approx(exact, abs=0.05)


def test_silhouette_picks_the_planted_k(gen) -> None:
    for k in (3, 5):
        x, truth = _blobs(gen, n_per=15, k=k)
        res = cluster.cluster(x, None, k_max=8, n_init=2)
        assert res.k == k, res.summary()
        assert set(res.silhouettes) == set(range(2, 9))
        assert cluster.purity(res.labels, truth) == 1.0


def test_centroids_are_member_means_in_latent_space(gen) -> None:
    x, truth = _blobs(gen, n_per=10, k=3, shape=(3, 6, 6))
    for feature in ("flat", "channel_stats", "pooled"):
        res = cluster.cluster(x, 3, feature=feature, n_init=2)
        assert res.centroids.shape == (3, 3, 6, 6) and res.labels.shape == (30,)
        for j in range(3):
            assert torch.allclose(res.centroids[j], x[res.labels == j].mean(0), rtol=1e-5, atol=1e-5)
    half = cluster.cluster(x.half(), 3, n_init=1)
    assert half.centroids.dtype == torch.float16
    assert "sizes" in half.summary()


def test_purity_reference() -> None:
    labels = torch.tensor([0, 0, 0, 1, 1, 2])
    truth = torch.tensor([5, 5, 7, 7, 7, 5])
    assert cluster.purity(labels, truth) == pytest.approx((2 + 2 + 1) / 6)


def test_adjusted_rand_index(gen) -> None:
    truth = torch.tensor([0, 0, 0, 1, 1, 1])
    assert cluster.adjusted_rand_index(torch.tensor([5, 5, 5, 2, 2, 2]), truth) == pytest.approx(1.0)
    # hand-worked: table [[2, 1], [1, 2]]: index 2, rows = cols = 6, expected 2.4, max 6
    assert cluster.adjusted_rand_index(torch.tensor([0, 0, 1, 1, 1, 0]), truth) == pytest.approx((2 - 2.4) / (6 - 2.4))
    metrics = pytest.importorskip("sklearn.metrics")
    a, b = torch.randint(0, 5, (200,), generator=gen), torch.randint(0, 4, (200,), generator=gen)
    b[:100] = a[:100] % 4
    assert cluster.adjusted_rand_index(a, b) == pytest.approx(metrics.adjusted_rand_score(b.numpy(), a.numpy()), abs=1e-12)


def test_errors(gen) -> None:
    x = torch.randn(5, 2, 2, 2, generator=gen)
    with pytest.raises(ValueError, match="k=6"):
        cluster.cluster(x, 6)
    with pytest.raises(ValueError, match="at least 3"):
        cluster.cluster(x[:2], None)
    with pytest.raises(ValueError, match="k_min"):
        cluster.cluster(x, None, k_min=5, k_max=8)
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        cluster.kmeans(x, 2)
    with pytest.raises(ValueError, match="k=0"):
        cluster.kmeans(x.flatten(1), 0)
    with pytest.raises(ValueError, match="labels"):
        cluster.silhouette_score(x.flatten(1), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="clusters"):
        cluster.silhouette_score(x.flatten(1), torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="purity"):
        cluster.purity(torch.zeros(3), torch.zeros(4))
    with pytest.raises(ValueError, match="adjusted_rand_index"):
        cluster.adjusted_rand_index(torch.zeros(0), torch.zeros(0))
    bad = x.clone()
    bad[0, 0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match="NaN or Inf"):
        cluster.cluster(bad, 2)
