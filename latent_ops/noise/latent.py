"""Seeded noise as a LATENT dict: the shape from an image size or from another latent.

The rules of the Latent Noise node, in one place: the latent of a ``width`` x ``height`` image is
``[B, C, height // downscale, width // downscale]`` (floored, as ComfyUI's ``EmptyLatentImage``);
A1111's "resize seed from" sizes are pixels, divided by the same ``downscale``; a ``like`` latent
gives the shape and ``batch_index`` and keeps its other keys (``noise_mask``, ...).
"""

from __future__ import annotations

from typing import Any

import torch

from .conventions import make_noise

__all__ = ["latent_shape", "noise_latent"]


def latent_shape(width: int, height: int, batch_size: int, channels: int, downscale: int) -> tuple[int, int, int, int]:
    """``(B, C, H, W)`` of the latent of ``batch_size`` images of ``width`` x ``height`` pixels.

    ``H = height // downscale`` and ``W = width // downscale`` (floored, as ComfyUI).

    Raises:
        ValueError: naming every size, unless all of B, C, H, W and ``downscale`` are >= 1.
    """
    if downscale < 1:
        raise ValueError(f"latent_shape: downscale must be >= 1, got {downscale}")
    h, w = height // downscale, width // downscale
    if h < 1 or w < 1 or channels < 1 or batch_size < 1:
        raise ValueError(
            f"latent_shape: width {width} x height {height} with downscale {downscale} gives a "
            f"{w} x {h} latent; channels {channels}, batch_size {batch_size} (all must be >= 1)"
        )
    return batch_size, channels, h, w


def noise_latent(
    seed: int,
    *,
    width: int = 512,
    height: int = 512,
    batch_size: int = 1,
    channels: int = 4,
    downscale: int = 8,
    like: dict[str, Any] | None = None,
    resize_from_px: tuple[int, int] = (0, 0),
    **options: Any,
) -> dict[str, Any]:
    """Seeded noise shaped like a latent, as a LATENT dict (:func:`make_noise` under the hood).

    Args:
        seed: the seed in [0, 2**64).
        width, height, batch_size, channels, downscale: the latent's shape, by
            :func:`latent_shape` (ignored when ``like`` is given, except ``downscale``).
        like: a LATENT dict whose ``samples`` shape and ``batch_index`` are used; its other keys
            are kept. It is not modified.
        resize_from_px: A1111's "resize seed from" ``(height, width)`` in pixels; ``(0, 0)`` = off.
        **options: the other :func:`make_noise` arguments (``convention``, ``noise_type``,
            ``subseed``, ``subseed_strength``, ``variations``, ``dtype``, ``device``, type options).

    Returns:
        ``{"samples": noise}`` of shape ``[B, C, H, W]``, or a copy of ``like`` with new ``samples``.

    Raises:
        ValueError: on a bad size, a ``like`` without a ``samples`` tensor, or any error of
            :func:`make_noise`.
    """
    if like is None:
        shape, batch_index, out = latent_shape(width, height, batch_size, channels, downscale), None, {}
    else:
        samples = like.get("samples") if isinstance(like, dict) else None
        if not isinstance(samples, torch.Tensor):
            raise ValueError(f"noise_latent: like must be a LATENT dict with a 'samples' tensor, got {type(like).__name__}")
        if downscale < 1:
            raise ValueError(f"noise_latent: downscale must be >= 1, got {downscale}")
        shape, batch_index, out = tuple(samples.shape), like.get("batch_index"), like.copy()
    resize = (resize_from_px[0] // downscale, resize_from_px[1] // downscale)
    out["samples"] = make_noise(shape, seed, batch_index=batch_index, resize_from=resize, **options)
    return out
