"""Deterministic single-step samplers (k-diffusion style) and the helpers all samplers share.

Every sampler is a stateless loop ``sample_x(model, x, sigmas, *, callback=None, ...) -> x`` where
``model(x [B,...], sigma [B]) -> x0`` is a :data:`latent_ops.sampling.denoisers.Denoiser`, ``x`` is the
noised model-space latent at ``sigmas[0]`` and ``sigmas`` is a decreasing 1-D tensor. The callback
receives k-diffusion's dict ``{"x", "i", "sigma", "sigma_hat", "denoised"}`` after each model call
of a step and may raise (interrupt). Stochastic samplers take an explicit ``noise_sampler`` (no
global RNG anywhere).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from .denoisers import Denoiser

Callback = Callable[[dict], None]
"""``callback({"x", "i", "sigma", "sigma_hat", "denoised"})`` once per step."""
NoiseSampler = Callable[[Tensor, Tensor], Tensor]
"""``noise_sampler(sigma, sigma_next) -> unit Gaussian noise shaped like x``."""
NoiseScaling = Callable[[Tensor, Tensor, Tensor], Tensor]
"""``noise_scaling(sigma, noise, x0) -> noised latent`` (the model's forward process)."""


def to_d(x: Tensor, sigma: Tensor, denoised: Tensor) -> Tensor:
    """Karras ODE derivative ``(x - x0) / sigma`` for ``x [B,...]``, scalar ``sigma``."""
    return (x - denoised) / sigma


def get_ancestral_step(sigma_from: Tensor, sigma_to: Tensor, eta: float = 1.0) -> tuple[Tensor, Tensor]:
    """Ancestral split of a step: ``(sigma_down, sigma_up)`` with ``down^2 + up^2 = sigma_to^2``."""
    if not eta:
        return sigma_to, torch.zeros_like(sigma_to)
    up = torch.minimum(sigma_to, eta * (sigma_to**2 * (sigma_from**2 - sigma_to**2) / sigma_from**2) ** 0.5)
    return (sigma_to**2 - up**2) ** 0.5, up


def check_sigmas(x: Tensor, sigmas: Tensor, name: str) -> None:
    """Raise ValueError unless ``sigmas`` is a finite, non-negative 1-D tensor and x is finite-shaped."""
    if sigmas.ndim != 1 or len(sigmas) < 1:
        raise ValueError(f"{name}: sigmas must be a non-empty 1-D tensor, got shape {tuple(sigmas.shape)}")
    if not bool(torch.isfinite(sigmas).all()) or bool((sigmas < 0).any()):
        raise ValueError(f"{name}: sigmas must be finite and >= 0, got {sigmas.tolist()}")
    if x.ndim < 2:
        raise ValueError(f"{name}: x must be batched [B, ...], got shape {tuple(x.shape)}")


def _ones(x: Tensor) -> Tensor:
    return x.new_ones([x.shape[0]])


def _cb(callback: Callback | None, x: Tensor, i: int, sigma: Tensor, sigma_hat: Tensor, denoised: Tensor) -> None:
    if callback is not None:
        callback({"x": x, "i": i, "sigma": sigma, "sigma_hat": sigma_hat, "denoised": denoised})


@torch.no_grad()
def sample_euler(model: Denoiser, x: Tensor, sigmas: Tensor, *, callback: Callback | None = None) -> Tensor:
    """Euler steps on the probability-flow ODE (Karras et al. 2022, Algorithm 2, no churn)."""
    check_sigmas(x, sigmas, "sample_euler")
    s_in = _ones(x)
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in)
        _cb(callback, x, i, sigmas[i], sigmas[i], denoised)
        x = x + to_d(x, sigmas[i], denoised) * (sigmas[i + 1] - sigmas[i])
    return x


@torch.no_grad()
def sample_heun(model: Denoiser, x: Tensor, sigmas: Tensor, *, callback: Callback | None = None) -> Tensor:
    """Heun's second-order method (Karras et al. 2022, Algorithm 2); last step to 0 is Euler."""
    check_sigmas(x, sigmas, "sample_heun")
    s_in = _ones(x)
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in)
        d = to_d(x, sigmas[i], denoised)
        _cb(callback, x, i, sigmas[i], sigmas[i], denoised)
        dt = sigmas[i + 1] - sigmas[i]
        if sigmas[i + 1] == 0:
            x = x + d * dt
        else:
            x_2 = x + d * dt
            d_2 = to_d(x_2, sigmas[i + 1], model(x_2, sigmas[i + 1] * s_in))
            x = x + (d + d_2) / 2 * dt
    return x


@torch.no_grad()
def sample_dpm_2(model: Denoiser, x: Tensor, sigmas: Tensor, *, callback: Callback | None = None) -> Tensor:
    """DPM-Solver-2-style midpoint steps in log sigma (k-diffusion ``sample_dpm_2``)."""
    check_sigmas(x, sigmas, "sample_dpm_2")
    s_in = _ones(x)
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in)
        d = to_d(x, sigmas[i], denoised)
        _cb(callback, x, i, sigmas[i], sigmas[i], denoised)
        if sigmas[i + 1] == 0:
            x = x + d * (sigmas[i + 1] - sigmas[i])
        else:
            sigma_mid = sigmas[i].log().lerp(sigmas[i + 1].log(), 0.5).exp()
            x_2 = x + d * (sigma_mid - sigmas[i])
            d_2 = to_d(x_2, sigma_mid, model(x_2, sigma_mid * s_in))
            x = x + d_2 * (sigmas[i + 1] - sigmas[i])
    return x


def _lms_coeff(order: int, t: list[float], i: int, j: int) -> float:
    """Integral over ``[t_i, t_{i+1}]`` of the j-th Lagrange basis polynomial on ``t_i, ..., t_{i-order+1}``.

    Exact Gauss-Legendre quadrature (the integrand is a polynomial of degree < order), so no scipy.
    """
    nodes, weights = _GAUSS[order]
    a, b = t[i], t[i + 1]
    total = 0.0
    for u, w in zip(nodes, weights, strict=True):
        tau = (a + b) / 2 + (b - a) / 2 * u
        prod = 1.0
        for k in range(order):
            if k != j:
                prod *= (tau - t[i - k]) / (t[i - j] - t[i - k])
        total += w * prod
    return total * (b - a) / 2


def _gauss(n: int) -> tuple[list[float], list[float]]:
    import numpy as np

    nodes, weights = np.polynomial.legendre.leggauss(n)
    return nodes.tolist(), weights.tolist()


_GAUSS: dict[int, tuple[list[float], list[float]]] = {}
"""Gauss-Legendre rules by order, filled on first use by :func:`_lms_rule`."""


def _lms_rule(order: int) -> None:
    if order not in _GAUSS:
        _GAUSS[order] = _gauss(order)


@torch.no_grad()
def sample_lms(model: Denoiser, x: Tensor, sigmas: Tensor, *, callback: Callback | None = None,
               order: int = 4) -> Tensor:
    """Linear multistep (Adams-Bashforth in sigma) of up to ``order`` previous derivatives."""
    check_sigmas(x, sigmas, "sample_lms")
    s_in = _ones(x)
    t = sigmas.detach().cpu().double().tolist()
    ds: list[Tensor] = []
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in)
        ds.append(to_d(x, sigmas[i], denoised))
        if len(ds) > order:
            ds.pop(0)
        _cb(callback, x, i, sigmas[i], sigmas[i], denoised)
        cur = min(i + 1, order)
        _lms_rule(cur)
        coeffs = [_lms_coeff(cur, t, i, j) for j in range(cur)]
        x = x + sum(c * d for c, d in zip(coeffs, reversed(ds), strict=True))
    return x


def _eps_noise_scaling(sigma: Tensor, noise: Tensor, x0: Tensor) -> Tensor:
    return x0 + noise * sigma


@torch.no_grad()
def sample_lcm(model: Denoiser, x: Tensor, sigmas: Tensor, *, callback: Callback | None = None,
               noise_sampler: NoiseSampler, noise_scaling: NoiseScaling = _eps_noise_scaling) -> Tensor:
    """Latent-consistency sampling (ComfyUI ``sample_lcm``): x0 then fresh noise at the next sigma.

    ``noise_scaling`` is the model's forward process (``x0 + sigma n`` for eps/v, the flow blend for
    flow models).
    """
    check_sigmas(x, sigmas, "sample_lcm")
    s_in = _ones(x)
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in)
        _cb(callback, x, i, sigmas[i], sigmas[i], denoised)
        x = denoised
        if sigmas[i + 1] > 0:
            x = noise_scaling(sigmas[i + 1], noise_sampler(sigmas[i], sigmas[i + 1]), x)
    return x


sample_ddim = sample_euler
"""ComfyUI's ``ddim`` is Euler on the chosen sigmas (equal to DDIM eta=0 for eps models); the
difference (a separately seeded inpainting noise) lives in :func:`latent_ops.sampling.diffusion.sample`."""
