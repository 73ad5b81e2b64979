"""Deterministic single-step samplers (k-diffusion style) and the helpers all samplers share.

Every sampler is a stateless loop ``sample_x(model, x, sigmas, *, callback=None, ...) -> x`` where
``model(x [B,...], sigma [B]) -> x0`` is a :data:`latent_ops.sampling.denoisers.Denoiser`, ``x`` is the
noised model-space latent at ``sigmas[0]`` and ``sigmas`` is a decreasing 1-D tensor. The callback
receives k-diffusion's dict ``{"x", "i", "sigma", "sigma_hat", "denoised"}`` after each model call
of a step and may raise (interrupt). Stochastic samplers take an explicit ``noise_sampler`` (no
global RNG anywhere). A loop is built from :func:`sigma_steps` (or :func:`ancestral_steps`) and
:func:`denoise_step`; a new sampler is such a function plus one record in
:data:`latent_ops.sampling.registry.SAMPLERS`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch import Tensor

from .denoisers import Denoiser, DiscreteSampling, NoiseScaling

Callback = Callable[[dict], None]
"""``callback({"x", "i", "sigma", "sigma_hat", "denoised"})`` once per step."""
NoiseSampler = Callable[[Tensor, Tensor], Tensor]
"""``noise_sampler(sigma, sigma_next) -> unit Gaussian noise shaped like x``."""

__all__ = [
    "Callback", "NoiseSampler", "NoiseScaling", "ancestral_steps", "check_sigmas", "denoise_step", "dpm_2_step",
    "get_ancestral_step", "model_at", "report_step", "sample_ddim", "sample_dpm_2", "sample_euler", "sample_heun",
    "sample_lcm", "sample_lms", "sample_lms_kdiffusion", "sigma_steps", "to_d",
]


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


def sigma_steps(x: Tensor, sigmas: Tensor, name: str) -> range:
    """The step indices ``0 .. len(sigmas) - 2`` of sampler ``name``, after :func:`check_sigmas`."""
    check_sigmas(x, sigmas, name)
    return range(len(sigmas) - 1)


def ancestral_steps(x: Tensor, sigmas: Tensor, name: str, eta: float) -> Iterator[tuple[int, Tensor, Tensor]]:
    """:func:`sigma_steps` with each step's ancestral split: ``(i, sigma_down, sigma_up)``."""
    for i in sigma_steps(x, sigmas, name):
        down, up = get_ancestral_step(sigmas[i], sigmas[i + 1], eta)
        yield i, down, up


def model_at(model: Denoiser, x: Tensor, sigma: Tensor) -> Tensor:
    """``model(x [B,...], sigma * ones[B])``: x0 at the scalar ``sigma`` (sigma row in ``x``'s dtype)."""
    return model(x, sigma * x.new_ones([x.shape[0]]))


def report_step(callback: Callback | None, x: Tensor, i: int, sigma: Tensor, denoised: Tensor) -> None:
    """Send k-diffusion's step dict to ``callback`` (``sigma_hat == sigma``: no churn here)."""
    if callback is not None:
        callback({"x": x, "i": i, "sigma": sigma, "sigma_hat": sigma, "denoised": denoised})


def denoise_step(model: Denoiser, x: Tensor, sigmas: Tensor, i: int, callback: Callback | None) -> Tensor:
    """The first model call of step ``i``: x0 at ``sigmas[i]``, reported to ``callback``."""
    denoised = model_at(model, x, sigmas[i])
    report_step(callback, x, i, sigmas[i], denoised)
    return denoised


@torch.no_grad()
def sample_euler(model: Denoiser, x: Tensor, sigmas: Tensor, *, callback: Callback | None = None) -> Tensor:
    """Euler steps on the probability-flow ODE (Karras et al. 2022, Algorithm 2, no churn)."""
    for i in sigma_steps(x, sigmas, "sample_euler"):
        denoised = denoise_step(model, x, sigmas, i, callback)
        x = x + to_d(x, sigmas[i], denoised) * (sigmas[i + 1] - sigmas[i])
    return x


@torch.no_grad()
def sample_heun(model: Denoiser, x: Tensor, sigmas: Tensor, *, callback: Callback | None = None) -> Tensor:
    """Heun's second-order method (Karras et al. 2022, Algorithm 2); last step to 0 is Euler."""
    for i in sigma_steps(x, sigmas, "sample_heun"):
        d = to_d(x, sigmas[i], denoise_step(model, x, sigmas, i, callback))
        dt = sigmas[i + 1] - sigmas[i]
        if sigmas[i + 1] == 0:
            x = x + d * dt
        else:
            x_2 = x + d * dt
            d_2 = to_d(x_2, sigmas[i + 1], model_at(model, x_2, sigmas[i + 1]))
            x = x + (d + d_2) / 2 * dt
    return x


def dpm_2_step(model: Denoiser, x: Tensor, d: Tensor, sigma: Tensor, sigma_to: Tensor) -> Tensor:
    """One DPM-Solver-2 step from ``sigma`` to ``sigma_to`` given the derivative ``d`` at ``sigma``:
    Euler when ``sigma_to == 0``, else the midpoint in log sigma."""
    if sigma_to == 0:
        return x + d * (sigma_to - sigma)
    sigma_mid = sigma.log().lerp(sigma_to.log(), 0.5).exp()
    x_2 = x + d * (sigma_mid - sigma)
    d_2 = to_d(x_2, sigma_mid, model_at(model, x_2, sigma_mid))
    return x + d_2 * (sigma_to - sigma)


@torch.no_grad()
def sample_dpm_2(model: Denoiser, x: Tensor, sigmas: Tensor, *, callback: Callback | None = None) -> Tensor:
    """DPM-Solver-2-style midpoint steps in log sigma (k-diffusion ``sample_dpm_2``)."""
    for i in sigma_steps(x, sigmas, "sample_dpm_2"):
        d = to_d(x, sigmas[i], denoise_step(model, x, sigmas, i, callback))
        x = dpm_2_step(model, x, d, sigmas[i], sigmas[i + 1])
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


def _lms(model: Denoiser, x: Tensor, sigmas: Tensor, callback: Callback | None, order: int, name: str,
         denoise_last: bool) -> Tensor:
    """The LMS loop; ``denoise_last``: a final step to sigma 0 returns the model's x0 instead of integrating."""
    t = sigmas.detach().cpu().double().tolist()
    ds: list[Tensor] = []
    for i in sigma_steps(x, sigmas, name):
        denoised = denoise_step(model, x, sigmas, i, callback)
        ds.append(to_d(x, sigmas[i], denoised))
        if len(ds) > order:
            ds.pop(0)
        if denoise_last and sigmas[i + 1] == 0:
            x = denoised
            continue
        cur = min(i + 1, order)
        _lms_rule(cur)
        coeffs = [_lms_coeff(cur, t, i, j) for j in range(cur)]
        x = x + sum(c * d for c, d in zip(coeffs, reversed(ds), strict=True))
    return x


@torch.no_grad()
def sample_lms(model: Denoiser, x: Tensor, sigmas: Tensor, *, callback: Callback | None = None,
               order: int = 4) -> Tensor:
    """Linear multistep (Adams-Bashforth in sigma) of up to ``order`` previous derivatives, as ComfyUI runs it.

    A last step down to sigma 0 returns that step's denoised x0 (ComfyUI's ``sample_lms``), where
    k-diffusion integrates the interpolating polynomial down to 0 (:func:`sample_lms_kdiffusion`).
    """
    return _lms(model, x, sigmas, callback, order, "sample_lms", denoise_last=True)


@torch.no_grad()
def sample_lms_kdiffusion(model: Denoiser, x: Tensor, sigmas: Tensor, *, callback: Callback | None = None,
                          order: int = 4) -> Tensor:
    """k-diffusion's (and AUTOMATIC1111's "LMS") linear multistep: every step, the last one to sigma 0
    included, integrates the interpolating polynomial of up to ``order`` derivatives."""
    return _lms(model, x, sigmas, callback, order, "sample_lms_kdiffusion", denoise_last=False)


@torch.no_grad()
def sample_lcm(model: Denoiser, x: Tensor, sigmas: Tensor, *, callback: Callback | None = None,
               noise_sampler: NoiseSampler, noise_scaling: NoiseScaling = DiscreteSampling.noise_scaling) -> Tensor:
    """Latent-consistency sampling (ComfyUI ``sample_lcm``): x0 then fresh noise at the next sigma.

    ``noise_scaling`` is the model's forward process (default eps/v's ``x0 + sigma n``; pass
    ``FlowSampling.noise_scaling`` for flow models, as :func:`~latent_ops.sampling.run_sampler` does).
    """
    for i in sigma_steps(x, sigmas, "sample_lcm"):
        x = denoise_step(model, x, sigmas, i, callback)
        if sigmas[i + 1] > 0:
            x = noise_scaling(sigmas[i + 1], noise_sampler(sigmas[i], sigmas[i + 1]), x)
    return x


sample_ddim = sample_euler
"""ComfyUI's ``ddim`` is Euler on the chosen sigmas (equal to DDIM eta=0 for eps models); the
difference, a separately seeded inpainting noise, is its record's ``random_inpaint_noise``."""
