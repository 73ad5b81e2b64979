"""Sigma schedules as pure functions, with ComfyUI's names and formulas (``comfy/samplers.py``).

Every schedule returns a 1-D float32 tensor of decreasing sigmas that (normally) ends in 0. The
model-dependent ones read a :class:`ModelSamplingLike` (the sigma table of a discrete model, or a
flow model's shifted table). :func:`ksampler_sigmas` adds what ComfyUI's ``KSampler`` does on top:
``denoise < 1`` windows, the discarded penultimate sigma of some samplers, and start/end steps.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Protocol

import torch
from torch import Tensor

from . import registry


class ModelSamplingLike(Protocol):
    """What schedules need from a model's sampling object (see :mod:`latent_ops.sampling.denoisers`)."""

    sigmas: Tensor

    @property
    def sigma_min(self) -> Tensor: ...

    @property
    def sigma_max(self) -> Tensor: ...

    def timestep(self, sigma: Tensor) -> Tensor: ...

    def sigma(self, timestep: Tensor) -> Tensor: ...


def _append_zero(x: Tensor) -> Tensor:
    """``[N] -> [N+1]`` with a trailing 0."""
    return torch.cat([x, x.new_zeros([1])])


def _check_steps(steps: int, name: str) -> None:
    if int(steps) != steps or steps < 1:
        raise ValueError(f"{name}: steps must be an integer >= 1, got {steps!r}")


def karras(steps: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> Tensor:
    """Karras et al. (2022) schedule: ``(max^(1/rho) + ramp (min^(1/rho) - max^(1/rho)))^rho``.

    Args: steps: number of nonzero sigmas. sigma_min, sigma_max: range (> 0). rho: warp.
    Returns: ``[steps + 1]`` float32, ending in 0. Raises: ValueError on bad range or steps.
    """
    _check_steps(steps, "karras")
    if not 0 < sigma_min <= sigma_max:
        raise ValueError(f"karras: need 0 < sigma_min <= sigma_max, got {sigma_min}, {sigma_max}")
    ramp = torch.linspace(0, 1, steps)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return _append_zero((hi + ramp * (lo - hi)) ** rho)


def exponential(steps: int, sigma_min: float, sigma_max: float) -> Tensor:
    """Log-uniform sigmas from ``sigma_max`` to ``sigma_min``; ``[steps + 1]``, ending in 0."""
    _check_steps(steps, "exponential")
    if not 0 < sigma_min <= sigma_max:
        raise ValueError(f"exponential: need 0 < sigma_min <= sigma_max, got {sigma_min}, {sigma_max}")
    return _append_zero(torch.linspace(math.log(sigma_max), math.log(sigma_min), steps).exp())


def kl_optimal(steps: int, sigma_min: float, sigma_max: float) -> Tensor:
    """"Align Your Steps"-paper KL-optimal schedule: tan of a linear ramp in atan(sigma).

    Returns ``[steps + 1]`` float32 ending in 0 (ComfyUI's ``kl_optimal_scheduler``). One step gives
    ``[sigma_max, 0]``: ComfyUI divides the ramp by ``steps - 1 = 0`` there and returns ``[nan, 0]`` (so
    its KSampler produces NaN); ours takes the ramp's start, the one step from sigma_max to 0.
    """
    _check_steps(steps, "kl_optimal")
    idx = torch.arange(steps, dtype=torch.float32).div_(max(steps - 1, 1))
    out = idx.new_zeros(steps + 1)
    out[:-1] = (idx * math.atan(sigma_min) + (1 - idx) * math.atan(sigma_max)).tan_()
    return out


def normal(ms: ModelSamplingLike, steps: int, *, sgm: bool = False) -> Tensor:
    """ComfyUI ``normal``: timesteps linear from t(sigma_max) to t(sigma_min), mapped to sigmas.

    With ``sgm=True`` (``sgm_uniform``) ``steps + 1`` timesteps are spaced and the last dropped.
    When the model's smallest sigma is ~0 (flow models), it is kept as the final sigma instead
    of appending a 0. Returns ``[steps + 1]`` float32.
    """
    _check_steps(steps, "normal")
    start = ms.timestep(ms.sigma_max)
    end = ms.timestep(ms.sigma_min)
    append = True
    if sgm:
        ts = torch.linspace(float(start), float(end), steps + 1)[:-1]
    else:
        if math.isclose(float(ms.sigma(end)), 0.0, abs_tol=1e-5):
            steps += 1
            append = False
        ts = torch.linspace(float(start), float(end), steps)
    sigs = [float(ms.sigma(t)) for t in ts]
    if append:
        sigs.append(0.0)
    return torch.tensor(sigs, dtype=torch.float32)


def sgm_uniform(ms: ModelSamplingLike, steps: int) -> Tensor:
    """ComfyUI ``sgm_uniform``: :func:`normal` with ``sgm=True``."""
    return normal(ms, steps, sgm=True)


def simple(ms: ModelSamplingLike, steps: int) -> Tensor:
    """ComfyUI ``simple``: every ``len(table)/steps``-th entry of the sigma table from the top."""
    _check_steps(steps, "simple")
    table = ms.sigmas
    stride = len(table) / steps
    sigs = [float(table[-(1 + int(i * stride))]) for i in range(steps)]
    return torch.tensor([*sigs, 0.0], dtype=torch.float32)


def ddim_uniform(ms: ModelSamplingLike, steps: int) -> Tensor:
    """ComfyUI ``ddim_uniform``: table entries 1, 1+k, 1+2k, ... (k = len//steps), reversed, then 0."""
    _check_steps(steps, "ddim_uniform")
    table = ms.sigmas
    sigs: list[float]
    if math.isclose(float(table[1]), 0.0, abs_tol=1e-5):
        steps += 1
        sigs = []
    else:
        sigs = [0.0]
    stride = max(len(table) // steps, 1)
    sigs += [float(table[i]) for i in range(1, len(table), stride)]
    return torch.tensor(sigs[::-1], dtype=torch.float32)


def beta(ms: ModelSamplingLike, steps: int, alpha: float = 0.6, beta_: float = 0.6) -> Tensor:
    """ComfyUI ``beta``: table indices at the Beta(alpha, beta) quantiles (duplicates dropped).

    Needs scipy (imported here). Returns ``[<= steps + 1]`` float32 ending in 0.
    """
    _check_steps(steps, "beta")
    import numpy as np
    from scipy import stats

    total = len(ms.sigmas) - 1
    ts = 1 - np.linspace(0, 1, steps, endpoint=False)
    ts = np.rint(stats.beta.ppf(ts, alpha, beta_) * total)
    sigs: list[float] = []
    last = -1.0
    for t in ts:
        if t != last:
            sigs.append(float(ms.sigmas[int(t)]))
        last = t
    return torch.tensor([*sigs, 0.0], dtype=torch.float32)


def linear_quadratic(ms: ModelSamplingLike, steps: int, threshold_noise: float = 0.025,
                     linear_steps: int | None = None) -> Tensor:
    """ComfyUI ``linear_quadratic`` (from Mochi): linear then quadratic in 1 - sigma, times sigma_max."""
    _check_steps(steps, "linear_quadratic")
    if steps == 1:
        sched = [1.0, 0.0]
    else:
        lin = steps // 2 if linear_steps is None else linear_steps
        lin_part = [i * threshold_noise / lin for i in range(lin)]
        diff = lin - threshold_noise * steps
        quad_steps = steps - lin
        qc = diff / (lin * quad_steps**2)
        lc = threshold_noise / lin - 2 * diff / (quad_steps**2)
        const = qc * lin**2
        quad_part = [qc * i**2 + lc * i + const for i in range(lin, steps)]
        sched = [1.0 - x for x in [*lin_part, *quad_part, 1.0]]
    return torch.tensor(sched, dtype=torch.float32) * float(ms.sigma_max)


_MS_SCHEDULERS: dict[str, Callable[[ModelSamplingLike, int], Tensor]] = {
    "simple": simple,
    "sgm_uniform": sgm_uniform,
    "ddim_uniform": ddim_uniform,
    "beta": beta,
    "normal": normal,
    "linear_quadratic": linear_quadratic,
}
_RANGE_SCHEDULERS: dict[str, Callable[[int, float, float], Tensor]] = {
    "karras": karras,
    "exponential": exponential,
    "kl_optimal": kl_optimal,
}

SCHEDULER_NAMES: tuple[str, ...] = (
    "simple", "sgm_uniform", "karras", "exponential", "ddim_uniform", "beta", "normal",
    "linear_quadratic", "kl_optimal",
)
"""ComfyUI's ``SCHEDULER_NAMES``, in ComfyUI's order."""

DISCARD_PENULTIMATE_SIGMA_SAMPLERS: frozenset[str] = frozenset(
    registry.SAMPLERS.names(discard_penultimate_sigma=True))
"""View of the sampler table: samplers for which ComfyUI computes ``steps + 1`` sigmas and drops the
second-to-last one (their records' ``discard_penultimate_sigma``)."""


def calculate_sigmas(ms: ModelSamplingLike, scheduler: str, steps: int) -> Tensor:
    """Sigmas of ``scheduler`` for ``steps`` steps on the model's table (ComfyUI ``calculate_sigmas``).

    Returns: 1-D float32 CPU tensor. Raises: ValueError for an unknown scheduler name.
    """
    if scheduler in _MS_SCHEDULERS:
        return _MS_SCHEDULERS[scheduler](ms, steps)
    if scheduler in _RANGE_SCHEDULERS:
        return _RANGE_SCHEDULERS[scheduler](steps, float(ms.sigma_min), float(ms.sigma_max))
    raise ValueError(f"unknown scheduler {scheduler!r}; known: {list(SCHEDULER_NAMES)}")


def ksampler_sigmas(ms: ModelSamplingLike, scheduler: str, steps: int, *, denoise: float = 1.0,
                    sampler_name: str = "euler") -> Tensor:
    """The sigmas ComfyUI's ``KSampler`` uses (``calculate_sigmas`` + ``set_steps``).

    ``denoise < 1`` computes ``int(steps / denoise)`` steps and keeps the last ``steps + 1``
    sigmas; ``denoise <= 0`` gives an empty tensor. Samplers whose record (in
    :data:`latent_ops.sampling.registry.SAMPLERS`) has ``discard_penultimate_sigma`` compute one
    step more and drop the penultimate sigma.

    Args: ms: model sampling. scheduler: a :data:`SCHEDULER_NAMES` entry. steps: >= 1.
        denoise: in [0, 1]. sampler_name: a sampler name; decides the penultimate-sigma rule.
    Returns: ``[<= steps + 1]`` float32. Raises: ValueError on bad names/values.
    """
    discard_penultimate = registry.SAMPLERS.record(sampler_name, "ksampler_sigmas").discard_penultimate_sigma
    _check_steps(steps, "ksampler_sigmas")
    if not 0.0 <= denoise <= 1.0 or math.isnan(denoise):
        raise ValueError(f"ksampler_sigmas: denoise must be in [0, 1], got {denoise}")

    def compute(n: int) -> Tensor:
        if discard_penultimate:
            s = calculate_sigmas(ms, scheduler, n + 1)
            return torch.cat([s[:-2], s[-1:]])
        return calculate_sigmas(ms, scheduler, n)

    if denoise > 0.9999:
        return compute(steps)
    if denoise <= 0.0:
        return torch.zeros(0)
    return compute(int(steps / denoise))[-(steps + 1):]


def step_window(sigmas: Tensor, *, start_step: int | None = None, end_step: int | None = None,
                force_full_denoise: bool = True) -> Tensor:
    """Cut ``sigmas`` to steps ``[start_step, end_step)`` the way ComfyUI's ``KSampler.sample`` does.

    An ``end_step`` inside the schedule truncates it; with ``force_full_denoise`` the new last sigma
    is set to 0 (otherwise leftover noise is returned). A ``start_step`` at or past the end gives a
    one-element tensor (nothing to do). Returns a new tensor; ``sigmas`` is not modified.
    """
    for name, v in (("start_step", start_step), ("end_step", end_step)):
        if v is not None and v < 0:
            raise ValueError(f"step_window: {name} must be >= 0, got {v}")
    out = sigmas.clone()
    if end_step is not None and end_step < len(out) - 1:
        out = out[: end_step + 1].clone()
        if force_full_denoise:
            out[-1] = 0.0
    if start_step is not None:
        out = out[start_step:] if start_step < len(out) - 1 else out[-1:]
    return out
