"""Seamless tiling: exact streamed mode == untiled; tile mode within tolerance; planning; mosaic.

Tolerances (random-weight tiny VAEs, outputs in [-1, 1]):
- "exact" strategy: max |tiled - untiled| <= 1e-4 (float summation order only).
- "tiles" strategy with exact statistics, no attention, halo 8 latent px: RMS <= 5e-3.
- TAESD tiles, halo 8 latent px (decode) / 64 px (encode): max <= 1e-3.
"""

from __future__ import annotations

import pytest
import torch

from latent_ops.vae import exact as vae_exact
from latent_ops.vae import stream as vae_stream
from latent_ops.vae import tiling as vae_tiling
from latent_ops.vae.tiling import Plan


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
    out = vae_tiling.run(m, "decode", z, Plan("exact"))
    assert out.shape == ref.shape == (2, 3, 72, 104)
    assert (out - ref).abs().max() <= 1e-4


@pytest.mark.parametrize("quant", [True, False])
def test_exact_encode_equals_untiled(gen, monkeypatch, quant) -> None:
    monkeypatch.setattr(vae_stream, "BAND_BYTES", 2**12)
    m = tiny_kl(gen, latent=4 if quant else 16, quant=quant)
    x = torch.rand(1, 3, 88, 64, generator=gen) * 2 - 1
    ref = untiled_moments(m, x)
    out = vae_tiling.run(m, "encode", x, Plan("exact"))
    assert out.shape == ref.shape and (out - ref).abs().max() <= 1e-4


def test_streamer_records_and_replays_statistics(gen) -> None:
    m = tiny_kl(gen)
    z = torch.randn(1, 4, 6, 6, generator=gen)
    rec = vae_stream.Streamer(m, record=True)
    a = vae_exact.decode_exact(m, z, rec)
    gns = [n for n, mod in m.named_modules() if isinstance(mod, torch.nn.GroupNorm) and n.startswith("decoder")]
    assert sorted(rec.recorded) == sorted(gns)
    mean, rstd = rec.recorded["decoder.conv_norm_out"]
    assert mean.shape == rstd.shape == (1, 8) and torch.all(rstd > 0)
    b = vae_exact.decode_exact(m, z, vae_stream.Streamer(m, fixed=rec.recorded))
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="no fixed statistics"):
        vae_exact.decode_exact(m, z, vae_stream.Streamer(m, fixed={}))


def _rms(a, b):
    return float((a - b).pow(2).mean().sqrt())


def test_tiles_with_global_statistics_are_seamless(gen) -> None:
    m = tiny_kl(gen, attn=False)
    z = torch.randn(1, 4, 24, 24, generator=gen)
    ref = untiled_decode(m, z)
    errs = {h: _rms(vae_tiling.run(m, "decode", z, Plan("tiles", (8, 8), h, 1)), ref) for h in (2, 8)}
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
    out = vae_tiling.run(m, "encode", x, Plan("tiles", (64, 64), 32, 1))
    assert out.shape == ref.shape
    assert _rms(out, ref) < 0.2 * float(ref.std())  # attention sees only the tile: approximate
    z = torch.randn(1, 4, 16, 16, generator=gen)
    approx = vae_tiling.run(m, "decode", z, Plan("tiles", (8, 8), 4, 2))
    assert approx.shape == (1, 3, 128, 128) and torch.isfinite(approx).all()


def test_taesd_tiles(gen) -> None:
    from diffusers import AutoencoderTiny

    t = AutoencoderTiny(encoder_block_out_channels=[8] * 4, decoder_block_out_channels=[8] * 4,
                        num_encoder_blocks=[1] * 4, num_decoder_blocks=[1] * 4).eval()  # fmt: skip
    z = torch.randn(1, 4, 20, 28, generator=gen)
    with torch.inference_mode():
        ref = t.decoder(z)
    p = vae_tiling.plan(t, "decode", (20, 28), 2**40, tile=(8, 8), overlap=8)
    assert p == Plan("tiles", (8, 8), 8, 1)
    out = vae_tiling.run(t, "decode", z, p)
    assert out.shape == ref.shape and (out - ref).abs().max() <= 1e-3
    x = torch.rand(1, 3, 160, 96, generator=gen) * 2 - 1
    with torch.inference_mode():
        ref = t.encoder(x)
    out = vae_tiling.run(t, "encode", x, vae_tiling.plan(t, "encode", (160, 96), 0, tile=(64, 64), overlap=64))
    assert out.shape == ref.shape and (out - ref).abs().max() <= 1e-3
    with pytest.raises(ValueError, match="needs a KL VAE"):
        vae_tiling.plan(t, "decode", (20, 28), 2**40, strategy="exact")
    assert vae_tiling.plan(t, "decode", (20, 28), 0) == Plan("tiles", *vae_tiling.AUTO_TILE["decode"])


def test_plan_and_estimates(gen) -> None:
    m = tiny_kl(gen)
    small = vae_exact.exact_bytes(m, "decode", (16, 16))
    assert vae_exact.exact_bytes(m, "decode", (32, 32)) > small
    assert vae_exact.exact_bytes(m, "encode", (256, 256)) > vae_exact.exact_bytes(m, "encode", (128, 128))
    # automatic: whole when the untiled estimate fits, else exact when it fits, else tiles of AUTO_TILE
    assert vae_tiling.plan(m, "decode", (16, 16), 10 * small, whole_bytes=small) == Plan("whole")
    assert vae_tiling.plan(m, "decode", (16, 16), 10 * small, whole_bytes=20 * small) == Plan("exact")
    assert vae_tiling.plan(m, "decode", (16, 16), budget=10 * small) == Plan("exact")
    p = vae_tiling.plan(m, "decode", (256, 256), budget=small)
    assert (p.strategy, p.tile, p.overlap) == ("tiles", (64, 64), 16) and p.stats_downscale >= 8
    assert vae_tiling.plan(m, "encode", (512, 512), budget=small).tile == (512, 512)
    # a tile asked for is honoured even when everything fits; "exact" ignores it
    assert vae_tiling.plan(m, "decode", (16, 16), 10 * small, tile=(8, 8), overlap=4) == Plan("tiles", (8, 8), 4, 1)
    assert vae_tiling.plan(m, "decode", (16, 16), 10 * small, tile=(8, 8), strategy="exact") == Plan("exact")
    assert vae_tiling.plan(m, "decode", (16, 16), 10 * small, strategy="tiles") == Plan("tiles", (64, 64), 16, 1)
    with pytest.raises(ValueError, match="strategy"):
        vae_tiling.plan(m, "decode", (16, 16), small, strategy="fast")
    with pytest.raises(ValueError, match="tile"):
        vae_tiling.plan(m, "decode", (16, 16), small, tile=(0, 8))
    assert vae_tiling.available_memory(torch.device("cpu")) > 0


def test_mosaic_samples_full_resolution_crops(gen) -> None:
    x = torch.arange(64.0).reshape(1, 1, 8, 8)
    m = vae_tiling.mosaic(x, 2, 2)
    assert m.shape == (1, 1, 4, 4)
    # centre 2x2 crop of each 4x4 block
    assert torch.equal(m[0, 0, :2, :2], x[0, 0, 1:3, 1:3]) and torch.equal(m[0, 0, 2:, 2:], x[0, 0, 5:7, 5:7])
    assert vae_tiling.mosaic(x, 1, 2) is x


def test_explicit_tile_size_is_honoured(gen) -> None:
    """A tile size asked for runs tiles of that size, even when the exact streamed path would fit."""
    from latent_ops.latent_format import LatentFormat
    from latent_ops.vae.wrapper import VAE

    m = tiny_kl(gen, attn=False)
    vae = VAE(m, LatentFormat("custom", 4, 8), "custom", memory_budget=2**34)
    z = torch.randn(1, 4, 24, 16, generator=gen)
    seen: list[tuple[int, int]] = []
    out = vae.decode_tiled(z, tile_x=8, tile_y=8, overlap=8, callback=lambda d, t: seen.append((d, t)))
    assert seen == [(i, 6) for i in range(1, 7)]  # 3 x 2 tiles of 8 latent px
    assert _rms(out, vae.decode(z)) <= 5e-3  # global GroupNorm statistics: seam-free
    x = torch.rand(1, 96, 128, 3, generator=gen)
    seen.clear()
    lat = vae.encode_tiled(x, tile_x=32, tile_y=48, overlap=48, callback=lambda d, t: seen.append((d, t)))
    assert seen == [(i, 8) for i in range(1, 9)]  # 2 x 4 tiles of 48 x 32 px
    ref = vae.encode(x)
    assert lat.shape == ref.shape == (1, 4, 12, 16) and _rms(lat, ref) <= 0.02 * float(ref.std())
