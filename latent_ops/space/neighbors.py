"""Nearest-neighbour search among latents (exact, chunked brute force).

For each query latent, the ``k`` closest latents of a reference batch by Euclidean or cosine
distance, returned with their distances and gathered into one batch ready to decode
(query-major: the neighbours of query 0 first). Distances are computed in blocks of ``chunk``
queries, so memory stays ``O(chunk * N)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from .. import progress
from .project import FeatureKind, check_latents, features

Metric = Literal["euclidean", "cosine"]
METRICS: tuple[str, ...] = ("euclidean", "cosine")


@dataclass(frozen=True)
class Neighbors:
    """Result of :func:`nearest`.

    Attributes:
        indices: ``(Q, k)`` long indices into the reference batch, nearest first.
        distances: ``(Q, k)`` float32 distances (Euclidean, or ``1 − cosine similarity``).
        latents: ``[Q*k, C, H, W]`` the gathered reference latents, query-major
            (rows ``q*k .. q*k+k-1`` are the neighbours of query ``q``).
        metric: the metric used.
    """

    indices: Tensor
    distances: Tensor
    latents: Tensor
    metric: str

    def summary(self) -> str:
        """One line per query: ``query q: index (distance), ...``."""
        lines = [f"metric: {self.metric}"]
        for q, (idx, dist) in enumerate(zip(self.indices.tolist(), self.distances.tolist(), strict=True)):
            lines.append(f"query {q}: " + ", ".join(f"{i} ({d:.4f})" for i, d in zip(idx, dist, strict=True)))
        return "\n".join(lines)


def pairwise_distances(q: Tensor, r: Tensor, metric: Metric = "euclidean") -> Tensor:
    """Distances between every row of ``q (Q, D)`` and of ``r (N, D)``, as ``(Q, N)`` float32.

    Euclidean through ``‖q‖² − 2q·r + ‖r‖²`` (clamped at 0), cosine as ``1 − q̂·r̂``.
    Rows must be non-zero for the cosine metric (checked by :func:`nearest`).
    """
    if metric == "cosine":
        qn = q / q.norm(dim=1, keepdim=True)
        rn = r / r.norm(dim=1, keepdim=True)
        return (1.0 - qn @ rn.T).clamp_min_(0)
    d2 = (q * q).sum(1, keepdim=True) - 2.0 * (q @ r.T) + (r * r).sum(1)
    return d2.clamp_min_(0).sqrt_()


def _exact(q: Tensor, r: Tensor, metric: str) -> Tensor:
    """Distances of paired rows ``q (M, D)``, ``r (M, D)`` without the expansion's rounding."""
    if metric == "cosine":
        cos = torch.nn.functional.cosine_similarity(q.double(), r.double(), dim=1)
        return (1.0 - cos).clamp_min(0).float()
    return (q.double() - r.double()).norm(dim=1).float()


def nearest(query: Tensor, reference: Tensor, k: int = 5, *, metric: Metric = "euclidean", exclude_self: bool = False, feature: FeatureKind = "flat", pool: int = 2, chunk: int = 1024, callback: progress.Callback | None = None) -> Neighbors:
    """The ``k`` nearest reference latents of each query latent.

    Candidates are ranked by distances from the expansion in float32; the returned distances
    of the chosen neighbours are then recomputed directly in float64, and each row re-sorted.

    Args:
        query: ``[Q, C, H, W]`` latents; reference: ``[N, C, H, W]``, same ``C, H, W``.
        k: neighbours per query, ``1..N`` (``1..N-1`` with ``exclude_self``).
        metric: ``"euclidean"`` or ``"cosine"`` (``1 − cosine similarity``).
        exclude_self: the query batch *is* the reference batch (``Q == N``): query ``i`` never
            returns reference ``i``.
        feature, pool: compare these features instead of whole latents (see
            :func:`latent_ops.space.features`); the returned latents are always whole latents.
        chunk: queries per distance block.
        callback: ``callback(done, total)`` per block; defaults to :func:`latent_ops.progress.report`.

    Returns:
        :class:`Neighbors` (indices and distances on the CPU, latents on the reference's device).

    Raises:
        ValueError: for non-4-D/non-finite batches, mismatched ``C, H, W``, ``k`` out of range,
            ``exclude_self`` with ``Q != N``, an unknown metric, or an all-zero feature vector
            with the cosine metric.
    """
    check_latents(query, "nearest(query)")
    check_latents(reference, "nearest(reference)")
    if query.shape[1:] != reference.shape[1:]:
        raise ValueError(f"nearest: query latents {tuple(query.shape)} and reference latents {tuple(reference.shape)} differ in [C, H, W]")
    if metric not in METRICS:
        raise ValueError(f"nearest: metric must be one of {METRICS}, got {metric!r}")
    nq, n = query.shape[0], reference.shape[0]
    if exclude_self and nq != n:
        raise ValueError(f"nearest: exclude_self needs the query batch to be the reference batch, got Q={nq}, N={n}")
    kmax = n - 1 if exclude_self else n
    if not 1 <= int(k) <= kmax:
        raise ValueError(f"nearest: k={k} must be in 1..{kmax} for a reference of {n} latents" + (" (self excluded)" if exclude_self else ""))
    if chunk < 1:
        raise ValueError(f"nearest: chunk must be >= 1, got {chunk}")
    k = int(k)
    report = callback or progress.report
    fq = features(query, feature, pool).detach()
    fr = features(reference, feature, pool).detach().to(fq.device)
    if metric == "cosine":
        for name, f in (("query", fq), ("reference", fr)):
            zero = (f.norm(dim=1) == 0).nonzero().flatten()
            if len(zero):
                raise ValueError(f"nearest: cosine distance is undefined for all-zero {name} latents at {zero[:8].tolist()}")
    else:  # centre both on the reference mean: better float32 accuracy of the expansion
        mu = fr.mean(0)
        fq, fr = fq - mu, fr - mu
    indices = torch.empty(nq, k, dtype=torch.long)
    blocks = range(0, nq, chunk)
    for b, s in enumerate(blocks):
        d = pairwise_distances(fq[s : s + chunk], fr, metric)
        if exclude_self:
            rows = torch.arange(d.shape[0], device=d.device)
            d[rows, rows + s] = float("inf")
        indices[s : s + chunk] = torch.topk(d, k, dim=1, largest=False).indices.cpu()
        report(b + 1, len(blocks))
    flat = indices.flatten().to(fr.device)
    dist = _exact(fq.repeat_interleave(k, 0), fr[flat], metric).view(nq, k).cpu()
    dist, order = dist.sort(dim=1, stable=True)
    indices = indices.gather(1, order)
    gathered = reference[indices.flatten().to(reference.device)]
    return Neighbors(indices, dist, gathered, metric)
