"""Ancestral and SDE samplers (k-diffusion algorithms) with an explicit ``noise_sampler``.

The noise sampler is required: pass :func:`latent_ops.sampling.step_noise_sampler` (per-image CPU
streams from :class:`latent_ops.noise.conventions.StepNoise`) so image k of a batch gets the same step noise as
when it is sampled alone, on any device.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .basic import (
    Callback,
    NoiseSampler,
    ancestral_steps,
    denoise_step,
    dpm_2_step,
    get_ancestral_step,
    model_at,
    noise_between,
    sigma_steps,
    to_d,
)
from .denoisers import Denoiser


def _t(sigma: Tensor) -> Tensor:
    return sigma.log().neg()


def log_step(sigma: Tensor, sigma_next: Tensor) -> Tensor:
    """Step size ``h = t_next - t`` in ``t = -log sigma`` (the exponential integrators' variable)."""
    return _t(sigma_next) - _t(sigma)


def _sigma(t: Tensor) -> Tensor:
    return t.neg().exp()


def _add_noise(x: Tensor, noise: Tensor, s_noise: float, amount: Tensor) -> Tensor:
    """``x + noise * s_noise * amount``: the fresh noise of one step."""
    return x + noise * s_noise * amount


def _sde_noise(x: Tensor, noise: Tensor, sigma_next: Tensor, s_noise: float, decay: Tensor) -> Tensor:
    """``x + noise sigma_next sqrt(1 - exp(decay)) s_noise``: a multistep SDE step's noise (``decay = -2 eta h``)."""
    return x + noise * sigma_next * decay.expm1().neg().sqrt() * s_noise


def _split_times(sigma: Tensor, sigma_next: Tensor, r: float) -> tuple[Tensor, Tensor, Tensor]:
    """``(t, t_next, s)`` of a ``dpmpp_sde`` step: ``t = -log sigma`` and the intermediate ``s = t + r h``."""
    t, t_next = _t(sigma), _t(sigma_next)
    h = t_next - t
    return t, t_next, t + h * r



def _host_queries(times: dict[int, tuple[Tensor, Tensor, Tensor]]) -> dict[int, list[float]]:
    """``{i: [sigma(t), sigma(s), sigma(t_next)]}`` of the ``(t, t_next, s)`` of each step ``i``: the sigmas
    ``dpmpp_sde`` asks its noise sampler about, as host floats, read in one go for the whole run."""
    if not times:
        return {}
    rows = torch.stack([torch.stack([_sigma(t), _sigma(s), _sigma(t_next)]) for t, t_next, s in times.values()])
    return dict(zip(times, rows.tolist(), strict=True))


@torch.no_grad()
def sample_euler_ancestral(model: Denoiser, x: Tensor, sigmas: Tensor, *, noise_sampler: NoiseSampler,
                           callback: Callback | None = None, eta: float = 1.0, s_noise: float = 1.0) -> Tensor:
    """Euler steps down to ``sigma_down``, then fresh noise of size ``sigma_up``."""
    steps = ancestral_steps(x, sigmas, "sample_euler_ancestral", eta)
    for i, down, up in steps:
        x = x + to_d(x, sigmas[i], denoise_step(model, x, sigmas, i, callback)) * (down - sigmas[i])
        if not steps.to_zero(i):
            x = _add_noise(x, steps.noise(noise_sampler, sigmas, i), s_noise, up)
    return x


@torch.no_grad()
def sample_euler_ancestral_rf(model: Denoiser, x: Tensor, sigmas: Tensor, *, noise_sampler: NoiseSampler,
                              callback: Callback | None = None, eta: float = 1.0, s_noise: float = 1.0) -> Tensor:
    """Euler ancestral for rectified-flow models (ComfyUI ``sample_euler_ancestral_RF``), sigmas in [0, 1]."""
    steps = sigma_steps(x, sigmas, "sample_euler_ancestral_rf")
    for i in steps:
        denoised = denoise_step(model, x, sigmas, i, callback)
        if steps.to_zero(i):
            x = denoised
            continue
        down = sigmas[i + 1] * (1 + (sigmas[i + 1] / sigmas[i] - 1) * eta)
        alpha_next, alpha_down = 1 - sigmas[i + 1], 1 - down
        renoise = (sigmas[i + 1] ** 2 - down**2 * alpha_next**2 / alpha_down**2) ** 0.5
        ratio = down / sigmas[i]
        x = ratio * x + (1 - ratio) * denoised
        if eta > 0:
            x = _add_noise((alpha_next / alpha_down) * x, steps.noise(noise_sampler, sigmas, i), s_noise, renoise)
    return x


@torch.no_grad()
def sample_dpm_2_ancestral(model: Denoiser, x: Tensor, sigmas: Tensor, *, noise_sampler: NoiseSampler,
                           callback: Callback | None = None, eta: float = 1.0, s_noise: float = 1.0) -> Tensor:
    """DPM-Solver-2 midpoint steps to ``sigma_down`` plus ancestral noise (k-diffusion
    ``sample_dpm_2_ancestral``); a step whose ``sigma_down`` is 0 is an Euler step and adds no noise."""
    steps = ancestral_steps(x, sigmas, "sample_dpm_2_ancestral", eta)
    for i, down, up in steps:
        d = to_d(x, sigmas[i], denoise_step(model, x, sigmas, i, callback))
        x = dpm_2_step(model, x, d, sigmas[i], down, to_zero=steps.down_zero[i])
        if not steps.down_zero[i]:
            x = _add_noise(x, steps.noise(noise_sampler, sigmas, i), s_noise, up)
    return x


@torch.no_grad()
def sample_dpmpp_2s_ancestral(model: Denoiser, x: Tensor, sigmas: Tensor, *, noise_sampler: NoiseSampler,
                              callback: Callback | None = None, eta: float = 1.0, s_noise: float = 1.0) -> Tensor:
    """DPM-Solver++(2S) single-step second order to ``sigma_down``, plus ancestral noise."""
    steps = ancestral_steps(x, sigmas, "sample_dpmpp_2s_ancestral", eta)
    for i, down, up in steps:
        denoised = denoise_step(model, x, sigmas, i, callback)
        if steps.down_zero[i]:
            x = x + to_d(x, sigmas[i], denoised) * (down - sigmas[i])
        else:
            t, t_next = _t(sigmas[i]), _t(down)
            h = t_next - t
            s = t + h / 2
            x_2 = (_sigma(s) / _sigma(t)) * x - (-h / 2).expm1() * denoised
            denoised_2 = model_at(model, x_2, _sigma(s))
            x = (_sigma(t_next) / _sigma(t)) * x - (-h).expm1() * denoised_2
        if not steps.to_zero(i):
            x = _add_noise(x, steps.noise(noise_sampler, sigmas, i), s_noise, up)
    return x


@torch.no_grad()
def sample_dpmpp_sde(model: Denoiser, x: Tensor, sigmas: Tensor, *, noise_sampler: NoiseSampler,
                     callback: Callback | None = None, eta: float = 1.0, s_noise: float = 1.0,
                     r: float = 0.5) -> Tensor:
    """DPM-Solver++ (stochastic, two model calls per step; k-diffusion ``sample_dpmpp_sde``).

    The step noise is asked for at ``sigma``, the intermediate sigma and ``sigma_next`` as recomputed
    from the log times; their host values are read once, for all steps, before the loop.
    """
    steps = sigma_steps(x, sigmas, "sample_dpmpp_sde")
    times = {i: _split_times(sigmas[i], sigmas[i + 1], r) for i in steps if not steps.to_zero(i)}
    host = _host_queries(times)
    fac = 1 / (2 * r)
    for i in steps:
        denoised = denoise_step(model, x, sigmas, i, callback)
        if steps.to_zero(i):
            x = x + to_d(x, sigmas[i], denoised) * (sigmas[i + 1] - sigmas[i])
            continue
        t, t_next, s = times[i]
        at_t, at_s, at_next = host[i]
        sd, su = get_ancestral_step(_sigma(t), _sigma(s), eta)
        s_ = _t(sd)
        x_2 = (_sigma(s_) / _sigma(t)) * x - (t - s_).expm1() * denoised
        x_2 = _add_noise(x_2, noise_between(noise_sampler, _sigma(t), _sigma(s), (at_t, at_s)), s_noise, su)
        denoised_2 = model_at(model, x_2, _sigma(s))
        sd, su = get_ancestral_step(_sigma(t), _sigma(t_next), eta)
        t_next_ = _t(sd)
        denoised_d = (1 - fac) * denoised + fac * denoised_2
        x = (_sigma(t_next_) / _sigma(t)) * x - (t - t_next_).expm1() * denoised_d
        x = _add_noise(x, noise_between(noise_sampler, _sigma(t), _sigma(t_next), (at_t, at_next)), s_noise, su)
    return x


@torch.no_grad()
def sample_dpmpp_2m_sde(model: Denoiser, x: Tensor, sigmas: Tensor, *, noise_sampler: NoiseSampler,
                        callback: Callback | None = None, eta: float = 1.0, s_noise: float = 1.0,
                        solver_type: str = "midpoint") -> Tensor:
    """DPM-Solver++(2M) SDE (k-diffusion ``sample_dpmpp_2m_sde``), ``solver_type`` midpoint or heun."""
    if solver_type not in ("heun", "midpoint"):
        raise ValueError(f"sample_dpmpp_2m_sde: solver_type must be 'heun' or 'midpoint', got {solver_type!r}")
    old_denoised: Tensor | None = None
    h_last: Tensor | None = None
    steps = sigma_steps(x, sigmas, "sample_dpmpp_2m_sde")
    for i in steps:
        denoised = denoise_step(model, x, sigmas, i, callback)
        if not steps.to_zero(i):
            h = log_step(sigmas[i], sigmas[i + 1])
            eta_h = eta * h
            x = sigmas[i + 1] / sigmas[i] * (-eta_h).exp() * x + (-h - eta_h).expm1().neg() * denoised
            if old_denoised is not None and h_last is not None:
                r = h_last / h
                if solver_type == "heun":
                    coef = (-h - eta_h).expm1().neg() / (-h - eta_h) + 1
                else:
                    coef = 0.5 * (-h - eta_h).expm1().neg()
                x = x + coef * (1 / r) * (denoised - old_denoised)
            if eta:
                x = _sde_noise(x, steps.noise(noise_sampler, sigmas, i), sigmas[i + 1], s_noise, -2 * eta_h)
            h_last = h
        else:  # the last step lands on the model's x0
            x = denoised
        old_denoised = denoised
    return x


@torch.no_grad()
def sample_dpmpp_3m_sde(model: Denoiser, x: Tensor, sigmas: Tensor, *, noise_sampler: NoiseSampler,
                        callback: Callback | None = None, eta: float = 1.0, s_noise: float = 1.0) -> Tensor:
    """DPM-Solver++(3M) SDE (k-diffusion ``sample_dpmpp_3m_sde``)."""
    denoised_1: Tensor | None = None
    denoised_2: Tensor | None = None
    h: Tensor | None = None
    h_1: Tensor | None = None
    h_2: Tensor | None = None
    steps = sigma_steps(x, sigmas, "sample_dpmpp_3m_sde")
    for i in steps:
        denoised = denoise_step(model, x, sigmas, i, callback)
        if steps.to_zero(i):
            x = denoised
        else:
            h = log_step(sigmas[i], sigmas[i + 1])
            h_eta = h * (eta + 1)
            x = torch.exp(-h_eta) * x + (-h_eta).expm1().neg() * denoised
            phi_2 = h_eta.neg().expm1() / h_eta + 1
            if h_2 is not None and h_1 is not None and denoised_1 is not None and denoised_2 is not None:
                r0, r1 = h_1 / h, h_2 / h
                d1_0 = (denoised - denoised_1) / r0
                d1_1 = (denoised_1 - denoised_2) / r1
                d1 = d1_0 + (d1_0 - d1_1) * r0 / (r0 + r1)
                d2 = (d1_0 - d1_1) / (r0 + r1)
                phi_3 = phi_2 / h_eta - 0.5
                x = x + phi_2 * d1 - phi_3 * d2
            elif h_1 is not None and denoised_1 is not None:
                x = x + phi_2 * (denoised - denoised_1) / (h_1 / h)
            if eta:
                x = _sde_noise(x, steps.noise(noise_sampler, sigmas, i), sigmas[i + 1], s_noise, -2 * h * eta)
        denoised_1, denoised_2 = denoised, denoised_1
        h_1, h_2 = h, h_1
    return x
