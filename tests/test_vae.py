"""The VAE object: ComfyUI duck type, ranges, cropping/padding, sampling, batching, NaN retry."""

from __future__ import annotations

import logging

import pytest
import torch

from latent_ops import latent_format
from latent_ops.vae import generic as vae_mod
from latent_ops.vae.wrapper import VAE


@pytest.fixture
def kl(gen, tiny_kl):
    return tiny_kl(gen)


@pytest.fixture
def vae(kl):
    return VAE(kl, latent_format.SD15, "sd15")


def test_duck_type_attributes(vae) -> None:
    assert (vae.downscale_ratio, vae.upscale_ratio, vae.latent_channels, vae.latent_dim) == (8, 8, 4, 2)
    assert vae.spacial_compression_decode() == vae.spacial_compression_encode() == 8
    assert (vae.scale_factor, vae.shift_factor, vae.family) == (0.18215, 0.0, "sd15")
    assert vae.memory_used_decode((1, 4, 64, 64), torch.float32) == 4 * vae.memory_used_decode((1, 4, 32, 32), torch.float32)
    assert vae.memory_used_encode((1, 512, 512, 3), torch.float16) * 2 == vae.memory_used_encode((1, 512, 512, 3), torch.float32)
    assert vae.device == torch.device("cpu") and vae.dtype == torch.float32
    assert vae.temporal_compression_decode() is None and vae.temporal_compression_encode() is None
    assert vae.vae_encode_crop_pixels(torch.zeros(1, 35, 50, 3)).shape == (1, 32, 48, 3)


def test_comfyui_tiled_node_call_signature(vae, gen) -> None:
    """ComfyUI's VAEDecodeTiled/VAEEncodeTiled pass tile_t/overlap_t keywords (one tile: equals untiled)."""
    z = torch.randn(1, 4, 4, 4, generator=gen)
    img = vae.decode_tiled(z, tile_x=4, tile_y=4, overlap=1, tile_t=64, overlap_t=8)
    torch.testing.assert_close(img, vae.decode(z), atol=1e-4, rtol=0)
    x = torch.rand(1, 32, 32, 3, generator=gen)
    lat = vae.encode_tiled(x, tile_x=32, tile_y=32, overlap=8, tile_t=64, overlap_t=8)
    torch.testing.assert_close(lat, vae.encode(x), atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="out of range"):
        vae.encode_tiled(x, tile_x=4, tile_y=32)


def test_matches_diffusers_reference(vae, kl, gen) -> None:
    x = torch.rand(3, 40, 56, 3, generator=gen)
    with torch.inference_mode():
        z_ref = kl.encode(x.movedim(-1, 1) * 2 - 1).latent_dist.mode()
        img_ref = ((kl.decode(z_ref).sample + 1) / 2).clamp(0, 1).movedim(1, -1)
    z = vae.encode(x)
    assert z.dtype == torch.float32 and z.shape == (3, 4, 5, 7)
    torch.testing.assert_close(z, z_ref, atol=1e-5, rtol=1e-5)
    assert z.stride() == z_ref.stride()  # the network's memory format is kept: later convolutions depend on it
    img = vae.decode(z)
    assert img.shape == (3, 40, 56, 3) and img.dtype == torch.float32
    assert 0 <= img.min() and img.max() <= 1
    torch.testing.assert_close(img, img_ref, atol=1e-5, rtol=1e-5)


def test_crop_and_pad(vae, gen) -> None:
    x = torch.rand(1, 35, 50, 4, generator=gen)  # alpha channel dropped, size not a multiple of 8
    z = vae.encode(x)
    assert z.shape == (1, 4, 4, 6)
    # crop is centred: rows 1..33, cols 1..49
    torch.testing.assert_close(z, vae.encode(x[:, 1:33, 1:49, :3].contiguous()))
    zp = vae.encode(x, fit="pad")
    assert zp.shape == (1, 4, 5, 7)
    with pytest.raises(ValueError, match="fit"):
        vae.encode(x, fit="stretch")
    with pytest.raises(ValueError, match="smaller than"):
        vae.encode(torch.rand(1, 4, 4, 3))


def test_sampling_needs_generator_and_is_deterministic(vae, gen) -> None:
    x = torch.rand(2, 16, 16, 3, generator=gen)
    mean = vae.encode(x)
    a = vae.encode(x, sample=True, generator=torch.Generator().manual_seed(5))
    b = vae.encode(x, sample=True, generator=torch.Generator().manual_seed(5))
    c = vae.encode(x, sample=True, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c) and not torch.equal(a, mean)
    with pytest.raises(ValueError, match="Generator"):
        vae.encode(x, sample=True)


def test_bad_inputs(vae, tiny_kl) -> None:
    with pytest.raises(ValueError, match=r"\[B,4,h,w\]"):
        vae.decode(torch.zeros(1, 16, 4, 4))
    with pytest.raises(ValueError, match="NaN"):
        vae.decode(torch.full((1, 4, 4, 4), float("nan")))
    with pytest.raises(ValueError, match="NaN"):
        vae.encode(torch.full((1, 16, 16, 3), float("inf")))
    with pytest.raises(ValueError, match=r"\[B,H,W,C>=3\]"):
        vae.encode(torch.zeros(16, 16, 3))
    with pytest.raises(ValueError, match="latent format"):
        VAE(tiny_kl(torch.Generator().manual_seed(0), latent=16, quant=False), latent_format.SD15, "sd15")
    with pytest.raises(ValueError, match="dtype"):
        VAE(tiny_kl(torch.Generator().manual_seed(0)), latent_format.SD15, "sd15", dtype=torch.float64)


def test_half_precision_inputs_and_dtypes(kl, gen) -> None:
    vae = VAE(kl, latent_format.SD15, "sd15", dtype=torch.bfloat16)
    x = torch.rand(1, 16, 16, 3, generator=gen).to(torch.bfloat16)
    z = vae.encode(x)
    assert z.dtype == torch.float32
    img = vae.decode(z.half())
    assert img.dtype == torch.float32 and img.shape == (1, 16, 16, 3)


def test_batch_chunks_and_progress(vae, gen) -> None:
    z = torch.randn(5, 4, 3, 2, generator=gen)
    calls = []
    full = vae.decode(z)
    chunked = vae.decode(z, batch_chunk=2, callback=lambda d, t: calls.append((d, t)))
    torch.testing.assert_close(chunked, full, atol=1e-6, rtol=0)
    assert calls == [(2, 5), (4, 5), (5, 5)]


def test_auto_tiling_when_memory_is_short(kl, gen, caplog) -> None:
    vae = VAE(kl, latent_format.SD15, "sd15")
    z = torch.randn(1, 4, 12, 10, generator=gen)
    ref = vae.decode(z)
    small = VAE(kl, latent_format.SD15, "sd15", memory_budget=vae.memory_used_decode(z.shape, torch.float32) // 2)
    with caplog.at_level(logging.INFO, logger="latent_ops.vae.wrapper"):
        out = small.decode(z)
    assert "tiling" in caplog.text
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=0)


def test_nan_in_half_precision_retries_in_float32(kl, gen, tiny_kl, caplog) -> None:
    vae = VAE(kl, latent_format.SD15, "sd15", dtype=torch.bfloat16)
    # the retry runs the same (bf16-rounded) weights in float32
    rounded = torch.nn.Module.to(tiny_kl(torch.Generator().manual_seed(1234)), dtype=torch.bfloat16)  # same as kl
    ref = VAE(torch.nn.Module.to(rounded, dtype=torch.float32), latent_format.SD15, "sd15")

    def overflow(module, args, out):
        return out * float("inf") if out.dtype in (torch.float16, torch.bfloat16) else out

    handle = vae.module.decoder.conv_out.register_forward_hook(overflow)
    z = torch.randn(3, 4, 2, 2, generator=gen)
    with caplog.at_level(logging.WARNING, logger="latent_ops.vae.wrapper"):
        out = vae.decode(z, batch_chunk=2)
    handle.remove()
    assert "decode chunk 0:2" in caplog.text and "decode chunk 2:3" in caplog.text and "float32" in caplog.text
    assert torch.isfinite(out).all() and vae.dtype == torch.bfloat16
    assert next(vae.module.parameters()).dtype == torch.bfloat16  # restored after the retry
    torch.testing.assert_close(out, ref.decode(z), atol=1e-5, rtol=0)


def test_taesd_wrapper_raw_space(gen) -> None:
    from diffusers import AutoencoderTiny

    t = AutoencoderTiny(encoder_block_out_channels=[8] * 4, decoder_block_out_channels=[8] * 4, latent_channels=16,
                        num_encoder_blocks=[1] * 4, num_decoder_blocks=[1] * 4).eval()  # fmt: skip
    vae = VAE(t, latent_format.FLUX, "taef1")
    assert (vae.downscale_ratio, vae.latent_channels) == (8, 16)
    x = torch.rand(1, 32, 32, 3, generator=gen)
    with torch.inference_mode():
        ref = t.encoder(x.movedim(-1, 1) * 2 - 1) / 0.3611 + 0.1159
    torch.testing.assert_close(vae.encode(x), ref, atol=1e-6, rtol=1e-6)


class FakeComfyVAE:
    """Only ComfyUI's duck-typed surface (no sample/generator/callback keywords)."""

    def __init__(self, inner: VAE) -> None:
        self.inner, self.downscale_ratio, self.calls = inner, inner.downscale_ratio, []

    def encode(self, pixels):
        self.calls.append("encode")
        return self.inner.encode(pixels)

    def encode_tiled(self, pixels, tile_x=512, tile_y=512, overlap=64):
        self.calls.append(("encode_tiled", tile_x, overlap))
        return self.inner.encode_tiled(pixels, tile_x, tile_y, overlap)

    def decode(self, samples):
        self.calls.append("decode")
        return self.inner.decode(samples)

    def decode_tiled(self, samples, tile_x=64, tile_y=64, overlap=16):
        self.calls.append(("decode_tiled", tile_x, overlap))
        return self.inner.decode_tiled(samples, tile_x, tile_y, overlap)


def test_node_helpers_accept_comfy_duck_type(vae, gen) -> None:
    fake = FakeComfyVAE(vae)
    x = torch.rand(2, 32, 32, 3, generator=gen)
    z = vae_mod.encode_image(fake, x)
    torch.testing.assert_close(vae_mod.encode_image(fake, x, tile_size=32, overlap=8), z, atol=1e-4, rtol=0)
    img = vae_mod.decode_latent(fake, z, batch_chunk=1)
    torch.testing.assert_close(vae_mod.decode_latent(fake, z, tile_size=32, overlap=8), img, atol=1e-4, rtol=0)
    assert vae_mod.decode_latent(fake, z, tile_size=16, overlap=8).shape == img.shape  # 2 x 2 tiles of 2 latent px
    assert fake.calls == ["encode", ("encode_tiled", 32, 8), "decode", "decode", ("decode_tiled", 4, 1),
                          ("decode_tiled", 2, 1)]
    with pytest.raises(ValueError, match="Latent Ops VAE"):
        vae_mod.encode_image(fake, x, sample=True)
    s1 = vae_mod.encode_image(vae, x, sample=True, seed=3)
    assert torch.equal(s1, vae_mod.encode_image(vae, x, sample=True, seed=3)) and not torch.equal(s1, z)
    with pytest.raises(ValueError, match="must be >= 0"):
        vae_mod.decode_latent(vae, z, tile_size=-1)
