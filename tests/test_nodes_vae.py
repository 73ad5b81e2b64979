"""Nodes: LatentOpsVAELoader / Encode / Decode, headless model folders, ComfyUI duck type."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from latent_ops.vae import loading as models
from latent_ops.weights import folders as model_paths
from latent_ops.weights import ldm_convert


@pytest.fixture
def models_dir(gen, tiny_kl, tmp_path, monkeypatch):
    from diffusers import AutoencoderTiny

    root = tmp_path / "models"
    (root / "vae/sub").mkdir(parents=True)
    (root / "vae_approx").mkdir()
    m = tiny_kl(gen)
    save_file(ldm_convert.vae_diffusers_to_ldm(m.state_dict()), str(root / "vae/sub/tiny.safetensors"))
    t = AutoencoderTiny(encoder_block_out_channels=[8] * 4, decoder_block_out_channels=[8] * 4,
                        num_encoder_blocks=[1] * 4, num_decoder_blocks=[1] * 4)  # fmt: skip
    enc, dec = ldm_convert.taesd_diffusers_to_original(t.state_dict())
    save_file(enc, str(root / "vae_approx/taesdxl_encoder.safetensors"))
    save_file(dec, str(root / "vae_approx/taesdxl_decoder.safetensors"))
    save_file(dec, str(root / "vae_approx/taesd3_decoder.safetensors"))  # no encoder: not listed
    monkeypatch.setenv(model_paths.ENV_VAR, str(root))
    monkeypatch.setattr(models, "EMBEDDED_VAE_DIR", tmp_path / "no-embedded")
    return root


def _nodes(registry):
    return registry["LatentOpsVAELoader"](), registry["LatentOpsVAEEncode"](), registry["LatentOpsVAEDecode"]()


def test_loader_lists_models_default_first(registry, models_dir, gen, tiny_kl, tmp_path, monkeypatch) -> None:
    loader_cls = registry["LatentOpsVAELoader"]
    names = loader_cls.INPUT_TYPES()["required"]["vae_name"][0]
    assert names == ["sub/tiny.safetensors", "taesdxl"]
    tiny_kl(gen).save_pretrained(tmp_path / "emb")
    monkeypatch.setattr(models, "EMBEDDED_VAE_DIR", tmp_path / "emb")
    names = loader_cls.INPUT_TYPES()["required"]["vae_name"][0]  # recomputed on every call
    assert names[0] == models.DEFAULT_VAE_NAME
    (vae,) = loader_cls().load(models.DEFAULT_VAE_NAME)
    assert vae.family == "embedded"


def test_encode_decode_round_trip(registry, models_dir, gen) -> None:
    loader, enc, dec = _nodes(registry)
    (vae,) = loader.load("sub/tiny.safetensors", family="sdxl")
    assert vae.family == "sdxl" and vae.scale_factor == 0.13025
    pixels = torch.rand(2, 32, 40, 3, generator=gen)
    (latent,) = enc.encode(pixels, vae, 0, 64)
    assert latent["samples"].shape == (2, 4, 4, 5)
    torch.testing.assert_close(latent["samples"], vae.encode(pixels))
    (tiled,) = enc.encode(pixels, vae, 40, 8)  # one 40-px tile: equals untiled
    torch.testing.assert_close(tiled["samples"], latent["samples"], atol=1e-4, rtol=0)
    (sampled,) = enc.encode(pixels, vae, 0, 64, mode="sample", seed=7)
    assert not torch.equal(sampled["samples"], latent["samples"])
    inp = {**latent, "batch_index": [3, 4]}
    (image,) = dec.decode(inp, vae, 0, 64)
    assert image.shape == (2, 32, 40, 3) and 0 <= image.min() and image.max() <= 1
    assert inp["batch_index"] == [3, 4] and inp["samples"] is latent["samples"]  # input untouched
    (tiled_img,) = dec.decode(latent, vae, 40, 8, batch_chunk=1)
    torch.testing.assert_close(tiled_img, image, atol=1e-4, rtol=0)


def test_taesd_pair_and_errors(registry, models_dir, gen) -> None:
    loader, enc, dec = _nodes(registry)
    (vae,) = loader.load("taesdxl", dtype="bf16")
    assert vae.family == "taesdxl" and vae.latent_format.name == "sdxl" and vae.dtype == torch.bfloat16
    (latent,) = enc.encode(torch.rand(1, 16, 16, 3, generator=gen), vae, 0, 64)
    assert dec.decode(latent, vae, 0, 64)[0].shape == (1, 16, 16, 3)
    with pytest.raises(model_paths.ModelPathError, match="relative path"):
        loader.load("../secret.safetensors")
    with pytest.raises(models.ModelLoadError, match="does not fit"):
        loader.load("sub/tiny.safetensors", family="flux")


class ComfyLikeVAE:
    """ComfyUI's VAE surface only (what the native nodes would hand us)."""

    def __init__(self, inner) -> None:
        self.inner, self.downscale_ratio = inner, inner.downscale_ratio

    def encode(self, pixels):
        return self.inner.encode(pixels)

    def decode(self, samples):
        return self.inner.decode(samples)

    def encode_tiled(self, pixels, tile_x=512, tile_y=512, overlap=64):
        return self.inner.encode_tiled(pixels, tile_x, tile_y, overlap)

    def decode_tiled(self, samples, tile_x=64, tile_y=64, overlap=16):
        return self.inner.decode_tiled(samples, tile_x, tile_y, overlap)


def test_nodes_accept_comfyui_vae(registry, models_dir, gen) -> None:
    loader, enc, dec = _nodes(registry)
    (ours,) = loader.load("sub/tiny.safetensors")
    comfy = ComfyLikeVAE(ours)
    pixels = torch.rand(1, 24, 24, 3, generator=gen)
    (latent,) = enc.encode(pixels, comfy, 0, 64)
    torch.testing.assert_close(latent["samples"], ours.encode(pixels))
    (image,) = dec.decode(latent, comfy, 16, 8)
    assert image.shape == (1, 24, 24, 3)
    with pytest.raises(ValueError, match="Latent Ops VAE"):
        enc.encode(pixels, comfy, 0, 64, mode="sample")
