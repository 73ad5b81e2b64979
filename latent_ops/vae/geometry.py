"""VAE geometry, one rule each: latent channels and spatial compression, and the latent format of a config.

- :func:`config_geometry` reads a diffusers ``AutoencoderKL``/``AutoencoderTiny`` config (ours);
- :func:`vae_geometry` and :func:`spatial_compression` read any VAE with ComfyUI's duck type
  (ours or ``comfy.sd.VAE``: ``latent_channels``, ``downscale_ratio``/``upscale_ratio``,
  ``spacial_compression_encode()``/``spacial_compression_decode()``); :func:`latent_geometry`
  is the rule of the nodes that make latents (a connected VAE's geometry, else the widgets);
- :func:`latent_format_from_config` is the latent format of a KL-VAE config (its channels,
  compression, ``scaling_factor`` and ``shift_factor``).

Pixels ``[B, H, W, 3]`` encode to latents ``[B, channels, H / downscale, W / downscale]`` and
latents ``[B, channels, h, w]`` decode to ``[B, h * upscale, w * upscale, 3]``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..latent_format import LatentFormat


@dataclass(frozen=True)
class Geometry:
    """Latent geometry of an image VAE.

    Attributes:
        channels: latent channels C.
        downscale: pixels per latent pixel along H and W when encoding.
        upscale: pixels per latent pixel along H and W when decoding.
    """

    channels: int
    downscale: int
    upscale: int


def config_geometry(cfg: Mapping) -> Geometry:
    """Geometry of a diffusers VAE config (``AutoencoderKL`` or ``AutoencoderTiny``).

    KL: one 2x resampler between consecutive levels, so ``2 ** (len(block_out_channels) - 1)``
    both ways. Tiny: a stride-2 convolution starts every encoder block but the first, and an
    ``upsampling_scaling_factor`` upsampler ends every decoder block but the last.

    Raises:
        ValueError: if the config has neither layout's keys.
    """
    try:
        channels = int(cfg["latent_channels"])
        if "num_encoder_blocks" in cfg or "num_decoder_blocks" in cfg:  # AutoencoderTiny
            down = 2 ** (len(cfg["num_encoder_blocks"]) - 1)
            up = int(cfg.get("upsampling_scaling_factor", 2)) ** (len(cfg["num_decoder_blocks"]) - 1)
            return Geometry(channels, down, up)
        f = 2 ** (len(cfg["block_out_channels"]) - 1)
    except (KeyError, TypeError) as exc:
        raise ValueError(f"config_geometry: not a diffusers VAE config (missing or bad {exc})") from None
    return Geometry(channels, f, f)


def spatial_compression(vae: object, direction: str) -> int:
    """Pixels per latent pixel along H and W of any ComfyUI-style VAE (image or video).

    ComfyUI's rule: ``spacial_compression_encode()``/``_decode()`` when the VAE has them, else
    ``downscale_ratio``/``upscale_ratio`` (the last entry of a per-axis tuple).

    Args:
        vae: ours or ``comfy.sd.VAE``. direction: ``"encode"`` or ``"decode"``.

    Raises:
        ValueError: for another direction, or a VAE without an int compression.
    """
    if direction not in ("encode", "decode"):
        raise ValueError(f"spatial_compression: direction must be 'encode' or 'decode', got {direction!r}")
    method = getattr(vae, f"spacial_compression_{direction}", None)
    if callable(method):
        return int(method())
    down = getattr(vae, "downscale_ratio", None)
    ratio = down if direction == "encode" else getattr(vae, "upscale_ratio", down)
    if isinstance(ratio, tuple | list) and ratio:
        ratio = ratio[-1]
    if not isinstance(ratio, int):
        raise ValueError(f"spatial_compression: {type(vae).__name__} has no int downscale_ratio, got {ratio!r}")
    return ratio


def vae_geometry(vae: object, caller: str = "vae_geometry", hint: str = "") -> Geometry:
    """Geometry of an image VAE with ComfyUI's duck type (ours or ``comfy.sd.VAE``).

    Args:
        vae: has int ``latent_channels`` and ``downscale_ratio`` (``upscale_ratio`` defaults to it).
        caller: names the caller in the error message. hint: appended to the error message.

    Raises:
        ValueError: naming ``caller`` and the values, for a VAE without them (video VAEs have
            per-axis tuples).
    """
    channels, down = getattr(vae, "latent_channels", None), getattr(vae, "downscale_ratio", None)
    up = getattr(vae, "upscale_ratio", down)
    if not all(isinstance(v, int) and v >= 1 for v in (channels, down, up)):
        raise ValueError(
            f"{caller}: vae must have int 'latent_channels' and 'downscale_ratio' (an image VAE), "
            f"got {channels!r} and {down!r}{hint}"
        )
    return Geometry(channels, down, up)  # type: ignore[arg-type]


def latent_geometry(vae: object | None, channels: int, downscale: int, caller: str, hint: str = "") -> tuple[int, int]:
    """``(channels, downscale)`` of new latents: the VAE's (:func:`vae_geometry`) when one is
    given, else ``channels`` and ``downscale`` (a node's widgets). Errors as :func:`vae_geometry`."""
    if vae is None:
        return channels, downscale
    geo = vae_geometry(vae, caller, hint)
    return geo.channels, geo.downscale


def latent_format_from_config(cfg: Mapping, name: str) -> LatentFormat:
    """``LatentFormat(name, ...)`` of a KL-VAE config: channels and compression from
    :func:`config_geometry`, ``scaling_factor`` (default 1) and ``shift_factor`` (default 0)."""
    geo = config_geometry(cfg)
    return LatentFormat(name, channels=geo.channels, downscale=geo.downscale,
                        scale=float(cfg.get("scaling_factor") or 1.0), shift=float(cfg.get("shift_factor") or 0.0))
