"""Model-aware noise at a sigma: ComfyUI ``AddNoise`` / ``model_sampling.noise_scaling``.

Noise is added in *model space*: ``x_m = process_in(latent)``, then by the model sampling's own
``noise_scaling`` (:mod:`latent_ops.sampling.denoisers`, the one implementation the sampler uses too):

* eps and v models (variance-exploding k-diffusion sigmas): ``x_m + sigma * noise``;
* flow models (rectified flow, SD3/Flux, sigma in [0, 1]): ``sigma * noise + (1 - sigma) * x_m``;

and the result goes back through ``process_out`` to a raw latent. The EPS-only recipe that
several node packs use (``latent + noise * sigma / scale_factor`` in raw space) ignores the shift
factor and the flow mixing, so it is wrong for SD3/Flux. As in ComfyUI, ``process_in`` is skipped
for an all-zero latent (an "empty latent" is already model-space zero), ``process_out`` never is.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol, get_args

import torch
from torch import Tensor

from .denoisers import DiscreteSampling, FlowSampling, Prediction

PREDICTIONS: tuple[str, ...] = get_args(Prediction)
"""Prediction types :func:`add_noise` understands (``"eps"``, ``"v"``, ``"flow"``)."""


class LatentSpace(Protocol):
    """What :func:`add_noise` needs of a latent format (``latent_ops.latent_format.LatentFormat``
    and ComfyUI's ``comfy.latent_formats.LatentFormat`` both qualify)."""

    def process_in(self, raw: Tensor) -> Tensor:
        """Raw latent -> model space."""
        ...

    def process_out(self, model: Tensor) -> Tensor:
        """Model space -> raw latent."""
        ...


def _sigma_tensor(sigma: float | Tensor, batch: int, ndim: int) -> Tensor:
    s = torch.as_tensor(sigma, dtype=torch.float64).detach().cpu()
    if s.dim() > 1 or (s.dim() == 1 and s.numel() not in (1, batch)):
        raise ValueError(
            f"add_noise: sigma must be a scalar or a ({batch},) tensor, got shape {tuple(s.shape)}"
        )
    if not torch.isfinite(s).all() or (s < 0).any():
        raise ValueError(f"add_noise: sigma must be finite and >= 0, got {s.tolist()}")
    return s.reshape((-1,) + (1,) * (ndim - 1))


def add_noise(
    latent: Tensor,
    noise: Tensor,
    sigma: float | Tensor,
    *,
    prediction: Literal["eps", "v", "flow"] = "eps",
    latent_format: LatentSpace | None = None,
    max_denoise: bool = False,
) -> Tensor:
    """Noise a raw latent to noise level ``sigma`` the way the model's sampler expects.

    Args:
        latent: raw VAE latent (B, C, H, W) or (B, C, T, H, W).
        noise: unit-variance noise of the same shape.
        sigma: scalar or (B,) noise level (k-diffusion sigma; in [0, 1] for flow models).
        prediction: ``"eps"``, ``"v"`` or ``"flow"``.
        latent_format: scale/shift of the model family (``None`` = identity).
        max_denoise: eps/v only: scale noise by ``sqrt(1 + sigma**2)`` instead of ``sigma``, as
            ComfyUI does for a full denoise from an empty latent.

    Returns:
        Raw latent of ``latent``'s shape and dtype on its device (computed in float32, or float64
        for float64 input).

    Raises:
        ValueError: on shape mismatch (both shapes named), an unknown prediction, NaN/Inf input,
            a negative sigma, or a flow sigma above 1.
    """
    if prediction not in PREDICTIONS:
        raise ValueError(f"add_noise: unknown prediction {prediction!r}; known: {list(PREDICTIONS)}")
    if latent.shape != noise.shape:
        raise ValueError(
            f"add_noise: latent {tuple(latent.shape)} and noise {tuple(noise.shape)} differ in shape"
        )
    if latent.dim() < 2 or not latent.is_floating_point() or not noise.is_floating_point():
        raise ValueError(
            f"add_noise: need floating (B, C, ...) tensors, got latent {latent.dtype} {tuple(latent.shape)}"
        )
    for name, t in (("latent", latent), ("noise", noise)):
        if not torch.isfinite(t).all():
            raise ValueError(f"add_noise: {name} contains NaN or Inf")
    work = torch.float64 if latent.dtype == torch.float64 else torch.float32
    s = _sigma_tensor(sigma, latent.shape[0], latent.dim()).to(device=latent.device, dtype=work)
    if prediction == "flow" and (s > 1).any():
        raise ValueError(f"add_noise: flow models need sigma in [0, 1], got {s.flatten().tolist()}")
    x = latent.to(work)
    n = noise.to(device=latent.device, dtype=work)
    if latent_format is not None and torch.count_nonzero(x) > 0:
        x = latent_format.process_in(x)
    noise_scaling = FlowSampling.noise_scaling if prediction == "flow" else DiscreteSampling.noise_scaling
    out = noise_scaling(s.flatten(), n, x, max_denoise)
    if latent_format is not None:
        out = latent_format.process_out(out)
    return out.to(latent.dtype)


def sigma_from_schedule(sigmas: Sequence[float] | Tensor) -> float:
    """The noise level ComfyUI's ``AddNoise`` uses for a schedule: ``|sigmas[0] - sigmas[-1]|``.

    With a single sigma it is that sigma.

    Raises:
        ValueError: for an empty schedule or non-finite values.
    """
    s = torch.as_tensor(sigmas, dtype=torch.float64).flatten()
    if s.numel() == 0:
        raise ValueError("sigma_from_schedule: empty sigmas")
    if not torch.isfinite(s).all():
        raise ValueError(f"sigma_from_schedule: non-finite sigmas {s.tolist()}")
    return abs(float(s[0] - s[-1])) if s.numel() > 1 else float(s[0])
