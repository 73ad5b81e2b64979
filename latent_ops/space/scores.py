"""Scores of a clustering against true classes: contingency table, purity, adjusted Rand index.

Used to check :mod:`latent_ops.space.cluster` results on labelled data (``cluster.purity`` and the
others stay importable from there).
"""

from __future__ import annotations

import torch
from torch import Tensor


def contingency(labels: Tensor, truth: Tensor, name: str = "contingency") -> Tensor:
    """Counts ``table[i, j]`` of points in cluster ``i`` (sorted distinct ids) with class ``j``.

    Args:
        labels: ``(N,)`` cluster ids; truth: ``(N,)`` true class ids (any integers).

    Returns:
        ``(clusters, classes)`` int64 table.

    Raises:
        ValueError: for mismatched or empty inputs.
    """
    if labels.ndim != 1 or labels.shape != truth.shape or labels.numel() == 0:
        raise ValueError(f"{name}: labels {tuple(labels.shape)} and truth {tuple(truth.shape)} must be equal, non-empty (N,)")
    _, li = torch.unique(labels.cpu(), return_inverse=True)
    _, ti = torch.unique(truth.cpu(), return_inverse=True)
    table = torch.zeros(int(li.max()) + 1, int(ti.max()) + 1, dtype=torch.long)
    return table.index_put_((li, ti), torch.ones_like(li), accumulate=True)


def purity(labels: Tensor, truth: Tensor) -> float:
    """Cluster purity: the share of points whose cluster's majority true class is their own.

    Not corrected for chance: many small clusters, or one dominant class, score high anyway
    (see :func:`adjusted_rand_index`).

    Args:
        labels: ``(N,)`` cluster ids; truth: ``(N,)`` true class ids (any integers).

    Returns:
        Purity in ``(0, 1]`` (1 = every cluster holds one class only).

    Raises:
        ValueError: for mismatched or empty inputs.
    """
    table = contingency(labels, truth, "purity")
    return float(table.max(1).values.sum()) / labels.numel()


def adjusted_rand_index(labels: Tensor, truth: Tensor) -> float:
    """Adjusted Rand index (Hubert & Arabie 1985): pair agreement corrected for chance.

    1 for identical partitions (up to renaming), about 0 for random labels.

    Args:
        labels: ``(N,)`` cluster ids; truth: ``(N,)`` true class ids.

    Returns:
        The ARI (``1.0`` when both partitions are trivial in the same way).

    Raises:
        ValueError: for mismatched or empty inputs.
    """
    table = contingency(labels, truth, "adjusted_rand_index").double()
    n = float(table.sum())

    def pairs(v: Tensor) -> float:
        return float((v * (v - 1) / 2).sum())

    index, rows, cols = pairs(table), pairs(table.sum(1)), pairs(table.sum(0))
    expected = rows * cols / (n * (n - 1) / 2) if n > 1 else 0.0
    top = (rows + cols) / 2
    return 1.0 if top == expected else (index - expected) / (top - expected)
