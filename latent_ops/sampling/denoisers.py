"""The denoiser seam ``(x, sigma) -> x0``: model sampling tables, prediction adapters, CFG and masks.

``x`` is a latent in *model space* (after the latent format's ``process_in``) at noise level
``sigma`` in k-diffusion's convention. A :class:`DiscreteSampling` holds a discrete model's sigma
table (from its betas / ``alphas_cumprod``) and converts eps- or v-predictions; a
:class:`FlowSampling` does the same for rectified-flow (velocity) models. These follow ComfyUI's
``comfy/model_sampling.py`` (``EPS``, ``V_PREDICTION``, ``CONST`` with ``ModelSamplingDiscrete``
and ``ModelSamplingDiscreteFlow``), so schedules computed from them match ComfyUI's.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal

import torch
from torch import Tensor

Prediction = Literal["eps", "v", "flow"]
Backbone = Callable[..., Tensor]
"""``backbone(x_in [B,C,H,W], timestep [B], cond [B,T,D] | None, **extra) -> raw model output``."""
Denoiser = Callable[[Tensor, Tensor], Tensor]
"""``denoiser(x [B,C,H,W], sigma [B]) -> x0 [B,C,H,W]``, model space."""
NoiseScaling = Callable[[Tensor, Tensor, Tensor], Tensor]
"""``noise_scaling(sigma, noise, x0) -> noised latent``: a model's forward process (its sampling's
:meth:`~DiscreteSampling.noise_scaling`)."""


def _bcast(sigma: Tensor, like: Tensor) -> Tensor:
    """Sigma ``[B]`` (or scalar) -> ``[B, 1, ..., 1]`` broadcastable against ``like``."""
    sigma = torch.as_tensor(sigma, dtype=like.dtype, device=like.device)
    return sigma.reshape(sigma.shape[:1] + (1,) * (like.ndim - 1)) if sigma.ndim else sigma


BETA_SCHEDULES = ("scaled_linear", "linear", "squaredcos_cap_v2")
"""The beta schedules :func:`betas_for` builds (diffusers' ``beta_schedule`` names)."""


def betas_for(schedule: str, timesteps: int = 1000, linear_start: float = 0.00085,
              linear_end: float = 0.012) -> Tensor:
    """Training betas ``[timesteps]`` float64: the one place the library builds a beta schedule.

    ``"scaled_linear"`` (LDM's ``"linear"``, SD1/SD2/SDXL): ``linspace(sqrt(start), sqrt(end))**2``;
    ``"linear"``: ``linspace(start, end)``; ``"squaredcos_cap_v2"``: the cosine schedule (ignores
    ``linear_start``/``linear_end``). Raises: ValueError for any other name.
    """
    if schedule == "scaled_linear":
        return torch.linspace(linear_start**0.5, linear_end**0.5, timesteps, dtype=torch.float64) ** 2
    if schedule == "linear":
        return torch.linspace(linear_start, linear_end, timesteps, dtype=torch.float64)
    if schedule == "squaredcos_cap_v2":
        def abar(t: float) -> float:
            return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
        b = [min(1 - abar((i + 1) / timesteps) / abar(i / timesteps), 0.999) for i in range(timesteps)]
        return torch.tensor(b, dtype=torch.float64)
    raise ValueError(f"betas_for: unknown beta schedule {schedule!r} "
                     f"(beta_schedule must be one of {list(BETA_SCHEDULES)})")


class _SigmaTable:
    """What both model samplings share: an ascending sigma table ``sigmas [N]`` and its ends."""

    sigmas: Tensor
    log_sigmas: Tensor

    @property
    def sigma_min(self) -> Tensor:
        """The table's smallest sigma (0-d)."""
        return self.sigmas[0]

    @property
    def sigma_max(self) -> Tensor:
        """The table's largest sigma (0-d)."""
        return self.sigmas[-1]


class DiscreteSampling(_SigmaTable):
    """Sampling maths of a discrete-time eps- or v-prediction model (ComfyUI ``ModelSamplingDiscrete``).

    Attributes: sigmas ``[N]`` float32 ascending (``sqrt((1 - abar) / abar)``), log_sigmas,
    prediction, sigma_data (1.0), continuous (timestep(sigma) interpolates instead of rounding).
    """

    def __init__(self, alphas_cumprod: Tensor, prediction: Literal["eps", "v"] = "eps", *,
                 continuous: bool = False) -> None:
        if prediction not in ("eps", "v"):
            raise ValueError(f"DiscreteSampling: prediction must be 'eps' or 'v', got {prediction!r}")
        ac = torch.as_tensor(alphas_cumprod, dtype=torch.float64)
        if ac.ndim != 1 or len(ac) < 2 or not bool(((ac > 0) & (ac <= 1)).all()):
            raise ValueError("DiscreteSampling: alphas_cumprod must be 1-D, length >= 2, in (0, 1]")
        self.prediction = prediction
        self.continuous = continuous
        self.sigma_data = 1.0
        self.alphas_cumprod = ac.float()
        self.sigmas = (((1 - ac) / ac) ** 0.5).float()
        self.log_sigmas = self.sigmas.log()

    @classmethod
    def from_betas(cls, schedule: str = "scaled_linear", timesteps: int = 1000, linear_start: float = 0.00085,
                   linear_end: float = 0.012, prediction: Literal["eps", "v"] = "eps", *,
                   continuous: bool = False) -> DiscreteSampling:
        """Build from a named beta schedule (SD defaults: scaled_linear 0.00085..0.012, 1000 steps)."""
        betas = betas_for(schedule, timesteps, linear_start, linear_end)
        return cls(torch.cumprod(1.0 - betas, dim=0), prediction, continuous=continuous)

    def _log_sigmas_on(self, device: torch.device) -> Tensor:
        """``log_sigmas`` on ``device``, copied there once: a model call on a GPU makes no host round trip."""
        if self.log_sigmas.device == device:
            return self.log_sigmas
        copies = self.__dict__.setdefault("_log_sigmas_copies", {})
        if device not in copies:
            copies[device] = self.log_sigmas.to(device)
        return copies[device]

    def timestep(self, sigma: Tensor) -> Tensor:
        """Sigma (any shape) -> model timestep: nearest table index (ComfyUI), or interpolated.
        Computed on ``sigma``'s device."""
        sigma = torch.as_tensor(sigma, dtype=torch.float32)
        table = self._log_sigmas_on(sigma.device)
        log_sigma = sigma.log()
        dists = log_sigma.reshape(1, -1) - table[:, None]
        if not self.continuous:
            return dists.abs().argmin(dim=0).view(sigma.shape)
        low = dists.ge(0).cumsum(dim=0).argmax(dim=0).clamp(max=len(table) - 2)
        lo, hi = table[low], table[low + 1]
        w = ((lo - log_sigma.reshape(-1)) / (lo - hi)).clamp(0, 1)
        return ((1 - w) * low + w * (low + 1)).view(sigma.shape)

    def sigma(self, timestep: Tensor) -> Tensor:
        """Timestep (float, any shape) -> sigma by log-linear interpolation of the table."""
        t = torch.as_tensor(timestep).float().to(self.log_sigmas.device).clamp(0, len(self.sigmas) - 1)
        lo, hi, w = t.floor().long(), t.ceil().long(), t.frac()
        return ((1 - w) * self.log_sigmas[lo] + w * self.log_sigmas[hi]).exp()

    def calculate_input(self, sigma: Tensor, x: Tensor) -> Tensor:
        """Model-space x at sigma -> the network's input ``x / sqrt(sigma^2 + sigma_data^2)``."""
        return x / (_bcast(sigma, x) ** 2 + self.sigma_data**2) ** 0.5

    def calculate_denoised(self, sigma: Tensor, model_output: Tensor, x: Tensor) -> Tensor:
        """Raw network output -> x0 (eps: ``x - sigma eps``; v: the v-parametrisation)."""
        s = _bcast(sigma, x)
        out = model_output.to(x.dtype)
        if self.prediction == "eps":
            return x - out * s
        sd2 = self.sigma_data**2
        return x * sd2 / (s**2 + sd2) - out * s * self.sigma_data / (s**2 + sd2) ** 0.5

    @staticmethod
    def noise_scaling(sigma: Tensor, noise: Tensor, latent: Tensor, max_denoise: bool = False) -> Tensor:
        """Noised latent ``latent + sigma noise`` (``sqrt(1 + sigma^2)`` at max denoise, as ComfyUI).

        ``sigma``: scalar or ``[B]``; ``noise``, ``latent``: ``[B, ...]``. The forward process of every
        eps/v model, so a staticmethod: ``DiscreteSampling.noise_scaling`` needs no sigma table.
        """
        s = _bcast(sigma, noise)
        return latent + noise * ((1.0 + s**2) ** 0.5 if max_denoise else s)

    def inverse_noise_scaling(self, sigma: Tensor, latent: Tensor) -> Tensor:
        """Identity for eps/v models."""
        return latent


def time_snr_shift(shift: float, t: Tensor) -> Tensor:
    """Flow timestep shift ``shift t / (1 + (shift - 1) t)`` (identity for shift 1)."""
    return t if shift == 1.0 else shift * t / (1 + (shift - 1) * t)


class FlowSampling(_SigmaTable):
    """Rectified-flow (velocity) models: ``x = (1 - sigma) x0 + sigma n``, output ``v = n - x0``.

    ComfyUI's ``ModelSamplingDiscreteFlow`` + ``CONST``: a table of ``timesteps`` shifted sigmas in
    (0, 1], ``timestep(sigma) = sigma * multiplier``.
    """

    prediction: Prediction = "flow"

    def __init__(self, shift: float = 1.0, multiplier: float = 1000.0, timesteps: int = 1000) -> None:
        if shift <= 0 or multiplier <= 0 or timesteps < 2:
            raise ValueError(f"FlowSampling: bad shift={shift}, multiplier={multiplier}, timesteps={timesteps}")
        self.shift, self.multiplier, self.continuous = float(shift), float(multiplier), True
        ts = torch.arange(1, timesteps + 1, dtype=torch.float32) / timesteps * multiplier
        self.sigmas = self.sigma(ts)
        self.log_sigmas = self.sigmas.log()

    def timestep(self, sigma: Tensor) -> Tensor:
        return torch.as_tensor(sigma, dtype=torch.float32) * self.multiplier

    def sigma(self, timestep: Tensor) -> Tensor:
        return time_snr_shift(self.shift, torch.as_tensor(timestep, dtype=torch.float32) / self.multiplier)

    def calculate_input(self, sigma: Tensor, x: Tensor) -> Tensor:
        return x

    def calculate_denoised(self, sigma: Tensor, model_output: Tensor, x: Tensor) -> Tensor:
        return x - model_output.to(x.dtype) * _bcast(sigma, x)

    @staticmethod
    def noise_scaling(sigma: Tensor, noise: Tensor, latent: Tensor, max_denoise: bool = False) -> Tensor:
        """Noised latent ``sigma noise + (1 - sigma) latent`` (``max_denoise`` changes nothing for flow)."""
        s = _bcast(sigma, noise)
        return s * noise + (1.0 - s) * latent

    def inverse_noise_scaling(self, sigma: Tensor, latent: Tensor) -> Tensor:
        return latent / (1.0 - _bcast(sigma, latent))


ModelSampling = DiscreteSampling | FlowSampling


def model_denoiser(backbone: Backbone, ms: ModelSampling, cond: Tensor | None = None, **extra: object) -> Denoiser:
    """Wrap a raw network as ``denoiser(x, sigma) -> x0`` (``calculate_input`` -> net -> ``calculate_denoised``).

    Args: backbone: ``backbone(x_in, timestep, cond, **extra)``. ms: the model's sampling.
        cond: ``[B, T, D]`` conditioning passed through (or None). extra: passed through.
    """

    def denoise(x: Tensor, sigma: Tensor) -> Tensor:
        sigma = torch.as_tensor(sigma, device=x.device).reshape(-1).expand(x.shape[0])
        out = backbone(ms.calculate_input(sigma, x), ms.timestep(sigma), cond, **extra)
        return ms.calculate_denoised(sigma, out, x)

    return denoise


CondFn = Callable[[Tensor, Tensor, Sequence[int]], Tensor]
"""``cond_fn(x [N,C,H,W], sigma [N], kinds) -> x0``: one batched call over rows of cond (0) / uncond (1)."""


def cfg_denoiser(batched: CondFn, cfg: float) -> Denoiser:
    """Classifier-free guidance: ``uncond + (cond - uncond) * cfg`` with one batched model call.

    ``batched(x, sigma, kinds)`` evaluates rows ``x`` whose first half is conditional (kind 0) and
    second half unconditional (kind 1). At ``cfg == 1`` only the conditional half is evaluated, as
    ComfyUI does.
    """
    if not math.isfinite(cfg):
        raise ValueError(f"cfg_denoiser: cfg must be finite, got {cfg}")

    def denoise(x: Tensor, sigma: Tensor) -> Tensor:
        b = x.shape[0]
        sigma = torch.as_tensor(sigma, device=x.device).reshape(-1).expand(b)
        if math.isclose(cfg, 1.0):
            return batched(x, sigma, [0] * b)
        out = batched(torch.cat([x, x]), torch.cat([sigma, sigma]), [0] * b + [1] * b)
        cond, uncond = out[:b], out[b:]
        return uncond + (cond - uncond) * cfg

    return denoise


def inpaint_denoiser(denoiser: Denoiser, latent: Tensor, noise: Tensor, mask: Tensor,
                     noise_scaling: NoiseScaling) -> Denoiser:
    """ComfyUI ``KSamplerX0Inpaint``: keep ``mask == 0`` regions at the noised original each step.

    Args: latent: model-space original ``[B,C,H,W]``. noise: the noise for the kept region.
        mask: ``[B or 1, 1 or C, H, W]`` in [0, 1], 1 = denoise. noise_scaling: the model's
        ``noise_scaling(sigma, noise, latent)``.
    """
    keep = 1.0 - mask

    def denoise(x: Tensor, sigma: Tensor) -> Tensor:
        sig = torch.as_tensor(sigma, device=x.device).reshape(-1).expand(x.shape[0])
        x = x * mask + noise_scaling(sig, noise, latent) * keep
        return denoiser(x, sig) * mask + latent * keep

    return denoise


def prepare_mask(mask: Tensor, shape: Sequence[int]) -> Tensor:
    """A LATENT ``noise_mask`` (``[H,W]``, ``[B,H,W]`` or ``[B,1,H,W]``, any resolution) -> ``[B,C,h,w]``.

    Resized bilinearly to the latent and repeated over channels and batch, as ComfyUI's
    ``prepare_mask``. Raises: ValueError on a batch that does not divide the latent batch.
    """
    m = mask.float()
    if m.ndim == 2:
        m = m[None, None]
    elif m.ndim == 3:
        m = m[:, None]
    elif m.ndim != 4:
        raise ValueError(f"prepare_mask: noise_mask must have 2-4 dims, got shape {tuple(mask.shape)}")
    m = m.reshape(-1, 1, m.shape[-2], m.shape[-1])
    m = torch.nn.functional.interpolate(m, size=tuple(shape[-2:]), mode="bilinear")
    b = shape[0]
    if b % m.shape[0] and m.shape[0] < b:
        raise ValueError(f"prepare_mask: mask batch {m.shape[0]} does not fit latent batch {b}")
    m = m.repeat(math.ceil(b / m.shape[0]), shape[1], 1, 1)[:b]
    return m.clamp(0, 1)
