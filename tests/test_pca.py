"""latent_ops.space.pca against a numpy SVD reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from latent_ops.space.pca import fit_pca


@pytest.mark.parametrize("shape", [(200, 6), (5, 40)])
def test_matches_numpy_svd(shape: tuple[int, int], gen: torch.Generator) -> None:
    x = torch.randn(shape, generator=gen) * torch.linspace(3, 0.5, shape[1])
    pca = fit_pca(x)
    xn = x.double().numpy()
    xc = xn - xn.mean(0)
    _, s, vt = np.linalg.svd(xc, full_matrices=False)
    k = min(shape)
    var = s[:k] ** 2 / (shape[0] - 1)
    np.testing.assert_allclose(pca.explained_variance.numpy()[: k - 1], var[: k - 1], rtol=1e-4)
    # Same subspace, component by component (up to sign, which fit_pca fixes deterministically).
    for i in range(k - 1):
        assert abs(float(np.dot(pca.components[i].double().numpy(), vt[i]))) == pytest.approx(1.0, abs=1e-4)
    assert torch.allclose(pca.components @ pca.components.T, torch.eye(k), atol=1e-4)
    assert float(pca.explained_variance_ratio.sum()) == pytest.approx(1.0, abs=1e-4)


def test_round_trip_and_sign_convention(gen: torch.Generator) -> None:
    x = torch.randn(50, 4, generator=gen)
    pca = fit_pca(x)
    assert torch.allclose(pca.inverse_transform(pca.transform(x)), x, atol=1e-5)
    biggest = pca.components.gather(1, pca.components.abs().argmax(1, keepdim=True))
    assert (biggest > 0).all()
    assert torch.equal(fit_pca(x).components, pca.components)


def test_k_truncates(gen: torch.Generator) -> None:
    pca = fit_pca(torch.randn(30, 8, generator=gen), k=2)
    assert pca.components.shape == (2, 8)
    assert pca.transform(torch.zeros(3, 8)).shape == (3, 2)


@pytest.mark.parametrize(
    ("x", "k", "match"),
    [
        (torch.zeros(10), None, "must be"),
        (torch.zeros(1, 4), None, "at least 2"),
        (torch.zeros(5, 4), 9, "k=9"),
        (torch.tensor([[0.0, float("nan")], [1.0, 2.0]]), None, "NaN"),
    ],
)
def test_bad_input(x: torch.Tensor, k: int | None, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        fit_pca(x, k)


def test_constant_data_is_finite() -> None:
    pca = fit_pca(torch.ones(6, 3))
    assert torch.isfinite(pca.components).all()
    assert torch.count_nonzero(pca.explained_variance_ratio) == 0
