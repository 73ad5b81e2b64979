"""Deterministic single-step samplers (k-diffusion style) and the helpers all samplers share.

Every sampler is a stateless loop ``sample_x(model, x, sigmas, *, callback=None, ...) -> x`` where
``model(x [B,...], sigma [B]) -> x0`` is a :data:`latent_ops.sampling.denoisers.Denoiser`, ``x`` is the
noised model-space latent at ``sigmas[0]`` and ``sigmas`` is a decreasing 1-D tensor. The callback
receives k-diffusion's dict ``{"x", "i", "sigma", "sigma_hat", "denoised"}`` after each model call
of a step and may raise (interrupt). Stochastic samplers take an explicit ``noise_sampler`` (no
global RNG anywhere). A loop is built from :func:`sigma_steps` (or :func:`ancestral_steps`) and
:func:`denoise_step`; a new sampler is such a function plus one record in
:data:`latent_ops.sampling.registry.SAMPLERS`. The steps carry the sigmas as host floats, read once
per run: a loop branches on those (``steps.to_zero(i)``) and draws noise through ``steps.noise``, so
it never reads a device tensor per step (each such read waits for a GPU to finish its queue).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from .denoisers import Denoiser, DiscreteSampling, NoiseScaling

Callback = Callable[[dict], None]
"""``callback({"x", "i", "sigma", "sigma_hat", "denoised"})`` once per step."""
NoiseSampler = Callable[[Tensor, Tensor], Tensor]
"""``noise_sampler(sigma, sigma_next) -> unit Gaussian noise shaped like x``. Loops call it through
:func:`noise_between`, which passes host floats instead to one that sets ``takes_host_sigmas = True``."""

__all__ = [
    "AncestralSteps", "Callback", "NoiseSampler", "NoiseScaling", "SigmaSteps", "ancestral_steps", "check_sigmas",
    "denoise_step", "dpm_2_step", "get_ancestral_step", "model_at", "noise_between", "report_step", "sample_ddim",
    "sample_dpm_2", "sample_euler", "sample_heun", "sample_lcm", "sample_lms", "sample_lms_kdiffusion",
    "sigma_steps", "to_d",
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


def check_sigmas(x: Tensor, sigmas: Tensor, name: str) -> tuple[float, ...]:
    """Raise ValueError unless ``sigmas`` is a finite, non-negative 1-D tensor and x is finite-shaped.

    Returns: the sigmas as host floats, the run's one read of them (``sigmas.tolist()``).
    """
    if sigmas.ndim != 1 or len(sigmas) < 1:
        raise ValueError(f"{name}: sigmas must be a non-empty 1-D tensor, got shape {tuple(sigmas.shape)}")
    host = tuple(sigmas.tolist())
    if not all(math.isfinite(s) and s >= 0 for s in host):
        raise ValueError(f"{name}: sigmas must be finite and >= 0, got {list(host)}")
    if x.ndim < 2:
        raise ValueError(f"{name}: x must be batched [B, ...], got shape {tuple(x.shape)}")
    return host


def noise_between(noise_sampler: NoiseSampler, sigma: Tensor, sigma_next: Tensor,
                  host: tuple[float, float]) -> Tensor:
    """``noise_sampler(sigma, sigma_next)``; a noise sampler whose ``takes_host_sigmas`` is true
    (:class:`latent_ops.noise.brownian.BrownianNoise`) is called with ``host`` instead, the same two
    sigmas as host floats, so it reads nothing from the device."""
    if getattr(noise_sampler, "takes_host_sigmas", False):
        return noise_sampler(*host)
    return noise_sampler(sigma, sigma_next)


@dataclass(frozen=True)
class _HostSigmas:
    host: tuple[float, ...]
    """The run's sigmas as host floats (read once), so a loop branches on them without synchronising."""

    def to_zero(self, i: int) -> bool:
        """Whether step ``i`` ends on sigma 0 (``sigmas[i + 1] == 0``)."""
        return self.host[i + 1] == 0

    def noise(self, noise_sampler: NoiseSampler, sigmas: Tensor, i: int) -> Tensor:
        """Step ``i``'s noise ``noise_sampler(sigmas[i], sigmas[i + 1])`` (see :func:`noise_between`)."""
        return noise_between(noise_sampler, sigmas[i], sigmas[i + 1], (self.host[i], self.host[i + 1]))


@dataclass(frozen=True)
class SigmaSteps(_HostSigmas, Sequence[int]):
    """The step indices ``0 .. N - 1`` of a run over ``sigmas [N + 1]``, with the sigmas on the host."""

    def __len__(self) -> int:
        return len(self.host) - 1

    def __getitem__(self, i: int) -> int:  # type: ignore[override]
        return range(len(self))[i]

    def __iter__(self) -> Iterator[int]:
        return iter(range(len(self)))


@dataclass(frozen=True)
class AncestralSteps(_HostSigmas):
    """A run's steps with their ancestral splits; iterates ``(i, sigma_down, sigma_up)`` (0-dim tensors)."""

    down: tuple[Tensor, ...]
    up: tuple[Tensor, ...]
    down_zero: tuple[bool, ...]
    """``down[i] == 0``, read once for the whole run."""

    def __iter__(self) -> Iterator[tuple[int, Tensor, Tensor]]:
        return iter(zip(range(len(self.down)), self.down, self.up, strict=True))


def sigma_steps(x: Tensor, sigmas: Tensor, name: str) -> SigmaSteps:
    """The step indices ``0 .. len(sigmas) - 2`` of sampler ``name``, after :func:`check_sigmas`."""
    return SigmaSteps(check_sigmas(x, sigmas, name))


def ancestral_steps(x: Tensor, sigmas: Tensor, name: str, eta: float) -> AncestralSteps:
    """:func:`sigma_steps` with each step's ancestral split: iterates ``(i, sigma_down, sigma_up)``.

    The splits are computed up front, step by step, and ``sigma_down == 0`` read for all of them at once.
    """
    host = check_sigmas(x, sigmas, name)
    splits = [get_ancestral_step(sigmas[i], sigmas[i + 1], eta) for i in range(len(host) - 1)]
    down, up = tuple(d for d, _ in splits), tuple(u for _, u in splits)
    if not eta or not down:  # eta 0: each down is sigmas[i + 1] itself
        zero = tuple(s == 0 for s in host[1:])
    else:
        zero = tuple(torch.stack(down).eq(0).tolist())
    return AncestralSteps(host, down, up, zero)


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
    steps = sigma_steps(x, sigmas, "sample_heun")
    for i in steps:
        d = to_d(x, sigmas[i], denoise_step(model, x, sigmas, i, callback))
        dt = sigmas[i + 1] - sigmas[i]
        if steps.to_zero(i):
            x = x + d * dt
        else:
            x_2 = x + d * dt
            d_2 = to_d(x_2, sigmas[i + 1], model_at(model, x_2, sigmas[i + 1]))
            x = x + (d + d_2) / 2 * dt
    return x


def dpm_2_step(model: Denoiser, x: Tensor, d: Tensor, sigma: Tensor, sigma_to: Tensor, *,
               to_zero: bool | None = None) -> Tensor:
    """One DPM-Solver-2 step from ``sigma`` to ``sigma_to`` given the derivative ``d`` at ``sigma``:
    Euler when ``sigma_to == 0``, else the midpoint in log sigma. ``to_zero``: that test, known on the
    host (None reads ``sigma_to``, a device synchronisation)."""
    if to_zero is None:
        to_zero = bool(sigma_to == 0)
    if to_zero:
        return x + d * (sigma_to - sigma)
    sigma_mid = sigma.log().lerp(sigma_to.log(), 0.5).exp()
    x_2 = x + d * (sigma_mid - sigma)
    d_2 = to_d(x_2, sigma_mid, model_at(model, x_2, sigma_mid))
    return x + d_2 * (sigma_to - sigma)


@torch.no_grad()
def sample_dpm_2(model: Denoiser, x: Tensor, sigmas: Tensor, *, callback: Callback | None = None) -> Tensor:
    """DPM-Solver-2-style midpoint steps in log sigma (k-diffusion ``sample_dpm_2``)."""
    steps = sigma_steps(x, sigmas, "sample_dpm_2")
    for i in steps:
        d = to_d(x, sigmas[i], denoise_step(model, x, sigmas, i, callback))
        x = dpm_2_step(model, x, d, sigmas[i], sigmas[i + 1], to_zero=steps.to_zero(i))
    return x


def _lms_coeff(order: int, t: Sequence[float], i: int, j: int) -> float:
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
    steps = sigma_steps(x, sigmas, name)
    t = steps.host
    ds: list[Tensor] = []
    for i in steps:
        denoised = denoise_step(model, x, sigmas, i, callback)
        ds.append(to_d(x, sigmas[i], denoised))
        if len(ds) > order:
            ds.pop(0)
        if denoise_last and steps.to_zero(i):
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
    steps = sigma_steps(x, sigmas, "sample_lcm")
    for i in steps:
        x = denoise_step(model, x, sigmas, i, callback)
        if not steps.to_zero(i):
            x = noise_scaling(sigmas[i + 1], steps.noise(noise_sampler, sigmas, i), x)
    return x


sample_ddim = sample_euler
"""ComfyUI's ``ddim`` is Euler on the chosen sigmas (equal to DDIM eta=0 for eps models); the
difference, a separately seeded inpainting noise, is its record's ``random_inpaint_noise``."""
