"""The VAE object: pixels in and out of latent space with ComfyUI's VAE duck type.

``VAE`` wraps a diffusers ``AutoencoderKL`` or ``AutoencoderTiny`` plus a
:class:`~latent_ops.latent_format.LatentFormat`. Like ComfyUI's ``comfy.sd.VAE``:

- ``encode(pixels [B,H,W,C] in [0,1]) -> raw latent [B,C,H/f,W/f]`` float32 (posterior mean
  unless ``sample=True``); sizes that are not multiples of ``f`` are centre-cropped (ComfyUI's
  rule) or, with ``fit="pad"``, edge-padded at the bottom/right;
- ``decode(latent) -> [B,H,W,3]`` float32 in [0, 1];
- ``encode_tiled`` (pixel units) / ``decode_tiled`` (latent units), ``downscale_ratio``,
  ``upscale_ratio``, ``latent_channels``, ``latent_dim``, ``spacial_compression_*``,
  ``memory_used_encode/decode``.

TAESD latents follow ComfyUI too: the tiny encoder works in model space, so ``encode`` maps its
output back to raw VAE space (``z / scale + shift``) and ``decode`` does the inverse first;
LATENT tensors are raw for every VAE.

Every call decides once how it runs (:func:`latent_ops.vae.tiling.plan`): ``encode``/``decode``
run untiled in chunks sized from a memory estimate, and tile automatically (exact streamed path,
else tiles) when one item would not fit; ``encode_tiled``/``decode_tiled`` run tiles of the size
asked for. In float16/bfloat16, a chunk whose output holds NaN/Inf is recomputed in float32 and a
warning names the chunk.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import progress
from ..latent_format import LatentFormat
from . import tiling as vae_tiling
from .geometry import config_geometry

log = logging.getLogger(__name__)


UNTILED_DECODE_BYTES_PER_PIXEL = 8.0
"""Peak bytes of an untiled KL decode per output pixel, per last-level channel, per element byte
(measured: SD VAE, 1024 px, fp32 -> 3.9 GB of activations = 7.3 * 128 * 4 B per pixel)."""
UNTILED_ENCODE_BYTES_PER_PIXEL = 7.0
"""Same for encode (measured 6 at 512 px)."""
TINY_BYTES_PER_PIXEL = 6.0
"""Same for TAESD (per pixel, per block channel, per element byte)."""


def _check_finite(x: Tensor, name: str) -> None:
    if not torch.isfinite(x).all():
        raise ValueError(f"{name}: input contains NaN or Inf")


class VAE:
    """A diffusers VAE module with ComfyUI's VAE interface (see the module docstring).

    Args:
        module: ``AutoencoderKL`` or ``AutoencoderTiny`` (moved to ``device``/``dtype``, eval mode).
        latent_format: the family's latent description (scale/shift/channels/downscale).
        family: family id ("sd15", "sdxl", "sd3", "flux", "taesd", ..., "custom").
        device: compute device; outputs come back on the CPU.
        dtype: compute dtype (float32, float16 or bfloat16).
        memory_budget: bytes for batching/tiling decisions; None = 70 % of available memory.
    """

    latent_dim = 2

    def __init__(
        self,
        module: nn.Module,
        latent_format: LatentFormat,
        family: str,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        memory_budget: int | None = None,
    ) -> None:
        if dtype not in (torch.float32, torch.float16, torch.bfloat16):
            raise ValueError(f"VAE: dtype must be float32, float16 or bfloat16, got {dtype}")
        self.device = torch.device(device)
        self.dtype = dtype
        # nn.Module.to, not diffusers' override (which warns about fp32-pinned modules it never has here)
        self.module = nn.Module.to(module, device=self.device, dtype=dtype).eval().requires_grad_(False)
        self.latent_format = latent_format
        self.family = family
        self.is_tiny = not vae_tiling.is_kl(module)
        cfg = module.config
        geo = config_geometry(cfg)
        self.latent_channels, self.downscale_ratio, self.upscale_ratio = geo.channels, geo.downscale, geo.upscale
        self.scale_factor = float(latent_format.scale)
        self.shift_factor = float(latent_format.shift)
        self.memory_budget = memory_budget
        if self.latent_channels != latent_format.channels:
            raise ValueError(
                f"VAE: module has {self.latent_channels} latent channels but latent format "
                f"{latent_format.name!r} has {latent_format.channels}"
            )
        self._width = int(cfg["block_out_channels"][0]) if not self.is_tiny else int(cfg["decoder_block_out_channels"][-1])
        self.memory_used_encode = lambda shape, dtype: self._bytes("encode", (shape[-3], shape[-2]), dtype)
        self.memory_used_decode = lambda shape, dtype: self._bytes("decode", (shape[-2], shape[-1]), dtype)

    def __repr__(self) -> str:
        return (
            f"VAE(family={self.family!r}, latent_channels={self.latent_channels}, "
            f"downscale={self.downscale_ratio}, device={self.device}, dtype={self.dtype})"
        )

    # ------------------------------------------------------------------ ComfyUI duck type
    def spacial_compression_decode(self) -> int:
        """Pixels per latent pixel along each axis when decoding."""
        return self.upscale_ratio

    def spacial_compression_encode(self) -> int:
        """Pixels per latent pixel along each axis when encoding."""
        return self.downscale_ratio

    def temporal_compression_decode(self) -> None:
        """Image VAE: no temporal axis (ComfyUI's tiled nodes check this)."""
        return None

    def temporal_compression_encode(self) -> None:
        """Image VAE: no temporal axis."""
        return None

    def vae_encode_crop_pixels(self, pixels: Tensor) -> Tensor:
        """ComfyUI's helper: centre-crop ``[B,H,W,C]`` to multiples of the downscale (a view)."""
        f = self.downscale_ratio
        h, w = pixels.shape[1] // f * f, pixels.shape[2] // f * f
        y0, x0 = (pixels.shape[1] - h) // 2, (pixels.shape[2] - w) // 2
        return pixels[:, y0 : y0 + h, x0 : x0 + w]

    def _bytes(self, kind: str, hw: tuple[int, int], dtype: torch.dtype) -> int:
        """Untiled peak bytes of one item of input size ``hw`` (pixels for encode, latent px for decode)."""
        pixels = hw[0] * hw[1] * (self.upscale_ratio**2 if kind == "decode" else 1)
        el = torch.empty((), dtype=dtype).element_size()
        if self.is_tiny:
            per = TINY_BYTES_PER_PIXEL
        else:
            per = UNTILED_DECODE_BYTES_PER_PIXEL if kind == "decode" else UNTILED_ENCODE_BYTES_PER_PIXEL
        return int(per * self._width * pixels * el)

    def _budget(self) -> int:
        if self.memory_budget is not None:
            return self.memory_budget
        return vae_tiling.default_budget(self.device)

    # ------------------------------------------------------------------ pixels <-> tensors
    def _prepare_pixels(
        self, pixels: Tensor, fit: str, sample: bool, generator: torch.Generator | None, name: str
    ) -> Tensor:
        """``[B,H,W,C>=3]`` in [0, 1] -> ``[B,3,H',W']`` in [-1, 1], H' and W' multiples of the downscale."""
        if pixels.ndim != 4 or pixels.shape[-1] < 3:
            raise ValueError(f"VAE.encode: pixels must be [B,H,W,C>=3], got {tuple(pixels.shape)}")
        _check_finite(pixels, "VAE.encode")
        if sample and generator is None:
            raise ValueError(f"{name}: sample=True needs an explicit torch.Generator")
        x = pixels[..., :3].float()
        f = self.downscale_ratio
        h, w = x.shape[1], x.shape[2]
        if h < f or w < f:
            raise ValueError(f"VAE.encode: image {h}x{w} is smaller than the downscale {f}")
        if fit == "crop":
            nh, nw = h // f * f, w // f * f
            y0, x0 = (h - nh) // 2, (w - nw) // 2
            x = x[:, y0 : y0 + nh, x0 : x0 + nw]
        elif fit == "pad":
            ph, pw = -h % f, -w % f
            if ph or pw:
                x = F.pad(x.movedim(-1, 1), (0, pw, 0, ph), mode="replicate").movedim(1, -1)
        else:
            raise ValueError(f"VAE.encode: fit must be 'crop' or 'pad', got {fit!r}")
        return x.movedim(-1, 1) * 2.0 - 1.0

    def _check_latent(self, samples: Tensor, name: str) -> None:
        if samples.ndim != 4 or samples.shape[1] != self.latent_channels:
            raise ValueError(
                f"{name}: latent must be [B,{self.latent_channels},h,w] for this {self.family} VAE, "
                f"got {tuple(samples.shape)}"
            )
        _check_finite(samples, name)

    # ------------------------------------------------------------------ one path for every call
    def _decide(
        self,
        kind: str,
        x: Tensor,
        batch_chunk: int | None,
        tile: tuple[int, int] | None = None,
        overlap: int = 0,
        strategy: str = "auto",
    ) -> tuple[vae_tiling.Plan, int]:
        """The one decision of a call: its :class:`~latent_ops.vae.tiling.Plan` and items per chunk.

        ``tile`` (input units) comes from ``*_tiled`` calls; None = automatic (untiled when the
        estimate fits the budget, chunked to fit it).
        """
        hw = (int(x.shape[-2]), int(x.shape[-1]))
        if tile is not None and (min(tile) < (self.downscale_ratio if kind == "encode" else 1) or overlap < 0):
            raise ValueError(f"VAE.{kind}_tiled: tile {tile[1]}x{tile[0]} / overlap {overlap} out of range")
        budget = self._budget()
        per = self._bytes(kind, hw, self.dtype)
        auto = tile is None and strategy == "auto"
        p = vae_tiling.plan(self.module, kind, hw, budget, tile=tile, overlap=overlap, strategy=strategy,
                            whole_bytes=per if auto else None)  # fmt: skip
        if auto and p.strategy != "whole":
            log.info("VAE.%s: %s would need ~%.1f GB untiled; tiling", kind, tuple(x.shape), per / 1e9)
        chunk = batch_chunk or (max(1, min(x.shape[0], budget // max(1, per))) if auto else 1)
        return p, int(chunk)

    def _chunk(self, kind: str, x: Tensor, p: vae_tiling.Plan, cb: progress.Callback | None) -> Tensor:
        """One chunk through :func:`~latent_ops.vae.tiling.run` on the VAE's device and dtype (float32, CPU)."""
        if kind == "decode" and self.is_tiny:
            x = self.latent_format.process_in(x.float())
        with torch.inference_mode():
            return vae_tiling.run(self.module, kind, x.to(self.device, self.dtype), p, cb).float().cpu()

    def _batches(
        self, kind: str, x: Tensor, p: vae_tiling.Plan, chunk: int, callback: progress.Callback | None
    ) -> Tensor:
        """Run ``x`` in chunks (NaN-guarded); decode gives IMAGE ``[B, H, W, 3]`` in [0, 1], encode
        the raw outputs (KL moments ``[B, 2C, h, w]``, Tiny model-space latents).

        Encoder outputs are concatenated (keeping the network's memory format, which later
        convolutions' float results depend on); images go into one contiguous batch as they come.
        """
        n = x.shape[0]
        inner = None if p.strategy == "whole" else (callback or progress.report)
        parts: list[Tensor] = []
        images: Tensor | None = None
        for i in range(0, n, chunk):
            xi = x[i : i + chunk]
            y = self._guarded(lambda xi=xi: self._chunk(kind, xi, p, inner), f"{kind} chunk {i}:{i + len(xi)}")
            if kind == "encode":
                parts.append(y)
            else:
                img = ((y + 1.0) / 2.0).clamp_(0.0, 1.0).movedim(1, -1)
                if images is None:
                    images = torch.empty((n, *img.shape[1:]), dtype=torch.float32)
                images[i : i + len(xi)] = img
            if inner is None:
                (callback or progress.report)(min(i + chunk, n), n)
        out = torch.cat(parts) if kind == "encode" else images
        assert out is not None
        return out

    def _guarded(self, fn: Callable[[], Tensor], what: str) -> Tensor:
        """Run ``fn``; if a half-precision result is not finite, rerun it in float32 and warn."""
        out = fn()
        if self.dtype == torch.float32 or torch.isfinite(out).all():
            return out
        log.warning("VAE %s: NaN/Inf in %s output, retrying in float32", what, str(self.dtype).replace("torch.", ""))
        nn.Module.to(self.module, dtype=torch.float32)
        saved, self.dtype = self.dtype, torch.float32
        try:
            out = fn()
        finally:
            self.dtype = saved
            nn.Module.to(self.module, dtype=saved)
        if not torch.isfinite(out).all():
            raise ValueError(f"VAE {what}: output is NaN/Inf even in float32")
        return out

    def _latents(self, out: Tensor, sample: bool, generator: torch.Generator | None) -> Tensor:
        """Raw latents from encoder outputs: Tiny back to raw space; KL posterior mean or a sample."""
        if self.is_tiny:
            return self.latent_format.process_out(out)
        mean, logvar = out.chunk(2, dim=1)
        if not sample:
            return mean
        std = torch.exp(0.5 * logvar.clamp(-30.0, 20.0))
        return mean + std * torch.randn(mean.shape, generator=generator, dtype=mean.dtype)

    # ------------------------------------------------------------------ public API
    def encode(
        self,
        pixels: Tensor,
        sample: bool = False,
        generator: torch.Generator | None = None,
        *,
        fit: str = "crop",
        batch_chunk: int | None = None,
        callback: progress.Callback | None = None,
    ) -> Tensor:
        """Encode an IMAGE batch to raw latents.

        Args:
            pixels: ``[B, H, W, C>=3]`` in [0, 1] (extra channels, e.g. alpha, are dropped).
            sample: draw from the posterior (KL VAEs) instead of taking its mean.
            generator: CPU generator for ``sample=True`` (required then: no global RNG).
            fit: "crop" (centre-crop to a multiple of the downscale, ComfyUI's rule) or "pad".
            batch_chunk: images per chunk (None/0 = from the memory estimate).
            callback: progress ``(done, total)`` over chunks.

        Returns:
            ``[B, C, H/f, W/f]`` float32 raw latents on the CPU.

        Raises:
            ValueError: for bad shapes, NaN/Inf input, or ``sample=True`` without a generator.
        """
        x = self._prepare_pixels(pixels, fit, sample, generator, "VAE.encode")
        p, chunk = self._decide("encode", x, batch_chunk)
        return self._latents(self._batches("encode", x, p, chunk, callback), sample, generator)

    def decode(
        self, samples: Tensor, *, batch_chunk: int | None = None, callback: progress.Callback | None = None
    ) -> Tensor:
        """Decode raw latents to an IMAGE batch.

        Args:
            samples: ``[B, C, h, w]`` raw latents (any float dtype, any device).
            batch_chunk: latents per chunk (None/0 = from the memory estimate; bounds memory for
                long walks).
            callback: progress ``(done, total)`` over chunks.

        Returns:
            ``[B, h*f, w*f, 3]`` float32 in [0, 1] on the CPU.

        Raises:
            ValueError: for wrong channels/shape or NaN/Inf latents.
        """
        self._check_latent(samples, "VAE.decode")
        p, chunk = self._decide("decode", samples, batch_chunk)
        return self._batches("decode", samples, p, chunk, callback)

    def encode_tiled(
        self, pixels: Tensor, tile_x: int = 512, tile_y: int = 512, overlap: int = 64,
        tile_t: int | None = None, overlap_t: int | None = None, *, strategy: str = "auto", sample: bool = False,
        generator: torch.Generator | None = None, fit: str = "crop", callback: progress.Callback | None = None,
    ) -> Tensor:  # fmt: skip
        """:meth:`encode` in tiles of ``tile_y x tile_x`` **pixels** with ``overlap`` (ComfyUI units).

        Tiles share global GroupNorm statistics, so they are seamless; ``strategy="exact"`` runs
        the layer-streamed path instead (equals untiled, tile size unused). ``tile_t``/``overlap_t``
        (ComfyUI's video-aware tiled nodes) are ignored. See :mod:`latent_ops.vae.tiling`.
        """
        x = self._prepare_pixels(pixels, fit, sample, generator, "VAE.encode_tiled")
        p, chunk = self._decide("encode", x, 1, (tile_y, tile_x), overlap, strategy)
        return self._latents(self._batches("encode", x, p, chunk, callback), sample, generator)

    def decode_tiled(
        self, samples: Tensor, tile_x: int = 64, tile_y: int = 64, overlap: int = 16, tile_t: int | None = None,
        overlap_t: int | None = None, *, strategy: str = "auto", callback: progress.Callback | None = None,
    ) -> Tensor:  # fmt: skip
        """:meth:`decode` in tiles of ``tile_y x tile_x`` **latent** pixels with ``overlap`` (ComfyUI
        units); ``strategy`` and ``tile_t``/``overlap_t`` as in :meth:`encode_tiled`."""
        self._check_latent(samples, "VAE.decode_tiled")
        p, chunk = self._decide("decode", samples, 1, (tile_y, tile_x), overlap, strategy)
        return self._batches("decode", samples, p, chunk, callback)
