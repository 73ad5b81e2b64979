"""Exact, layer-streamed encode and decode of a whole diffusers KL VAE, and their memory cost.

:func:`decode_exact` and :func:`encode_exact` run every layer through a
:class:`~latent_ops.vae.stream.Streamer` (global GroupNorm statistics, banded convolutions, global
attention), so the result equals the stock forward up to float summation order while peak memory
stays near two activations of the widest level (:func:`exact_bytes`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from . import stream
from .stream import Streamer


def check_supported(module: nn.Module) -> None:
    """Raise ``ValueError`` unless ``module`` is an ``AutoencoderKL`` the streamer can run exactly."""
    cfg = getattr(module, "config", None)
    if cfg is None or not hasattr(module, "encoder") or not hasattr(module.decoder, "up_blocks"):
        raise ValueError(f"vae_stream: {type(module).__name__} is not a diffusers AutoencoderKL")
    if cfg.get("act_fn", "silu") != "silu":
        raise ValueError(f"vae_stream: act_fn {cfg.get('act_fn')!r} is not supported (only 'silu')")
    for blk in module.decoder.up_blocks:
        for up in blk.upsamplers or []:
            if not up.interpolate or up.use_conv_transpose or up.norm is not None:
                raise ValueError("vae_stream: only nearest-upsampling + conv decoders are supported")


@torch.inference_mode()
def decode_exact(module: nn.Module, z: Tensor, streamer: Streamer) -> Tensor:
    """Decode raw latents ``[B, C, h, w]`` to ``[B, 3, h*f, w*f]`` in [-1, 1] (unclamped), exactly."""
    dec = module.decoder
    x = z.to(dtype=dec.conv_in.weight.dtype, device=dec.conv_in.weight.device).contiguous()
    pqc = getattr(module, "post_quant_conv", None)
    if pqc is not None:
        x = streamer.conv(x, pqc)
    x = streamer.conv(x, dec.conv_in)
    x = streamer.mid(dec.mid_block, x)
    blocks = list(dec.up_blocks)
    fused = False
    for i, blk in enumerate(blocks):
        for j, res in enumerate(blk.resnets):
            if not (fused and j == 0):
                x = streamer.resnet(res, x)
        fused = False
        for up in blk.upsamplers or []:
            nxt = blocks[i + 1].resnets[0] if i + 1 == len(blocks) - 1 else None
            if nxt is not None and nxt.conv_shortcut is not None and nxt.conv_shortcut.kernel_size[0] == 1:
                x = streamer.up_resnet(up.conv, nxt, x)  # the largest tensor is never stored
                fused = True
            else:
                x = streamer.conv(x, up.conv, upsample=True)
    return streamer.conv(x, dec.conv_out, pre=streamer.norm_affine(dec.conv_norm_out, x))


@torch.inference_mode()
def encode_exact(module: nn.Module, pixels: Tensor, streamer: Streamer) -> Tensor:
    """Encode ``[B, 3, H, W]`` in [-1, 1] to posterior moments ``[B, 2C, H/f, W/f]`` exactly."""
    enc = module.encoder
    x = pixels.to(dtype=enc.conv_in.weight.dtype, device=enc.conv_in.weight.device).contiguous()
    x = streamer.conv(x, enc.conv_in)
    for blk in enc.down_blocks:
        for res in blk.resnets:
            x = streamer.resnet(res, x)
        for down in blk.downsamplers or []:
            if down.padding != 0:
                raise ValueError("vae_stream: only LDM-style (padding 0) downsamplers are supported")
            x = streamer.downsample(x, down.conv)
    x = streamer.mid(enc.mid_block, x)
    x = streamer.conv(x, enc.conv_out, pre=streamer.norm_affine(enc.conv_norm_out, x))
    qc = getattr(module, "quant_conv", None)
    if qc is not None:
        x = streamer.conv(x, qc)
    return x


EXACT = {"decode": decode_exact, "encode": encode_exact}
"""The exact forward of each direction: ``(module, input, streamer) -> output``."""


def exact_bytes(module: nn.Module, kind: str, hw: tuple[int, int], batch: int = 1) -> int:
    """Estimated peak activation bytes of :func:`decode_exact` or :func:`encode_exact`.

    Walks the levels in the order the direction visits them (decode: narrowest first, doubling
    the size after each level but the last, where an upsampler's input and fused resnet cost
    about five activations; encode: widest first, halving) and keeps the worst pair of
    neighbouring activations, plus the bands and one chunk of attention scores at latent size.

    Args:
        module: the ``AutoencoderKL``. kind: ``"decode"`` or ``"encode"``.
        hw: input size (latent px for decode, pixels for encode). batch: images at once.
    """
    chans = [int(c) for c in module.config["block_out_channels"]]
    decode = kind == "decode"
    if decode:
        chans = chans[::-1]
    el = next(module.parameters()).element_size()
    h, w = hw
    worst = 0
    for i, c in enumerate(chans):
        worst = max(worst, (chans[max(i - 1, 0)] + c) * h * w)
        if i < len(chans) - 1:
            if decode:
                worst = max(worst, c * h * w * 5)
            h, w = (2 * h, 2 * w) if decode else (h // 2, w // 2)
    latent = hw[0] * hw[1] if decode else h * w
    return int(worst * el * batch + 4 * stream.BAND_BYTES + stream.QUERY_CHUNK * latent * 4)
