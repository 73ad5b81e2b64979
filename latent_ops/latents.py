"""The maths behind the headless stand-ins for ComfyUI's core latent nodes (same behaviour).

LATENT dicts are copied, never mutated; ``noise_mask`` and ``batch_index`` follow ComfyUI's rules
so that noise drawn per ``batch_index`` matches a full-batch run.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from .vae.geometry import latent_geometry

Latent = dict[str, Any]


def empty_latent(width: int, height: int, batch_size: int, channels: int = 4, downscale: int = 8, *,
                 vae: object | None = None) -> Latent:
    """ComfyUI's EmptyLatentImage: zeros ``[batch_size, channels, height // downscale, width // downscale]``.

    ``vae`` (ours or ComfyUI's image VAE), when given, supplies ``channels`` and ``downscale``
    (:func:`latent_ops.vae.geometry.latent_geometry`).
    """
    channels, downscale = latent_geometry(vae, channels, downscale, "empty_latent")
    if width < downscale or height < downscale or batch_size < 1:
        raise ValueError(f"empty_latent: width={width}, height={height}, batch_size={batch_size} give an empty latent")
    return {"samples": torch.zeros([batch_size, channels, height // downscale, width // downscale])}


def _tile_masks(masks: torch.Tensor, batch: int) -> torch.Tensor:
    if masks.shape[0] < batch:
        reps = (math.ceil(batch / masks.shape[0]),) + (1,) * (masks.ndim - 1)
        masks = masks.repeat(reps)[:batch]
    return masks


def latent_from_batch(latent: Latent, batch_index: int, length: int) -> Latent:
    """Items ``batch_index .. batch_index + length`` (clamped); ``batch_index`` made absolute.

    Args:
        latent: LATENT dict with ``samples`` ``[B, C, ...]``. batch_index: first item. length: count.
    Returns:
        A new LATENT dict; ``noise_mask`` sliced alike (a single mask is kept for every item).
    """
    samples = latent["samples"]
    total = samples.shape[0]
    start = min(total - 1, batch_index)
    length = min(total - start, length)
    out = latent.copy()
    out["samples"] = samples[start:start + length].clone()
    if "noise_mask" in latent:
        masks = latent["noise_mask"]
        out["noise_mask"] = masks.clone() if masks.shape[0] == 1 else _tile_masks(masks, total)[start:start + length].clone()
    if "batch_index" in latent:
        out["batch_index"] = list(latent["batch_index"][start:start + length])
    else:
        out["batch_index"] = list(range(start, start + length))
    return out


def repeat_latent_batch(latent: Latent, amount: int) -> Latent:
    """The batch repeated ``amount`` times; ``batch_index`` extended with offsets past its span."""
    samples = latent["samples"]
    out = latent.copy()
    out["samples"] = samples.repeat((amount,) + (1,) * (samples.ndim - 1))
    if "noise_mask" in latent and latent["noise_mask"].shape[0] > 1:
        masks = _tile_masks(latent["noise_mask"], samples.shape[0])
        out["noise_mask"] = masks.repeat((amount,) + (1,) * (masks.ndim - 1))
    if "batch_index" in latent:
        index = list(latent["batch_index"])
        offset = max(index) - min(index) + 1
        out["batch_index"] = index + [x + i * offset for i in range(1, amount) for x in index]
    return out


def resize_center(samples: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """ComfyUI's ``common_upscale(..., "bilinear", "center")``: centre-crop to the aspect, then resize."""
    old_h, old_w = samples.shape[-2], samples.shape[-1]
    old_aspect, new_aspect = old_w / old_h, width / height
    x = y = 0
    if old_aspect > new_aspect:
        x = round((old_w - old_w * (new_aspect / old_aspect)) / 2)
    elif old_aspect < new_aspect:
        y = round((old_h - old_h * (old_aspect / new_aspect)) / 2)
    cropped = samples.narrow(-2, y, old_h - 2 * y).narrow(-1, x, old_w - 2 * x)
    return F.interpolate(cropped, size=(height, width), mode="bilinear")


def latent_batch(latent1: Latent, latent2: Latent) -> Latent:
    """ComfyUI's LatentBatch: ``cat([s1, s2 resized to s1])``; ``batch_index`` concatenated.

    Raises:
        ValueError: if the channel counts differ.
    """
    s1, s2 = latent1["samples"], latent2["samples"]
    if s1.ndim != s2.ndim or s1.shape[1] != s2.shape[1]:
        raise ValueError(f"latent_batch: samples1 {tuple(s1.shape)} and samples2 {tuple(s2.shape)} differ in channels")
    if s1.shape[2:] != s2.shape[2:]:
        s2 = resize_center(s2, s1.shape[-2], s1.shape[-1])
    out = latent1.copy()
    out["samples"] = torch.cat((s1, s2), dim=0)
    out["batch_index"] = list(latent1.get("batch_index", range(s1.shape[0]))) + list(
        latent2.get("batch_index", range(s2.shape[0])))
    return out
