"""Deterministic multistep samplers: DPM-Solver++(2M) and UniPC (ComfyUI's ``uni_pc`` / ``uni_pc_bh2``)."""

from __future__ import annotations

import torch
from torch import Tensor

from .basic import Callback, check_sigmas, denoise_step, model_at, report_step, sigma_steps
from .denoisers import Denoiser


@torch.no_grad()
def sample_dpmpp_2m(model: Denoiser, x: Tensor, sigmas: Tensor, *, callback: Callback | None = None) -> Tensor:
    """DPM-Solver++(2M): second-order multistep exponential integrator in log sigma."""
    old_denoised: Tensor | None = None
    steps = sigma_steps(x, sigmas, "sample_dpmpp_2m")
    for i in steps:
        denoised = denoise_step(model, x, sigmas, i, callback)
        t, t_next = -sigmas[i].log(), -sigmas[i + 1].log()
        h = t_next - t
        if old_denoised is None or steps.to_zero(i):
            x = (sigmas[i + 1] / sigmas[i]) * x - (-h).expm1() * denoised
        else:
            r = (t + sigmas[i - 1].log()) / h
            denoised_d = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old_denoised
            x = (sigmas[i + 1] / sigmas[i]) * x - (-h).expm1() * denoised_d
        old_denoised = denoised
    return x


def _vp_log_alpha(sigma: Tensor) -> Tensor:
    """``log alpha`` of the VP process with ``sigma_ve = sigma``: ``-0.5 log(1 + sigma^2)``."""
    return 0.5 * torch.log(1 / (sigma * sigma + 1))


def _vp_std(sigma: Tensor) -> Tensor:
    return torch.sqrt(1.0 - torch.exp(2.0 * _vp_log_alpha(sigma)))


def _vp_lambda(sigma: Tensor) -> Tensor:
    la = _vp_log_alpha(sigma)
    return la - 0.5 * torch.log(1.0 - torch.exp(2.0 * la))


def _solve(a: Tensor, b: Tensor) -> Tensor:
    """``torch.linalg.solve(a [k, k], b [k])`` without its error check, which reads a GPU's result on
    the host every step (the Vandermonde-like UniPC systems are not singular for distinct sigmas)."""
    return torch.linalg.solve_ex(a, b)[0]


def _unipc_update(model_fn: Denoiser, x: Tensor, prev_x0: list[Tensor], prev_t: list[Tensor], t: Tensor,
                  order: int, variant: str, use_corrector: bool) -> tuple[Tensor, Tensor | None]:
    """One UniPC-bh predictor(-corrector) step in VP space with data prediction (UniPC paper Alg. 2)."""
    t0 = prev_t[-1]
    x0_0 = prev_x0[-1]
    lam0, lam_t = _vp_lambda(t0), _vp_lambda(t)
    sigma0, sigma_t = _vp_std(t0), _vp_std(t)
    alpha_t = torch.exp(_vp_log_alpha(t))
    h = lam_t - lam0
    rks: list[Tensor] = []
    d1s: list[Tensor] = []
    for i in range(1, order):
        rk = (_vp_lambda(prev_t[-(i + 1)]) - lam0) / h
        rks.append(rk)
        d1s.append((prev_x0[-(i + 1)] - x0_0) / rk)
    rks.append(torch.ones_like(h))
    rk_t = torch.stack(rks)
    hh = -h
    h_phi_1 = torch.expm1(hh)
    h_phi_k = h_phi_1 / hh - 1
    b_h = hh if variant == "bh1" else torch.expm1(hh)
    rows, b = [], []
    fact = 1
    for i in range(1, order + 1):
        rows.append(rk_t ** (i - 1))
        b.append(h_phi_k * fact / b_h)
        fact *= i + 1
        h_phi_k = h_phi_k / hh - 1 / fact
    r_mat, b_vec = torch.stack(rows), torch.stack(b)
    x_lin = (sigma_t / sigma0) * x - (alpha_t * h_phi_1) * x0_0
    if d1s:
        rhos_p = torch.tensor([0.5], dtype=x.dtype) if order == 2 else _solve(r_mat[:-1, :-1], b_vec[:-1])
        pred = sum(r * d for r, d in zip(rhos_p.to(x.dtype), d1s, strict=True))
    else:
        pred = 0
    x_t = x_lin - (alpha_t * b_h) * pred
    if not use_corrector:
        return x_t, None
    rhos_c = torch.tensor([0.5], dtype=x.dtype) if order == 1 else _solve(r_mat, b_vec).to(x.dtype)
    x0_t = model_fn(x_t, t)
    corr = sum(r * d for r, d in zip(rhos_c[:-1], d1s, strict=True)) if d1s else 0
    x_t = x_lin - (alpha_t * b_h) * (corr + rhos_c[-1] * (x0_t - x0_0))
    return x_t, x0_t


@torch.no_grad()
def sample_uni_pc(model: Denoiser, x: Tensor, sigmas: Tensor, *, callback: Callback | None = None,
                  variant: str = "bh1") -> Tensor:
    """UniPC multistep (order ``min(3, steps - 1)``, lower order at the end), as ComfyUI runs it.

    Works in VP space (``x_vp = x / sqrt(1 + sigma^2)``) with ``t = sigma``; a final sigma of 0 is
    replaced by 0.001. ``variant``: ``"bh1"`` (ComfyUI ``uni_pc``) or ``"bh2"`` (``uni_pc_bh2``).
    """
    if variant not in ("bh1", "bh2"):
        raise ValueError(f"sample_uni_pc: variant must be 'bh1' or 'bh2', got {variant!r}")
    host = check_sigmas(x, sigmas, "sample_uni_pc")
    ts = sigmas.clone()
    if host[-1] == 0:
        ts[-1] = 0.001

    def model_fn(x_vp: Tensor, t: Tensor) -> Tensor:
        return model_at(model, x_vp * torch.sqrt(1.0 + t * t), t)

    steps = len(ts) - 1
    order = min(3, steps - 1)
    x = x / torch.sqrt(1.0 + ts[0] ** 2)
    prev_x0: list[Tensor] = []
    prev_t: list[Tensor] = []
    for idx in range(steps):
        if idx == 0:
            prev_x0, prev_t = [model_fn(x, ts[0])], [ts[0]]
        elif idx < order:
            x, x0 = _unipc_update(model_fn, x, prev_x0, prev_t, ts[idx], idx, variant, True)
            prev_x0.append(x0 if x0 is not None else model_fn(x, ts[idx]))
            prev_t.append(ts[idx])
        else:
            last = steps if idx == steps - 1 else idx
            for step in range(idx, last + 1):
                step_order = min(order, steps + 1 - step)
                x, x0 = _unipc_update(model_fn, x, prev_x0, prev_t, ts[step], step_order, variant, step != steps)
                prev_x0, prev_t = prev_x0[1:] + prev_x0[-1:], prev_t[1:] + [ts[step]]
                if step < steps:
                    prev_x0[-1] = x0 if x0 is not None else model_fn(x, ts[step])
        report_step(callback, x, idx, sigmas[idx], prev_x0[-1])
    return x / torch.exp(_vp_log_alpha(ts[-1]))


@torch.no_grad()
def sample_uni_pc_bh2(model: Denoiser, x: Tensor, sigmas: Tensor, *, callback: Callback | None = None) -> Tensor:
    """UniPC with the bh2 variant (ComfyUI ``uni_pc_bh2``)."""
    return sample_uni_pc(model, x, sigmas, callback=callback, variant="bh2")
