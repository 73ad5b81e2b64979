"""Seamless tiling: exact streamed mode == untiled; tile mode within tolerance; planning; mosaic.

Tolerances (random-weight tiny VAEs, outputs in [-1, 1]):
- "exact" strategy: max |tiled - untiled| <= 1e-4 (float summation order only).
- "tiles" strategy with exact statistics, no attention, halo 8 latent px: RMS <= 5e-3.
- TAESD tiles, halo 8 latent px (decode) / 64 px (encode): max <= 1e-3.
"""

from __future__ import annotations

import pytest
import torch

from latent_ops.vae import stream as vae_stream
from latent_ops.vae import tiling as vae_tiling


def tiny_kl(gen, chans=(8, 16, 16, 16), attn=True, latent=4, quant=True):
    from diffusers import AutoencoderKL

    n = len(chans)
    m = AutoencoderKL(
        block_out_channels=list(chans), down_block_types=["DownEncoderBlock2D"] * n,
        up_block_types=["UpDecoderBlock2D"] * n, layers_per_block=1, latent_channels=latent,
        norm_num_groups=8, mid_block_add_attention=attn, use_quant_conv=quant, use_post_quant_conv=quant,
    )  # fmt: skip
    with torch.no_grad():
        for name, p in m.named_parameters():
            if p.ndim > 1:
                p.copy_(torch.randn(p.shape, generator=gen) / p[0].numel() ** 0.5)
            else:
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=gen) if "norm" in name and "weight" in name else 0.1 * torch.randn(p.shape, generator=gen))
    return m.eval()


def untiled_decode(m, z):
    with torch.inference_mode():
        return m.decode(z).sample


def untiled_moments(m, x):
    with torch.inference_mode():
        h = m.encoder(x)
        return m.quant_conv(h) if m.quant_conv is not None else h


@pytest.mark.parametrize("band_bytes", [2**10, 2**14, 2**30])
def test_exact_decode_equals_untiled(gen, monkeypatch, band_bytes) -> None:
    monkeypatch.setattr(vae_stream, "BAND_BYTES", band_bytes)  # 1 KiB: bands of one row
    monkeypatch.setattr(vae_stream, "QUERY_CHUNK", 7)
    m = tiny_kl(gen)
    z = torch.randn(2, 4, 9, 13, generator=gen)
    ref = untiled_decode(m, z)
    out = vae_tiling.tiled_decode(m, z, strategy="exact")
    assert out.shape == ref.shape == (2, 3, 72, 104)
    assert (out - ref).abs().max() <= 1e-4


@pytest.mark.parametrize("quant", [True, False])
def test_exact_encode_equals_untiled(gen, monkeypatch, quant) -> None:
    monkeypatch.setattr(vae_stream, "BAND_BYTES", 2**12)
    m = tiny_kl(gen, latent=4 if quant else 16, quant=quant)
    x = torch.rand(1, 3, 88, 64, generator=gen) * 2 - 1
    ref = untiled_moments(m, x)
    out = vae_tiling.tiled_encode(m, x, strategy="exact")
    assert out.shape == ref.shape and (out - ref).abs().max() <= 1e-4


def test_streamer_records_and_replays_statistics(gen) -> None:
    m = tiny_kl(gen)
    z = torch.randn(1, 4, 6, 6, generator=gen)
    rec = vae_stream.Streamer(m, record=True)
    a = vae_stream.decode_exact(m, z, rec)
    gns = [n for n, mod in m.named_modules() if isinstance(mod, torch.nn.GroupNorm) and n.startswith("decoder")]
    assert sorted(rec.recorded) == sorted(gns)
    mean, rstd = rec.recorded["decoder.conv_norm_out"]
    assert mean.shape == rstd.shape == (1, 8) and torch.all(rstd > 0)
    b = vae_stream.decode_exact(m, z, vae_stream.Streamer(m, fixed=rec.recorded))
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="no fixed statistics"):
        vae_stream.decode_exact(m, z, vae_stream.Streamer(m, fixed={}))


def _rms(a, b):
    return float((a - b).pow(2).mean().sqrt())


def test_tiles_with_global_statistics_are_seamless(gen) -> None:
    m = tiny_kl(gen, attn=False)
    z = torch.randn(1, 4, 24, 24, generator=gen)
    ref = untiled_decode(m, z)
    errs = {h: _rms(vae_tiling.tiled_decode(m, z, (8, 8), h, strategy="tiles", stats_downscale=1), ref) for h in (2, 8)}
    assert errs[8] <= 5e-3 and errs[8] < errs[2]

    # naive tiling (stock module per tile, per-tile GroupNorm statistics) is far worse
    def naive(t):
        with torch.inference_mode():
            return m.decode(t).sample

    naive_out = vae_tiling.run_tiles(naive, z, (8, 8), 8, 8, 3)
    assert _rms(naive_out, ref) > 5 * errs[8]


def test_tiles_encode_and_attention_error_measured(gen) -> None:
    m = tiny_kl(gen, attn=True)
    x = torch.rand(1, 3, 128, 128, generator=gen) * 2 - 1
    ref = untiled_moments(m, x)
    out = vae_tiling.tiled_encode(m, x, (64, 64), 32, strategy="tiles", stats_downscale=1)
    assert out.shape == ref.shape
    assert _rms(out, ref) < 0.2 * float(ref.std())  # attention sees only the tile: approximate
    z = torch.randn(1, 4, 16, 16, generator=gen)
    approx = vae_tiling.tiled_decode(m, z, (8, 8), 4, strategy="tiles", stats_downscale=2)
    assert approx.shape == (1, 3, 128, 128) and torch.isfinite(approx).all()


def test_taesd_tiles(gen) -> None:
    from diffusers import AutoencoderTiny

    t = AutoencoderTiny(encoder_block_out_channels=[8] * 4, decoder_block_out_channels=[8] * 4,
                        num_encoder_blocks=[1] * 4, num_decoder_blocks=[1] * 4).eval()  # fmt: skip
    z = torch.randn(1, 4, 20, 28, generator=gen)
    with torch.inference_mode():
        ref = t.decoder(z)
    out = vae_tiling.tiled_decode(t, z, (8, 8), 8)
    assert out.shape == ref.shape and (out - ref).abs().max() <= 1e-3
    x = torch.rand(1, 3, 160, 96, generator=gen) * 2 - 1
    with torch.inference_mode():
        ref = t.encoder(x)
    out = vae_tiling.tiled_encode(t, x, (64, 64), 64)
    assert out.shape == ref.shape and (out - ref).abs().max() <= 1e-3
    with pytest.raises(ValueError, match="needs a KL VAE"):
        vae_tiling.tiled_decode(t, z, strategy="exact")


def test_plan_and_estimates(gen) -> None:
    m = tiny_kl(gen)
    small = vae_stream.exact_decode_bytes(m, (16, 16))
    assert vae_stream.exact_decode_bytes(m, (32, 32)) > small
    assert vae_tiling.plan(m, "decode", (16, 16), (8, 8), 4, budget=10 * small) == vae_tiling.Plan("exact")
    p = vae_tiling.plan(m, "decode", (256, 256), (8, 8), 4, budget=small)
    assert p.strategy == "tiles" and p.stats_downscale >= 8
    with pytest.raises(ValueError, match="strategy"):
        vae_tiling.plan(m, "decode", (16, 16), (8, 8), 4, budget=small, strategy="fast")
    assert vae_tiling.available_memory(torch.device("cpu")) > 0


def test_mosaic_samples_full_resolution_crops(gen) -> None:
    x = torch.arange(64.0).reshape(1, 1, 8, 8)
    m = vae_tiling.mosaic(x, 2, 2)
    assert m.shape == (1, 1, 4, 4)
    # centre 2x2 crop of each 4x4 block
    assert torch.equal(m[0, 0, :2, :2], x[0, 0, 1:3, 1:3]) and torch.equal(m[0, 0, 2:, 2:], x[0, 0, 5:7, 5:7])
    assert vae_tiling.mosaic(x, 1, 2) is x
