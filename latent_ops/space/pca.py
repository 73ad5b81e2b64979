"""Principal component analysis of a batch of vectors (exact, float32/float64 SVD).

Used by latent traversal (principal directions of per-pixel channel vectors) and by the latent
space map (projection of whole latents to 2-D/3-D).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class PCA:
    """A fitted PCA.

    Attributes:
        mean: ``(D,)`` mean that was subtracted (zeros when fitted with ``center=False``).
        components: ``(k, D)`` orthonormal rows, by decreasing variance. Each row's sign is fixed
            so that its largest-magnitude entry is positive (deterministic across runs).
        explained_variance: ``(k,)`` variance along each component (unbiased, N-1).
        explained_variance_ratio: ``(k,)`` share of the total variance.
    """

    mean: Tensor
    components: Tensor
    explained_variance: Tensor
    explained_variance_ratio: Tensor

    def transform(self, x: Tensor) -> Tensor:
        """``(N, D)`` -> ``(N, k)`` coordinates along the components."""
        return (x.to(self.mean) - self.mean) @ self.components.T

    def inverse_transform(self, y: Tensor) -> Tensor:
        """``(N, k)`` coordinates -> ``(N, D)`` points."""
        return y.to(self.mean) @ self.components + self.mean


def fit_pca(x: Tensor, k: int | None = None, *, center: bool = True) -> PCA:
    """Fit a PCA to the rows of ``x``.

    Args:
        x: ``(N, D)`` samples, any float dtype; computed in float64 for ``N*D`` up to 1e7
            elements and float32 beyond, results returned as float32.
        k: number of components, at most ``min(N, D)``; ``None`` keeps all of them.
        center: subtract the mean first (standard PCA).

    Returns:
        A :class:`PCA`.

    Raises:
        ValueError: if ``x`` is not 2-D, has fewer than 2 rows, contains NaN/Inf, or ``k`` is
            out of range.
    """
    if x.ndim != 2:
        raise ValueError(f"fit_pca: x must be (N, D), got shape {tuple(x.shape)}")
    n, d = x.shape
    if n < 2:
        raise ValueError(f"fit_pca: need at least 2 samples, got {n}")
    kmax = min(n, d)
    if k is None:
        k = kmax
    if not 1 <= k <= kmax:
        raise ValueError(f"fit_pca: k={k} must be in 1..{kmax} for x of shape {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError("fit_pca: x contains NaN or Inf")
    dtype = torch.float64 if n * d <= 10_000_000 else torch.float32
    xf = x.detach().to("cpu", dtype)
    mean = xf.mean(0) if center else torch.zeros(d, dtype=dtype)
    xc = xf - mean
    if n >= d:  # covariance route: (D, D) eigenproblem, cheap for many short vectors
        cov = xc.T @ xc / (n - 1)
        evals, evecs = torch.linalg.eigh(cov)
        order = torch.argsort(evals, descending=True)[:k]
        var = evals[order].clamp_min(0)
        comps = evecs[:, order].T
        total = torch.diagonal(cov).sum()
    else:  # few long vectors: thin SVD
        _, s, vh = torch.linalg.svd(xc, full_matrices=False)
        var = s[:k] ** 2 / (n - 1)
        comps = vh[:k]
        total = (s**2).sum() / (n - 1)
    idx = comps.abs().argmax(dim=1, keepdim=True)
    signs = torch.sign(comps.gather(1, idx)).clamp_min(0) * 2 - 1
    comps = comps * signs
    ratio = var / total if total > 0 else torch.zeros_like(var)
    f32 = torch.float32
    return PCA(mean.to(f32), comps.to(f32), var.to(f32), ratio.to(f32))
