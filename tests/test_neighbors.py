"""latent_ops.space.neighbors: exact k-NN against a brute-force float64 reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from latent_ops.space import neighbors


def _brute(q: np.ndarray, r: np.ndarray, k: int, metric: str, exclude_self: bool = False) -> tuple[np.ndarray, np.ndarray]:
    out_i, out_d = [], []
    for i, v in enumerate(q):
        if metric == "euclidean":
            d = np.array([np.sqrt(((v - w) ** 2).sum()) for w in r])
        else:
            d = np.array([1 - (v @ w) / np.linalg.norm(v) / np.linalg.norm(w) for w in r])
        if exclude_self:
            d[i] = np.inf
        order = np.argsort(d, kind="stable")[:k]
        out_i.append(order)
        out_d.append(d[order])
    return np.array(out_i), np.array(out_d)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_matches_brute_force(gen, metric: str) -> None:
    q = torch.randn(9, 3, 4, 4, generator=gen)
    r = torch.randn(40, 3, 4, 4, generator=gen) + 0.5
    res = neighbors.nearest(q, r, 5, metric=metric, chunk=4)
    ref_i, ref_d = _brute(q.flatten(1).double().numpy(), r.flatten(1).double().numpy(), 5, metric)
    np.testing.assert_array_equal(res.indices.numpy(), ref_i)
    np.testing.assert_allclose(res.distances.numpy(), ref_d, rtol=1e-5, atol=1e-6)
    assert res.latents.shape == (45, 3, 4, 4)
    assert torch.equal(res.latents, r[res.indices.flatten()])  # query-major
    assert torch.equal(res.latents[5:10], r[res.indices[1]])
    assert res.metric == metric and res.summary().count("query") == 9


def test_exclude_self(gen) -> None:
    x = torch.randn(20, 2, 3, 3, generator=gen)
    res = neighbors.nearest(x, x, 3, exclude_self=True, chunk=6)
    assert not (res.indices == torch.arange(20)[:, None]).any()
    ref_i, _ = _brute(x.flatten(1).double().numpy(), x.flatten(1).double().numpy(), 3, "euclidean", exclude_self=True)
    np.testing.assert_array_equal(res.indices.numpy(), ref_i)
    plain = neighbors.nearest(x, x, 1)
    assert torch.equal(plain.indices[:, 0], torch.arange(20))
    assert torch.allclose(plain.distances, torch.zeros(20, 1))


def test_cosine_ignores_magnitude(gen) -> None:
    r = torch.randn(10, 4, 2, 2, generator=gen)
    res = neighbors.nearest(r[[3]] * 7.5, r, 1, metric="cosine")
    assert int(res.indices[0, 0]) == 3 and float(res.distances[0, 0]) == pytest.approx(0.0, abs=1e-6)


def test_features_and_low_precision(gen) -> None:
    q, r = torch.randn(4, 4, 8, 8, generator=gen), torch.randn(30, 4, 8, 8, generator=gen)
    a = neighbors.nearest(q.half(), r.half(), 3)
    b = neighbors.nearest(q.half().float(), r.half().float(), 3)
    assert torch.equal(a.indices, b.indices) and a.latents.dtype == torch.float16
    pooled = neighbors.nearest(q, r, 3, feature="pooled", pool=4)
    fq = q.reshape(4, 4, 2, 4, 2, 4).mean((3, 5)).flatten(1).double().numpy()
    fr = r.reshape(30, 4, 2, 4, 2, 4).mean((3, 5)).flatten(1).double().numpy()
    np.testing.assert_array_equal(pooled.indices.numpy(), _brute(fq, fr, 3, "euclidean")[0])
    assert pooled.latents.shape == (12, 4, 8, 8)


def test_errors(gen) -> None:
    q, r = torch.randn(3, 4, 4, 4, generator=gen), torch.randn(6, 4, 4, 4, generator=gen)
    with pytest.raises(ValueError, match="differ"):
        neighbors.nearest(q, torch.randn(6, 16, 4, 4, generator=gen))
    with pytest.raises(ValueError, match="k=7"):
        neighbors.nearest(q, r, 7)
    with pytest.raises(ValueError, match="self excluded"):
        neighbors.nearest(r, r, 6, exclude_self=True)
    with pytest.raises(ValueError, match="exclude_self"):
        neighbors.nearest(q, r, 2, exclude_self=True)
    with pytest.raises(ValueError, match="metric"):
        neighbors.nearest(q, r, 2, metric="manhattan")
    with pytest.raises(ValueError, match="all-zero reference"):
        neighbors.nearest(q, torch.cat([r, torch.zeros(1, 4, 4, 4)]), 2, metric="cosine")
    with pytest.raises(ValueError, match="at least 1"):
        neighbors.nearest(q, r[:0], 1)
