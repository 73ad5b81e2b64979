"""Features of a latent batch and its projection to 2-D/3-D (PCA, t-SNE, UMAP).

A latent space is usually looked at by projecting the codes of many images to a plane: similar
pictures have close codes, so they land close together. This module turns a batch of raw latents
``[N, C, H, W]`` into one feature vector per item (:func:`features`) and projects those vectors
(:func:`project`). PCA is exact (:func:`latent_ops.space.pca.fit_pca`); t-SNE comes from scikit-learn and
UMAP from ``umap-learn``, both optional and imported only when asked for.

Clustering lives in :mod:`latent_ops.space.cluster`, neighbour search in :mod:`latent_ops.space.neighbors`
and the map picture in :mod:`latent_ops.space.plot`.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from ..seeds import check_seed, seed32
from .pca import PCA, fit_pca

logger = logging.getLogger(__name__)

FeatureKind = Literal["flat", "channel_stats", "pooled"]
Method = Literal["pca", "tsne", "umap"]

FEATURES: tuple[str, ...] = ("flat", "channel_stats", "pooled")
METHODS: tuple[str, ...] = ("pca", "tsne", "umap")

TSNE_PCA_DIMS = 50
"""Before t-SNE/UMAP, features wider than this are reduced to this many PCA components (the
usual practice: it removes noise and makes the neighbour search cheap)."""


def check_latents(latents: Tensor, name: str, *, min_items: int = 1) -> None:
    """Validate a latent batch ``[N, C, H, W]``: 4-D, float, finite, at least ``min_items``.

    Raises:
        ValueError: naming ``name`` and the offending shape or values.
    """
    if not isinstance(latents, Tensor):
        raise ValueError(f"{name}: expected a tensor [N, C, H, W], got {type(latents).__name__}")
    if latents.ndim != 4:
        raise ValueError(f"{name}: expected latents [N, C, H, W], got shape {tuple(latents.shape)}")
    if not latents.is_floating_point():
        raise ValueError(f"{name}: expected a float tensor, got {latents.dtype}")
    if latents.shape[0] < min_items:
        raise ValueError(f"{name}: need at least {min_items} latents, got {latents.shape[0]}")
    if not torch.isfinite(latents).all():
        raise ValueError(f"{name}: latents contain NaN or Inf")


def features(latents: Tensor, kind: FeatureKind = "flat", pool: int = 2) -> Tensor:
    """One feature vector per latent.

    Args:
        latents: ``[N, C, H, W]`` raw latents, any float dtype.
        kind: ``"flat"``: the whole latent, ``[N, C*H*W]``; ``"channel_stats"``: mean and standard
            deviation of each channel over the pixels, ``[N, 2C]`` (position-free: colour and
            contrast); ``"pooled"``: the latent average-pooled by ``pool`` in each spatial
            direction (adaptive pooling to ``max(1, H // pool) x max(1, W // pool)`` cells),
            ``[N, C*h*w]`` (coarse layout, less sensitive to small shifts).
        pool: pooling factor for ``"pooled"``, ``>= 1`` (1 = flat).

    Returns:
        ``[N, D]`` float32 features on the latents' device.

    Raises:
        ValueError: for a non-4-D or non-finite batch, an unknown ``kind`` or ``pool < 1``.
    """
    check_latents(latents, "features")
    x = latents.float()
    if kind == "flat":
        return x.flatten(1)
    if kind == "channel_stats":
        flat = x.flatten(2)  # [N, C, H*W]
        std = flat.std(dim=2, unbiased=False)
        return torch.cat([flat.mean(dim=2), std], dim=1)
    if kind == "pooled":
        if int(pool) < 1:
            raise ValueError(f"features: pool must be >= 1, got {pool}")
        h, w = x.shape[-2:]
        return F.adaptive_avg_pool2d(x, (max(1, h // int(pool)), max(1, w // int(pool)))).flatten(1)
    raise ValueError(f"features: kind must be one of {FEATURES}, got {kind!r}")


@dataclass(frozen=True)
class Projection:
    """Coordinates of a latent batch in 2-D or 3-D.

    Attributes:
        coords: ``[N, dims]`` float32 (CPU).
        method: ``"pca"``, ``"tsne"`` or ``"umap"``.
        feature: the feature kind the projection was computed from.
        explained_variance_ratio: ``[dims]`` share of the total feature variance along each axis
            (PCA only, else ``None``).
        pca: the fitted :class:`~latent_ops.space.pca.PCA` (PCA only), so new latents can be placed on
            the same axes with ``pca.transform(features(new))``.
    """

    coords: Tensor
    method: str
    feature: str
    explained_variance_ratio: Tensor | None = None
    pca: PCA | None = None

    @property
    def axis_labels(self) -> tuple[str, ...]:
        """Axis names: ``"PC1 (41.3%)"`` for PCA, ``"t-SNE 1"`` / ``"UMAP 1"`` otherwise."""
        dims = self.coords.shape[1]
        if self.explained_variance_ratio is not None:
            ratios = self.explained_variance_ratio.tolist()
            return tuple(f"PC{i + 1} ({100 * r:.1f}% var)" for i, r in enumerate(ratios))
        name = {"tsne": "t-SNE", "umap": "UMAP"}.get(self.method, self.method)
        return tuple(f"{name} {i + 1}" for i in range(dims))

    def summary(self) -> str:
        """One line per fact: method, feature, size, explained variance for PCA."""
        n, dims = self.coords.shape
        lines = [f"method: {self.method}", f"feature: {self.feature}", f"points: {n}", f"dims: {dims}"]
        if self.explained_variance_ratio is not None:
            pct = ", ".join(f"{100 * r:.1f}%" for r in self.explained_variance_ratio.tolist())
            lines.append(f"explained variance: {pct} (total {100 * float(self.explained_variance_ratio.sum()):.1f}%)")
        return "\n".join(lines)


def _optional(module: str, method: str, extra: str) -> object:
    """Import an optional dependency or raise an ImportError that says what to install."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(f"project(method={method!r}) needs the optional package {extra!r}: {err}. Install it with `pip install {extra}`" + (" (or `pip install latent-ops[space]`)" if extra == "scikit-learn" else "") + "; method='pca' needs nothing extra.") from err


def _reduce(x: Tensor, dims: int) -> Tensor:
    """PCA-reduce wide features to :data:`TSNE_PCA_DIMS` columns before a neighbour embedding."""
    if x.shape[1] <= max(TSNE_PCA_DIMS, dims):
        return x
    return fit_pca(x, k=min(TSNE_PCA_DIMS, x.shape[0])).transform(x)


def project(latents: Tensor, method: Method = "pca", dims: int = 2, *, feature: FeatureKind = "flat", pool: int = 2, seed: int = 0, perplexity: float = 30.0, tsne_iter: int = 1000, n_neighbors: int = 15) -> Projection:
    """Project a latent batch to ``dims`` coordinates per item.

    Args:
        latents: ``[N, C, H, W]`` raw latents.
        method: ``"pca"`` (exact, deterministic, axes carry explained variance), ``"tsne"``
            (scikit-learn's Barnes-Hut t-SNE, PCA-initialised) or ``"umap"`` (``umap-learn``).
            t-SNE and UMAP first reduce wide features to 50 PCA components.
        dims: 2 or 3.
        feature: see :func:`features`.
        pool: pooling factor for ``feature="pooled"``.
        seed: random state of t-SNE/UMAP in ``[0, 2**64)`` (PCA needs none); those take 32-bit
            seeds, so they get :func:`latent_ops.seeds.seed32` of it (the seed itself below 2**32).
        perplexity: t-SNE perplexity, capped at ``(N - 1) / 3`` for small batches.
        tsne_iter: t-SNE optimisation steps (scikit-learn's ``max_iter``, at least 250).
        n_neighbors: UMAP neighbourhood size, capped at ``N - 1``.

    Returns:
        A :class:`Projection` with ``coords [N, dims]`` on the CPU.

    Raises:
        ValueError: for bad latents, ``dims`` not 2/3, an unknown method, a bad seed, or fewer
            than ``dims + 1`` latents (``4`` for t-SNE/UMAP).
        ImportError: for t-SNE without scikit-learn or UMAP without umap-learn, naming the package.
    """
    if method not in METHODS:
        raise ValueError(f"project: method must be one of {METHODS}, got {method!r}")
    if dims not in (2, 3):
        raise ValueError(f"project: dims must be 2 or 3, got {dims}")
    state = seed32(check_seed(seed, "project: seed"))
    need = dims + 1 if method == "pca" else max(dims + 1, 4)
    check_latents(latents, "project", min_items=need)
    x = features(latents, feature, pool).detach().cpu()
    if method == "pca":
        if x.shape[1] < dims:
            raise ValueError(f"project: feature {feature!r} has {x.shape[1]} dimensions, fewer than dims={dims}")
        pca = fit_pca(x, k=dims)
        return Projection(pca.transform(x).float(), "pca", feature, pca.explained_variance_ratio, pca)
    n = x.shape[0]
    xr = _reduce(x, dims).double().numpy()
    if method == "tsne":
        manifold = _optional("sklearn.manifold", "tsne", "scikit-learn")
        perp = float(min(perplexity, (n - 1) / 3.0))
        tsne = manifold.TSNE(n_components=dims, perplexity=perp, init="pca", random_state=state, method="barnes_hut", max_iter=int(tsne_iter))
        coords = tsne.fit_transform(xr)
    else:
        umap = _optional("umap", "umap", "umap-learn")
        reducer = umap.UMAP(n_components=dims, n_neighbors=int(min(n_neighbors, n - 1)), random_state=state)
        coords = reducer.fit_transform(xr)
    logger.debug("project: %s of %d points to %d-D", method, n, dims)
    return Projection(torch.as_tensor(coords, dtype=torch.float32), method, feature)
