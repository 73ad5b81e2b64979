"""Model-aware noise at a sigma, against ComfyUI's AddNoise written out."""

from __future__ import annotations

import pytest
import torch

from latent_ops import latent_format
from latent_ops.sampling import noising
from latent_ops.sampling.denoisers import DiscreteSampling, FlowSampling


def comfy_add_noise(latent, noise, scale, model_type, scale_factor=1.0, shift_factor=0.0):
    """comfy_extras/nodes_custom_sampler.py:AddNoise + model_sampling.noise_scaling, written out."""
    if torch.count_nonzero(latent) > 0:
        latent = (latent - shift_factor) * scale_factor  # process_latent_in
    if model_type == "CONST":
        noisy = scale * noise + (1.0 - scale) * latent
    else:  # EPS, V_PREDICTION
        noisy = noise * scale + latent
    noisy = noisy / scale_factor + shift_factor  # process_latent_out
    return torch.nan_to_num(noisy, nan=0.0, posinf=0.0, neginf=0.0)


@pytest.mark.parametrize(
    ("prediction", "model_type", "fmt"),
    [("eps", "EPS", latent_format.SD15), ("v", "V_PREDICTION", latent_format.SDXL),
     ("flow", "CONST", latent_format.SD3), ("flow", "CONST", latent_format.FLUX), ("eps", "EPS", None)],
)
@pytest.mark.parametrize("empty", [False, True])
def test_matches_comfy_add_noise(prediction, model_type, fmt, empty: bool, gen: torch.Generator) -> None:
    c = fmt.channels if fmt else 4
    x = torch.zeros(2, c, 8, 8) if empty else torch.randn(2, c, 8, 8, generator=gen)
    n = torch.randn(2, c, 8, 8, generator=gen)
    sigma = 0.6 if prediction == "flow" else 3.5
    got = noising.add_noise(x, n, sigma, prediction=prediction, latent_format=fmt)
    sf, sh = (fmt.scale, fmt.shift) if fmt else (1.0, 0.0)
    ref = comfy_add_noise(x, n, sigma, model_type, sf, sh)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)


def test_flow_endpoints_and_eps_zero_sigma(gen: torch.Generator) -> None:
    fmt = latent_format.FLUX
    x, n = torch.randn(1, 16, 4, 4, generator=gen), torch.randn(1, 16, 4, 4, generator=gen)
    torch.testing.assert_close(noising.add_noise(x, n, 0.0, prediction="flow", latent_format=fmt), x)
    torch.testing.assert_close(
        noising.add_noise(x, n, 1.0, prediction="flow", latent_format=fmt), fmt.process_out(n)
    )
    torch.testing.assert_close(noising.add_noise(x, n, 0.0, latent_format=latent_format.SD15), x)


def test_eps_formula_wrong_for_flow(gen: torch.Generator) -> None:
    # The ecosystem's EPS recipe (x + n * sigma / scale) differs from the flow result.
    fmt = latent_format.FLUX
    x, n = torch.randn(1, 16, 4, 4, generator=gen), torch.randn(1, 16, 4, 4, generator=gen)
    flow = noising.add_noise(x, n, 0.8, prediction="flow", latent_format=fmt)
    eps_recipe = x + n * 0.8 / fmt.scale
    assert (flow - eps_recipe).abs().max() > 0.5


def test_per_sample_sigma_and_max_denoise(gen: torch.Generator) -> None:
    x, n = torch.randn(3, 4, 4, 4, generator=gen), torch.randn(3, 4, 4, 4, generator=gen)
    sig = torch.tensor([0.0, 1.0, 2.0])
    got = noising.add_noise(x, n, sig)
    for i in range(3):
        torch.testing.assert_close(got[i], x[i] + sig[i] * n[i])
    md = noising.add_noise(x, n, 2.0, max_denoise=True)
    torch.testing.assert_close(md, x + n * 5.0**0.5)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_dtypes(dtype: torch.dtype, gen: torch.Generator) -> None:
    x, n = torch.randn(1, 4, 8, 8, generator=gen), torch.randn(1, 4, 8, 8, generator=gen)
    got = noising.add_noise(x.to(dtype), n.to(dtype), 1.5, latent_format=latent_format.SD15)
    assert got.dtype == dtype
    ref = noising.add_noise(x, n, 1.5, latent_format=latent_format.SD15)
    torch.testing.assert_close(got.float(), ref, atol=0.1, rtol=0.02)


def test_inputs_not_mutated(gen: torch.Generator) -> None:
    x, n = torch.randn(1, 4, 8, 8, generator=gen), torch.randn(1, 4, 8, 8, generator=gen)
    x0, n0 = x.clone(), n.clone()
    noising.add_noise(x, n, 2.0, latent_format=latent_format.SD3)
    assert torch.equal(x, x0) and torch.equal(n, n0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"noise": torch.zeros(1, 16, 8, 8)}, r"\(1, 4, 8, 8\).*\(1, 16, 8, 8\)"),
        ({"prediction": "x0"}, "prediction"),
        ({"sigma": -1.0}, "sigma"),
        ({"sigma": float("nan")}, "sigma"),
        ({"sigma": torch.ones(3)}, "sigma"),
        ({"sigma": 1.5, "prediction": "flow"}, r"\[0, 1\]"),
        ({"latent": torch.full((1, 4, 8, 8), float("inf"))}, "latent"),
    ],
)
def test_errors(kwargs: dict, match: str) -> None:
    args = {"latent": torch.zeros(1, 4, 8, 8), "noise": torch.zeros(1, 4, 8, 8), "sigma": 1.0, **kwargs}
    with pytest.raises(ValueError, match=match):
        noising.add_noise(args.pop("latent"), args.pop("noise"), args.pop("sigma"), **args)


def test_sigma_from_schedule() -> None:
    assert noising.sigma_from_schedule(torch.tensor([14.6, 3.0, 0.0])) == pytest.approx(14.6)
    assert noising.sigma_from_schedule([0.5, 0.8]) == pytest.approx(0.3)
    assert noising.sigma_from_schedule([2.0]) == 2.0
    with pytest.raises(ValueError, match="empty"):
        noising.sigma_from_schedule([])


@pytest.mark.parametrize("prediction", noising.PREDICTIONS)
@pytest.mark.parametrize("max_denoise", [False, True])
def test_is_the_model_samplings_noise_scaling(prediction, max_denoise, gen: torch.Generator) -> None:
    """One implementation of noise at sigma: add_noise in model space == the sampler's noise_scaling, bit for bit."""
    fmt = latent_format.SD3 if prediction == "flow" else latent_format.SDXL
    x = torch.randn(2, fmt.channels, 4, 4, generator=gen)
    n = torch.randn(x.shape, generator=gen)
    sigma = torch.tensor([0.3, 0.7])
    ms = FlowSampling(shift=3.0) if prediction == "flow" else DiscreteSampling.from_betas(prediction=prediction)
    want = fmt.process_out(ms.noise_scaling(sigma, n, fmt.process_in(x), max_denoise))
    got = noising.add_noise(x, n, sigma, prediction=prediction, latent_format=fmt, max_denoise=max_denoise)
    assert torch.equal(got, want)
    assert noising.PREDICTIONS == ("eps", "v", "flow")
