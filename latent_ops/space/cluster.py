"""k-means clustering of latents, silhouette scores, and cluster purity.

Similar pictures have close codes, so clustering the latents sorts the images. :func:`kmeans`
works on any ``[N, D]`` feature matrix (seeded k-means++ initialisation, Lloyd iterations,
restarts); :func:`cluster` applies it to a latent batch and returns the centroids *as latents*
``[k, C, H, W]``, ready to decode ("the average cat"). When ``k`` is not given it is chosen by the
best :func:`silhouette_score`. Scores against true classes (:func:`purity`,
:func:`adjusted_rand_index`) live in :mod:`.scores` and are re-exported here.

All randomness comes from one explicit CPU ``torch.Generator`` made from ``seed`` (any seed in
``[0, 2**64)``) by :func:`latent_ops.seeds.cpu_generator`.
Distances are computed in row blocks of ``chunk`` points, so memory stays ``O(chunk * k)``
(``O(chunk * N)`` for the silhouette) instead of ``O(N * k * D)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from .. import progress
from ..limits import MAX_KMEANS_WORK, check_at_most
from ..seeds import check_seed, cpu_generator
from .project import FeatureKind, check_latents, features
from .scores import adjusted_rand_index, contingency, purity

__all__ = [
    "Clustering", "KMeansResult", "adjusted_rand_index", "cluster", "contingency", "kmeans", "kmeans_plus_plus",
    "kmeans_work", "purity", "silhouette_score", "sq_distances",
]


def _check_matrix(x: Tensor, name: str) -> None:
    if not isinstance(x, Tensor) or x.ndim != 2:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{name}: x must be a 2-D tensor (N, D), got {shape}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name}: x contains NaN or Inf")


def kmeans_work(n: int, d: int, ks: range | list[int], n_init: int, silhouette_sample: int | None = None) -> int:
    """Estimated work of clustering ``n`` points of ``d`` features for each ``k`` in ``ks``.

    Per restart and ``k``: k-means++ (``k (2 + ln k)`` distance columns) and one Lloyd pass
    (``k + 1``), each ``n * d`` multiply-adds; plus, with ``silhouette_sample``, one ``S^2 d / 16``
    per ``k`` (``S = min(n, silhouette_sample)``: one matrix product, measured about 16 times
    faster per multiply-add than the k-means passes). Lloyd iterations repeat the pass, so this is
    a lower bound that :data:`latent_ops.limits.MAX_KMEANS_WORK` caps before anything runs.
    """
    per_point = sum(k * (3 + math.log(k)) + 1 for k in ks)
    sil = 0 if silhouette_sample is None else len(ks) * min(n, silhouette_sample) ** 2 * d // 16
    return int(n_init * n * d * per_point + sil)


def _check_work(func: str, work: int, what: str) -> None:
    check_at_most(func, f"the estimated work of {what}", work, MAX_KMEANS_WORK,
                  "lower k, k_max or n_init, or cluster a smaller feature (channel_stats, pooled)")


def sq_distances(x: Tensor, centers: Tensor, *, chunk: int = 4096) -> Tensor:
    """Squared Euclidean distances ``‖x_i − c_j‖²`` via ``‖x‖² − 2x·c + ‖c‖²``, in row blocks.

    Args:
        x: ``(N, D)``; centers: ``(k, D)``, same dtype and device.
        chunk: rows of ``x`` per block.

    Returns:
        ``(N, k)`` non-negative distances.
    """
    cn = (centers * centers).sum(1)
    out = torch.empty(x.shape[0], centers.shape[0], dtype=x.dtype, device=x.device)
    for s in range(0, x.shape[0], chunk):
        xb = x[s : s + chunk]
        d = (xb * xb).sum(1, keepdim=True) - 2.0 * (xb @ centers.T) + cn
        out[s : s + chunk] = d.clamp_min_(0)
    return out


def _assign(x: Tensor, centers: Tensor, chunk: int) -> tuple[Tensor, Tensor]:
    """Nearest center per row: ``labels (N,)`` and squared distance ``(N,)``, in row blocks."""
    labels = torch.empty(x.shape[0], dtype=torch.long, device=x.device)
    best = torch.empty(x.shape[0], dtype=x.dtype, device=x.device)
    cn = (centers * centers).sum(1)
    for s in range(0, x.shape[0], chunk):
        xb = x[s : s + chunk]
        d = (xb * xb).sum(1, keepdim=True) - 2.0 * (xb @ centers.T) + cn
        val, idx = d.min(dim=1)
        labels[s : s + chunk] = idx
        best[s : s + chunk] = val.clamp_min_(0)
    return labels, best


def kmeans_plus_plus(x: Tensor, k: int, generator: torch.Generator, *, chunk: int = 4096) -> Tensor:
    """Greedy k-means++ seeding (Arthur & Vassilvitskii 2007, with ``2 + ln k`` trials per step).

    Args:
        x: ``(N, D)`` float features; k: number of centers, ``1..N``.
        generator: CPU generator that makes every random draw.

    Returns:
        ``(k,)`` long indices of the rows chosen as initial centers.
    """
    n = x.shape[0]
    trials = 2 + int(math.log(k))
    first = int(torch.randint(n, (1,), generator=generator))
    chosen = [first]
    closest = sq_distances(x, x[first : first + 1], chunk=chunk)[:, 0]
    for _ in range(1, k):
        progress.check()
        total = float(closest.sum())
        if total <= 0:  # every point sits on a chosen center: take unused rows in order
            used = set(chosen)
            chosen.append(next(i for i in range(n) if i not in used))
            continue
        weights = (closest / total).double().cpu()
        cand = torch.multinomial(weights, trials, replacement=True, generator=generator)
        d_cand = sq_distances(x, x[cand.to(x.device)], chunk=chunk)  # (N, trials)
        pot = torch.minimum(closest[:, None], d_cand).sum(0)
        best = int(pot.argmin())
        chosen.append(int(cand[best]))
        closest = torch.minimum(closest, d_cand[:, best])
    return torch.tensor(chosen, dtype=torch.long)


@dataclass(frozen=True)
class KMeansResult:
    """A k-means fit: ``labels (N,)`` long, ``centers (k, D)``, ``inertia`` (sum of squared
    distances to the assigned centers), ``n_iter`` Lloyd iterations of the best restart."""

    labels: Tensor
    centers: Tensor
    inertia: float
    n_iter: int


def _lloyd(x: Tensor, centers: Tensor, max_iter: int, tol: float, chunk: int) -> tuple[Tensor, Tensor, float, int]:
    k = centers.shape[0]
    n_iter = 0
    for n_iter in range(1, max_iter + 1):  # noqa: B007 - n_iter is reported
        progress.check()
        labels, dist = _assign(x, centers, chunk)
        counts = torch.bincount(labels, minlength=k)
        sums = torch.zeros_like(centers).index_add_(0, labels, x)
        new = sums / counts.clamp_min(1)[:, None].to(x.dtype)
        empty = (counts == 0).nonzero().flatten()
        if len(empty):  # relocate empty clusters to the points farthest from their centers
            far = torch.topk(dist, len(empty)).indices
            new[empty] = x[far]
        shift = float(((new - centers) ** 2).sum())
        centers = new
        if shift <= tol:
            break
    labels, dist = _assign(x, centers, chunk)
    return labels, centers, float(dist.double().sum()), n_iter


def kmeans(x: Tensor, k: int, *, seed: int = 0, n_init: int = 4, max_iter: int = 100, tol: float = 1e-4, chunk: int = 4096, callback: progress.Callback | None = None) -> KMeansResult:
    """k-means (Lloyd) with seeded k-means++ initialisation and ``n_init`` restarts.

    The data are centred first (better float32 accuracy for the distance expansion). A cluster
    that empties during an iteration is moved onto the point farthest from its center.
    Iterations stop when the squared center shift falls below ``tol`` times the mean feature
    variance (scikit-learn's convention). The restart with the lowest inertia wins.

    Args:
        x: ``(N, D)`` features, any float dtype and device (computed in float32 there).
        k: number of clusters, ``1..N``.
        seed: in ``[0, 2**64)``; seeds one CPU ``torch.Generator`` shared by all restarts.
        n_init: restarts (``>= 1``); max_iter: Lloyd iterations per restart (``>= 1``).
        tol: relative convergence tolerance (``>= 0``).
        chunk: rows per distance block.
        callback: ``callback(done, total)`` after each restart; defaults to
            :func:`latent_ops.progress.report`.

    Returns:
        :class:`KMeansResult` with ``labels`` and ``centers`` on ``x``'s device, centers in
        ``x``'s original (uncentred) coordinates, float32.

    Raises:
        ValueError: for a non-2-D or non-finite ``x``, ``k`` outside ``1..N``, a bad seed or bad settings.
    """
    seed = check_seed(seed, "kmeans: seed")
    _check_matrix(x, "kmeans")
    n = x.shape[0]
    if not 1 <= int(k) <= n:
        raise ValueError(f"kmeans: k={k} must be in 1..N={n} (number of samples)")
    if n_init < 1 or max_iter < 1 or tol < 0 or chunk < 1:
        raise ValueError(f"kmeans: need n_init >= 1, max_iter >= 1, tol >= 0, chunk >= 1; got {n_init}, {max_iter}, {tol}, {chunk}")
    _check_work("kmeans", kmeans_work(n, x.shape[1], [int(k)], n_init), f"k={k}, n_init={n_init} on {tuple(x.shape)}")
    report = callback or progress.report
    xf = x.detach().float()
    mean = xf.mean(0)
    xc = xf - mean
    abs_tol = float(tol) * float(xc.var(0, unbiased=False).mean())
    gen = cpu_generator(seed)
    best: tuple[Tensor, Tensor, float, int] | None = None
    for run in range(n_init):
        init = kmeans_plus_plus(xc, int(k), gen, chunk=chunk).to(xc.device)
        result = _lloyd(xc, xc[init].clone(), max_iter, abs_tol, chunk)
        if best is None or result[2] < best[2]:
            best = result
        report(run + 1, n_init)
    labels, centers, inertia, n_iter = best
    return KMeansResult(labels, centers + mean, inertia, n_iter)


def silhouette_score(x: Tensor, labels: Tensor, *, sample_size: int | None = 2000, seed: int = 0, chunk: int = 1024) -> float:
    """Mean silhouette coefficient (Rousseeuw 1987), Euclidean distances.

    For each point, ``a`` = mean distance to the other members of its cluster, ``b`` = lowest mean
    distance to the members of another cluster, ``s = (b − a) / max(a, b)`` (0 for a point alone in
    its cluster). Exact for ``N <= sample_size``; above, computed on a seeded random subset of
    ``sample_size`` points (distances within the subset), like scikit-learn's ``sample_size``.

    Args:
        x: ``(N, D)`` features; labels: ``(N,)`` integer cluster ids.
        sample_size: subset size for large ``N``; ``None`` = always exact.
        seed: in ``[0, 2**64)``, seeds the subset choice; chunk: rows per distance block.

    Returns:
        The mean silhouette in ``[-1, 1]``.

    Raises:
        ValueError: for mismatched shapes, fewer than 2 / more than ``N − 1`` distinct labels, or
            a bad seed.
    """
    seed = check_seed(seed, "silhouette_score: seed")
    _check_matrix(x, "silhouette_score")
    if labels.ndim != 1 or labels.shape[0] != x.shape[0]:
        raise ValueError(f"silhouette_score: labels {tuple(labels.shape)} must be (N,) for x {tuple(x.shape)}")
    xf, lab = x.detach().float(), labels.to(x.device).long()
    if sample_size is not None and x.shape[0] > sample_size:
        gen = cpu_generator(seed)
        pick = torch.randperm(x.shape[0], generator=gen)[:sample_size].to(x.device)
        xf, lab = xf[pick], lab[pick]
    xf = xf - xf.mean(0)  # centred: better float32 accuracy of the distance expansion
    _, lab = torch.unique(lab, return_inverse=True)
    n, k = xf.shape[0], int(lab.max()) + 1
    if not 2 <= k <= n - 1:
        raise ValueError(f"silhouette_score: needs 2..N-1 clusters, got {k} clusters for N={n}")
    onehot = torch.zeros(n, k, dtype=torch.float64, device=xf.device)
    onehot[torch.arange(n, device=xf.device), lab] = 1.0
    counts = onehot.sum(0)
    onehot32 = onehot.float()
    xn = (xf * xf).sum(1)
    s_all = torch.empty(n, dtype=torch.float64, device=xf.device)
    for s in range(0, n, chunk):
        progress.check()
        xb = xf[s : s + chunk]
        d = (xb @ xf.T).mul_(-2.0).add_(xn[None, :]).add_(xn[s : s + chunk, None]).clamp_min_(0).sqrt_()
        rows = torch.arange(s, s + xb.shape[0], device=xf.device)
        d[rows - s, rows] = 0.0
        sums = (d @ onehot32).double()  # (c, k): summed distance to each cluster
        own = lab[s : s + chunk]
        own_count = counts[own]
        a = sums.gather(1, own[:, None])[:, 0] / (own_count - 1).clamp_min(1)
        means = sums / counts
        means.scatter_(1, own[:, None], float("inf"))
        b = means.min(1).values
        sil = (b - a) / torch.maximum(a, b).clamp_min(1e-300)
        s_all[s : s + chunk] = torch.where(own_count > 1, sil, torch.zeros_like(sil))
    return float(s_all.mean())


@dataclass(frozen=True)
class Clustering:
    """Clusters of a latent batch.

    Attributes:
        labels: ``(N,)`` long cluster id per latent, ``0..k-1`` (CPU).
        centroids: ``[k, C, H, W]`` mean of each cluster's member latents, in the latents' dtype
            and device: decode them to see each cluster's "average" picture.
        feature_centers: ``(k, D)`` cluster centers in feature space (float32).
        k: number of clusters; inertia: k-means objective in feature space.
        feature: the feature kind used for clustering.
        silhouettes: ``{k: score}`` for every ``k`` tried when ``k`` was chosen automatically.
    """

    labels: Tensor
    centroids: Tensor
    feature_centers: Tensor
    k: int
    inertia: float
    feature: str
    silhouettes: dict[int, float] = field(default_factory=dict)

    def summary(self) -> str:
        """Cluster sizes, and the silhouette per tried ``k`` when ``k`` was chosen."""
        sizes = torch.bincount(self.labels, minlength=self.k).tolist()
        lines = [f"k: {self.k} (feature: {self.feature})", f"sizes: {sizes}", f"inertia: {self.inertia:.4g}"]
        if self.silhouettes:
            lines.append("silhouette: " + ", ".join(f"k={k}: {s:.3f}" for k, s in sorted(self.silhouettes.items())))
        return "\n".join(lines)


def cluster(latents: Tensor, k: int | None = None, *, k_min: int = 2, k_max: int = 10, feature: FeatureKind = "flat", pool: int = 2, seed: int = 0, n_init: int = 4, silhouette_sample: int = 2000, callback: progress.Callback | None = None) -> Clustering:
    """Cluster a latent batch with k-means; ``k=None`` (or 0) picks ``k`` by silhouette.

    Centroids are returned in latent shape: the mean of each cluster's member latents in latent
    space. For ``feature="flat"`` that equals the k-means center; for ``"channel_stats"`` or
    ``"pooled"`` the feature-space center is not a latent, so the members' latent mean is used.

    Args:
        latents: ``[N, C, H, W]`` raw latents.
        k: number of clusters ``1..N``; ``None``/``0``: try ``k_min..min(k_max, N-1)`` and keep
            the best silhouette (ties go to the smaller ``k``).
        k_min, k_max: range for the automatic choice (``2 <= k_min <= k_max``).
        feature, pool: see :func:`latent_ops.space.features`.
        seed: in ``[0, 2**64)``; seeds k-means++ and the silhouette subset (checked by :func:`kmeans`).
        n_init: k-means restarts; silhouette_sample: see :func:`silhouette_score`.
        callback: ``callback(done, total)`` over all k-means fits.

    Returns:
        A :class:`Clustering`.

    Raises:
        ValueError: for bad latents, ``k > N``, or fewer than 3 latents when ``k`` is automatic.
    """
    check_latents(latents, "cluster")
    n = latents.shape[0]
    x = features(latents, feature, pool)
    report = callback or progress.report
    scores: dict[int, float] = {}
    if k is None or int(k) == 0:
        if n < 3:
            raise ValueError(f"cluster: choosing k automatically needs at least 3 latents, got {n}")
        if not 2 <= k_min <= k_max:
            raise ValueError(f"cluster: need 2 <= k_min <= k_max, got k_min={k_min}, k_max={k_max}")
        hi = min(int(k_max), n - 1)
        if k_min > hi:
            raise ValueError(f"cluster: k_min={k_min} is more than N-1={n - 1} for {n} latents")
        fits: dict[int, KMeansResult] = {}
        candidates = range(int(k_min), hi + 1)
        _check_work("cluster", kmeans_work(n, x.shape[1], candidates, n_init, silhouette_sample),
                    f"k={k_min}..{hi}, n_init={n_init} on {n} latents of {x.shape[1]} features")
        for i, kk in enumerate(candidates):
            fit = kmeans(x, kk, seed=seed, n_init=n_init, callback=lambda *_: None)
            if torch.unique(fit.labels).numel() < 2:
                scores[kk] = -1.0  # degenerate data (all points equal): no structure at all
            else:
                scores[kk] = silhouette_score(x, fit.labels, sample_size=silhouette_sample, seed=seed)
            fits[kk] = fit
            report(i + 1, len(candidates))
        best_k = max(scores, key=lambda kk: (scores[kk], -kk))
        fit = fits[best_k]
    else:
        if not 1 <= int(k) <= n:
            raise ValueError(f"cluster: k={k} must be in 1..N={n} (number of latents)")
        fit = kmeans(x, int(k), seed=seed, n_init=n_init, callback=report)
    kk = fit.centers.shape[0]
    labels = fit.labels.to(latents.device)
    counts = torch.bincount(labels, minlength=kk).clamp_min(1).float()
    sums = torch.zeros(kk, *latents.shape[1:], dtype=torch.float32, device=latents.device)
    sums.index_add_(0, labels, latents.float())
    centroids = (sums / counts.view(-1, 1, 1, 1)).to(latents.dtype)
    return Clustering(fit.labels.cpu(), centroids, fit.centers.cpu(), kk, fit.inertia, feature, scores)
