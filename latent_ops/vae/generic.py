"""Encode/decode helpers for *any* VAE with ComfyUI's duck type (ours or ``comfy.sd.VAE``).

The nodes call these, so they only use ``encode``, ``decode``, ``encode_tiled``,
``decode_tiled`` and ``spacial_compression_decode()``/``downscale_ratio``; posterior sampling
needs a Latent Ops :class:`~latent_ops.vae.wrapper.VAE`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .. import progress
from .geometry import spatial_compression
from .wrapper import VAE


def encode_image(
    vae: object,
    pixels: Tensor,
    tile_size: int = 0,
    overlap: int = 64,
    sample: bool = False,
    seed: int = 0,
    callback: progress.Callback | None = None,
) -> Tensor:
    """Encode with any VAE that has ComfyUI's duck type (ours or ``comfy.sd.VAE``).

    Args:
        vae: object with ``encode``/``encode_tiled`` (only those are called).
        pixels: IMAGE ``[B, H, W, C]`` in [0, 1].
        tile_size: 0 = automatic (the VAE decides), else tile edge in pixels (tiles of that size).
        overlap: tile overlap in pixels.
        sample: draw from the posterior (needs a Latent Ops VAE) with a CPU generator seeded by ``seed``.

    Returns:
        Raw latent ``[B, C, H/f, W/f]``.

    Raises:
        ValueError: ``sample=True`` with a VAE that cannot sample, or bad tile values.
    """
    if tile_size < 0 or overlap < 0:
        raise ValueError(f"encode_image: tile_size {tile_size} and overlap {overlap} must be >= 0")
    pixels = pixels[..., :3]
    if sample:
        if not isinstance(vae, VAE):
            raise ValueError("encode_image: sample=True needs a Latent Ops VAE (ComfyUI's VAE returns the mean)")
        gen = torch.Generator().manual_seed(int(seed))
        if tile_size:
            return vae.encode_tiled(pixels, tile_size, tile_size, overlap, sample=True, generator=gen, callback=callback)
        return vae.encode(pixels, sample=True, generator=gen, callback=callback)
    if tile_size:
        return vae.encode_tiled(pixels, tile_x=tile_size, tile_y=tile_size, overlap=overlap)
    return vae.encode(pixels)


def decode_latent(
    vae: object,
    samples: Tensor,
    tile_size: int = 0,
    overlap: int = 64,
    batch_chunk: int = 0,
    callback: progress.Callback | None = None,
) -> Tensor:
    """Decode with any VAE that has ComfyUI's duck type, in batch chunks (bounded memory).

    Args:
        vae: object with ``decode``/``decode_tiled`` and ``spacial_compression_decode()`` or
            ``downscale_ratio`` (only those are used; :func:`~latent_ops.vae.geometry.spatial_compression`).
        samples: raw latent ``[B, C, h, w]``.
        tile_size: 0 = automatic, else tile edge in **pixels** (divided by the compression).
        overlap: tile overlap in pixels.
        batch_chunk: latents per call (0 = all at once; the VAE may still chunk internally).
        callback: progress ``(done, total)`` over chunks.

    Returns:
        IMAGE ``[B, H, W, 3]`` float32 in [0, 1].
    """
    if tile_size < 0 or overlap < 0 or batch_chunk < 0:
        raise ValueError(f"decode_latent: tile_size {tile_size}, overlap {overlap}, batch_chunk {batch_chunk} must be >= 0")
    f = spatial_compression(vae, "decode")
    n = samples.shape[0]
    step = batch_chunk or n
    parts = []
    for i in range(0, n, step):
        chunk = samples[i : i + step]
        if tile_size:
            t = max(1, tile_size // f)
            img = vae.decode_tiled(chunk, tile_x=t, tile_y=t, overlap=max(0, overlap // f))
        else:
            img = vae.decode(chunk)
        parts.append(img.float().cpu())
        (callback or progress.report)(min(i + step, n), n)
    return torch.cat(parts)
