"""The MODEL object, the text-encoder protocol and the sampling entry points ``sample`` / ``unsample``.

A :class:`DiffusionModel` bundles a raw network (``backbone``), its sampling maths
(:mod:`latent_ops.sampling.denoisers`) and its :class:`~latent_ops.latent_format.LatentFormat`. LATENT dicts
stay in raw VAE space; ``sample`` applies the latent format in and out, as ComfyUI does.
CONDITIONING is ComfyUI's structure: a list of ``[tensor [1 or B, T, D], dict]`` entries.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Protocol

import torch
from torch import Tensor

from .. import progress, seeds
from ..latent_format import LatentFormat
from ..noise import conventions as noise_mod
from . import registry as sampling
from . import schedules
from .denoisers import Backbone, Denoiser, ModelSampling, cfg_denoiser, inpaint_denoiser, prepare_mask
from .noise_sampler import make_noise_sampler

Conditioning = list
"""ComfyUI CONDITIONING: ``[[tensor [1|B, T, D], {"pooled_output": ..., ...}], ...]``."""

_UNSUPPORTED_COND_KEYS = ("area", "mask", "control", "gligen", "timestep_start", "timestep_end", "hooks")


class TextEncoder(Protocol):
    """``encode(text) -> CONDITIONING`` (``[[tensor [1, T, D], {...}]]``)."""

    def encode(self, text: str) -> Conditioning: ...


class DiffusionModel:
    """A latent diffusion denoiser: ``model(x, sigma, cond, **extra) -> x0`` in model space.

    Attributes: backbone: ``backbone(x_in, timestep, cond, **extra) -> raw output``.
        model_sampling: a :class:`~latent_ops.sampling.denoisers.DiscreteSampling` or ``FlowSampling``.
        latent_format: the family's latent format. prediction: ``"eps" | "v" | "flow"``.
        device: where the backbone runs. name: for messages.
    """

    def __init__(self, backbone: Backbone, model_sampling: ModelSampling, latent_format: LatentFormat, *,
                 device: torch.device | str = "cpu", name: str = "model") -> None:
        self.backbone = backbone
        self.model_sampling = model_sampling
        self.latent_format = latent_format
        self.device = torch.device(device)
        self.name = name

    @property
    def prediction(self) -> str:
        return self.model_sampling.prediction

    def __call__(self, x: Tensor, sigma: Tensor, cond: Tensor | None = None, **extra: Any) -> Tensor:
        """Denoise model-space ``x [B,C,H,W]`` at ``sigma [B]`` under ``cond [B,T,D]`` -> x0."""
        ms = self.model_sampling
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1).expand(x.shape[0])
        out = self.backbone(ms.calculate_input(sigma, x), ms.timestep(sigma).float().to(x.device), cond, **extra)
        return ms.calculate_denoised(sigma, out, x)

    def guided(self, positive: Conditioning, negative: Conditioning, cfg: float) -> Denoiser:
        """``denoiser(x, sigma) -> x0`` with classifier-free guidance over the two CONDITIONINGs.

        Several entries in one CONDITIONING are averaged (ComfyUI without areas/masks). Entries
        whose tensors have equal shapes run in one batched model call.
        """
        pos, neg = _entries(positive, "positive"), _entries(negative, "negative")
        plans: dict[tuple, _Plan] = {}

        def batched(x: Tensor, sigma: Tensor, kinds: Sequence[int]) -> Tensor:
            guided_ = 1 in kinds
            b = len(kinds) // (2 if guided_ else 1)
            key = (b, guided_, x.device)
            if key not in plans:
                plans[key] = _Plan([pos, neg] if guided_ else [pos], b, x.device)
            return plans[key].run(self, x[:b], sigma[:b])

        return cfg_denoiser(batched, cfg)


def _entries(cond: Conditioning, name: str) -> list[tuple[Tensor, dict]]:
    if not isinstance(cond, (list, tuple)) or not cond:
        raise ValueError(f"{name}: CONDITIONING must be a non-empty list of [tensor, dict], got {type(cond).__name__}")
    out = []
    for i, item in enumerate(cond):
        if not (isinstance(item, (list, tuple)) and len(item) == 2 and isinstance(item[0], Tensor)):
            raise ValueError(f"{name}[{i}]: expected [tensor, dict], got {type(item).__name__}")
        bad = [k for k in _UNSUPPORTED_COND_KEYS if k in item[1]]
        if bad:
            raise ValueError(f"{name}[{i}]: conditioning keys {bad} are not supported by the latent_ops sampler")
        if item[0].ndim != 3:
            raise ValueError(f"{name}[{i}]: conditioning tensor must be [B, T, D], got {tuple(item[0].shape)}")
        out.append((item[0], dict(item[1])))
    return out


def _expand(v: Any, b: int, device: torch.device) -> Any:
    if isinstance(v, Tensor) and v.ndim >= 1:
        if v.shape[0] not in (1, b):
            raise ValueError(f"conditioning batch {v.shape[0]} does not match latent batch {b}")
        return v.to(device).expand(b, *v.shape[1:]) if v.shape[0] == 1 else v.to(device)
    return v


def _shape_key(p: tuple[Tensor, dict]) -> tuple:
    return (tuple(p[0].shape), tuple(sorted((k, tuple(v.shape) if isinstance(v, Tensor) else repr(v))
                                          for k, v in p[1].items())))


class _Plan:
    """How to evaluate groups of conditioning entries (cond, uncond) for a batch of ``b`` latents:
    one batched model call when every entry has the same shapes, else one call per entry; the
    entries of a group are averaged. Built once per sampling run, reused at every step."""

    def __init__(self, groups: list[list[tuple[Tensor, dict]]], b: int, device: torch.device) -> None:
        self.owner = [g for g, entries in enumerate(groups) for _ in entries]
        self.n_groups = len(groups)
        self.entries = [(_expand(t, b, device), {k: _expand(v, b, device) for k, v in d.items()})
                        for entries in groups for t, d in entries]
        self.single = len(self.entries) > 1 and len({_shape_key(p) for p in self.entries}) == 1
        if self.single:
            first = self.entries[0][1]
            self.ctx = torch.cat([p[0] for p in self.entries])
            self.extra = {k: torch.cat([p[1][k] for p in self.entries]) if isinstance(v, Tensor) else v
                          for k, v in first.items()}

    def run(self, model: DiffusionModel, x: Tensor, sigma: Tensor) -> Tensor:
        n = len(self.entries)
        if self.single:
            outs = list(model(x.repeat(n, *([1] * (x.ndim - 1))), sigma.repeat(n), self.ctx, **self.extra).chunk(n))
        else:
            outs = [model(x, sigma, t, **d) for t, d in self.entries]
        if n == self.n_groups:
            return outs[0] if n == 1 else torch.cat(outs)
        res = []
        for g in range(self.n_groups):
            mine = [o for owner, o in zip(self.owner, outs, strict=True) if owner == g]
            res.append(torch.stack(mine).mean(0) if len(mine) > 1 else mine[0])
        return torch.cat(res)


def fix_empty_latent_channels(model: DiffusionModel, samples: Tensor) -> Tensor:
    """An all-zero latent with the wrong channel count -> zeros with the model's channels (ComfyUI).

    Raises: ValueError for a non-empty latent whose channels differ from the model's.
    """
    c = model.latent_format.channels
    if samples.shape[1] == c:
        return samples
    if torch.count_nonzero(samples) == 0:
        return samples.new_zeros((samples.shape[0], c, *samples.shape[2:]))
    raise ValueError(f"latent has {samples.shape[1]} channels but model {model.name!r} expects {c}")


def _check_latent(latent: dict, name: str) -> Tensor:
    if not isinstance(latent, dict) or not isinstance(latent.get("samples"), Tensor):
        raise ValueError(f"{name}: expected a LATENT dict with a 'samples' tensor")
    s = latent["samples"]
    if s.ndim not in (4, 5) or s.shape[0] < 1:
        raise ValueError(f"{name}: samples must be [B, C, H, W] or [B, C, T, H, W], got {tuple(s.shape)}")
    if not bool(torch.isfinite(s).all()):
        raise ValueError(f"{name}: samples contain NaN or Inf")
    return s


def _progress(callback: progress.Callback | None, total: int) -> sampling.Callback:
    report = callback if callback is not None else progress.report

    def cb(d: dict) -> None:
        report(int(d["i"]) + 1, total)

    return cb


def _is_max_denoise(ms: ModelSampling, sigma0: float) -> bool:
    top = float(ms.sigma_max)
    return math.isclose(top, sigma0, rel_tol=1e-5) or sigma0 > top


def sample(model: DiffusionModel, latent: dict, positive: Conditioning, negative: Conditioning, *, seed: int,
           steps: int, cfg: float, sampler_name: str, scheduler: str, denoise: float = 1.0,
           noise_convention: str = "comfy", subseed: int = 0, subseed_strength: float = 0.0,
           start_step: int | None = None, end_step: int | None = None, add_noise: bool = True,
           return_leftover_noise: bool = False, noise: Tensor | None = None,
           variations: Sequence[tuple[int, float]] | str = (), ensd: int = 0,
           callback: progress.Callback | None = None) -> dict:
    """Sample a LATENT the way ComfyUI's KSampler / KSamplerAdvanced do, with reproducible step noise.

    Initial noise comes from :func:`latent_ops.noise.make_noise` (``noise_convention``, variation
    seed, ``batch_index``) unless ``noise`` ``[B, C, H, W]`` (model-space unit noise) is given; step
    noise of stochastic samplers is per-image CPU noise from the same per-image seeds (image k of
    a batch equals the same seed run alone): a Brownian tree per image for the SDE samplers, a
    stream otherwise (:func:`latent_ops.sampling.noise_sampler.make_noise_sampler`). A
    ``noise_mask`` in ``latent`` inpaints (1 = denoise).
    ``add_noise=False`` uses zero initial noise (KSamplerAdvanced), whether or not ``noise`` is given.

    Args: model: the denoiser. latent: LATENT (raw VAE space). positive, negative: CONDITIONING.
        seed, steps, cfg, sampler_name, scheduler, denoise: as ComfyUI's KSampler.
        start_step, end_step, add_noise, return_leftover_noise: as KSamplerAdvanced.
        variations: stacked ``[(seed, weight), ...]`` (or ``"123:0.2, 456:0.1"``) after the subseed,
            applied to the initial and the step noise alike (not to the step noise under the
            a1111 conventions, as in A1111).
        ensd: A1111's eta noise seed delta for the step noise of ancestral samplers (0 = A1111's
            default: under the a1111 conventions the step noise continues each image's initial-noise
            generator).
        callback: ``callback(done, total)`` per step (default :func:`latent_ops.progress.report`).
    Returns: a copy of ``latent`` with new ``samples`` (raw space, float32, input device).
    Raises: ValueError on bad inputs; :class:`latent_ops.progress.Interrupted` from the callback.
    """
    samples = fix_empty_latent_channels(model, _check_latent(latent, "sample: latent_image"))
    record = sampling.SAMPLERS.record(sampler_name, "sample: sampler_name")
    ms = model.model_sampling
    sigmas = schedules.ksampler_sigmas(ms, scheduler, steps, denoise=denoise, sampler_name=sampler_name)
    sigmas = schedules.step_window(sigmas, start_step=start_step, end_step=end_step,
                                   force_full_denoise=not return_leftover_noise)
    out = latent.copy()
    if len(sigmas) <= 1:
        out["samples"] = samples.clone()
        return out
    dev = model.device
    batch_index = latent.get("batch_index")
    if noise is not None and tuple(noise.shape) != tuple(samples.shape):
        raise ValueError(f"sample: noise shape {tuple(noise.shape)} != latent shape {tuple(samples.shape)}")
    if not add_noise:
        init = torch.zeros(samples.shape)
    elif noise is not None:
        if not bool(torch.isfinite(noise).all()):
            raise ValueError("sample: noise contains NaN or Inf")
        init = noise.float().cpu()
    else:
        init = noise_mod.make_noise(samples.shape, seed, convention=noise_convention, subseed=subseed,
                                    subseed_strength=subseed_strength, batch_index=batch_index,
                                    variations=variations)
    init = init.to(dev)
    x_lat = samples.float().to(dev)
    if torch.count_nonzero(x_lat) > 0:
        x_lat = model.latent_format.process_in(x_lat)
    sigmas = sigmas.to(dev)
    x = ms.noise_scaling(sigmas[0], init, x_lat, _is_max_denoise(ms, float(sigmas[0])))
    den = model.guided(positive, negative, cfg)
    if latent.get("noise_mask") is not None:
        mask = prepare_mask(latent["noise_mask"], x.shape).to(dev)
        mask_noise = init
        if record.random_inpaint_noise:  # ddim, as in ComfyUI: inpainting noise seeded seed + 1
            mask_noise = noise_mod.make_noise(samples.shape, seeds.offset(seed, 1)).to(dev)
        den = inpaint_denoiser(den, x_lat, mask_noise, mask, ms.noise_scaling)
    noise_sampler = None
    if record.stochastic:
        noise_sampler = make_noise_sampler(sampler_name, seed, x, sigmas, convention=noise_convention,
                                           batch_index=batch_index, subseed=subseed,
                                           subseed_strength=subseed_strength, variations=variations, ensd=ensd)
    res = sampling.run_sampler(sampler_name, den, x, sigmas, callback=_progress(callback, len(sigmas) - 1),
                               noise_sampler=noise_sampler, prediction=model.prediction,
                               noise_scaling=ms.noise_scaling)
    res = model.latent_format.process_out(ms.inverse_noise_scaling(sigmas[-1], res))
    out["samples"] = res.float().to(samples.device)
    return out


INVERTIBLE_SAMPLERS: tuple[str, ...] = sampling.SAMPLERS.names(invertible=True)
"""View of the sampler table: the deterministic samplers :func:`unsample` can run backwards."""


def _inverse_sigmas(fwd: Tensor, sigma_min: float) -> Tensor:
    """The schedule :func:`unsample` climbs: ``fwd`` ``[n + 1]`` (descending, ending in 0) reversed,
    with its final 0 replaced by ``sigma_min`` (the latent is taken as the state there).

    Schedules that already end at ``sigma_min`` (normal, exponential, karras, kl_optimal: to
    float32 rounding) would repeat it: a (near) zero-length step, which multistep samplers divide
    by. Their 0 is dropped instead, so every step of the result climbs by more than 0.1 %:
    ``[m]``, ascending, ``m`` = ``n + 1`` or ``n``.
    """
    positive = fwd[fwd > 0].flip(0)
    if sigma_min < float(positive[0]) * (1 - 1e-3):
        return torch.cat([positive.new_tensor([sigma_min]), positive])
    return positive


def unsample(model: DiffusionModel, latent: dict, positive: Conditioning, negative: Conditioning, *, steps: int,
             cfg: float, sampler_name: str = "euler", scheduler: str = "normal", denoise: float = 1.0,
             callback: progress.Callback | None = None) -> dict:
    """Invert ``latent`` to the noise that :func:`sample` turns back into (approximately) it.

    Runs the probability-flow ODE upwards over the reversed schedule of ``sample`` (its final 0
    replaced by the model's ``sigma_min``, or dropped where the schedule already ends there). The
    result is unit-scale model-space noise
    ``n``: ``sample(model, latent, ..., noise=n, same steps/cfg/sampler/scheduler/denoise)``
    starts from the inverted state and lands near ``latent``. Slerp ``n`` with other noise to vary.

    Returns: a copy of ``latent`` whose ``samples`` is that noise. Raises: ValueError for a sampler
    whose record is not ``invertible`` (stochastic ones among them: their inversion is not deterministic).
    """
    if not sampling.SAMPLERS.record(sampler_name, "unsample: sampler_name").invertible:
        raise ValueError(f"unsample: sampler {sampler_name!r} cannot be inverted deterministically; "
                         f"use one of {list(sampling.SAMPLERS.names(invertible=True))}")
    samples = fix_empty_latent_channels(model, _check_latent(latent, "unsample: latent"))
    ms, dev = model.model_sampling, model.device
    fwd = schedules.ksampler_sigmas(ms, scheduler, steps, denoise=denoise, sampler_name=sampler_name)
    if len(fwd) <= 1:
        raise ValueError(f"unsample: denoise={denoise} leaves no steps")
    inv = _inverse_sigmas(fwd, float(ms.sigma_min))
    if len(inv) <= 1:
        raise ValueError(f"unsample: denoise={denoise} leaves no steps")
    x_lat = samples.float().to(dev)
    if torch.count_nonzero(x_lat) > 0:
        x_lat = model.latent_format.process_in(x_lat)
    inv = inv.to(dev)
    x_top = sampling.run_sampler(sampler_name, model.guided(positive, negative, cfg), x_lat, inv,
                                 callback=_progress(callback, len(inv) - 1), prediction=model.prediction)
    md = _is_max_denoise(ms, float(fwd[0]))
    base = ms.noise_scaling(inv[-1], torch.zeros_like(x_lat), x_lat, md)
    scale = ms.noise_scaling(inv[-1], torch.ones_like(x_lat), torch.zeros_like(x_lat), md)
    out = latent.copy()
    out["samples"] = ((x_top - base) / scale).float().to(samples.device)
    return out
