"""VAE geometry: diffusers configs, ComfyUI-style VAE objects, the nodes' rule, latent formats of configs."""

from __future__ import annotations

import pytest

from latent_ops import latents
from latent_ops.latent_format import LatentFormat
from latent_ops.vae import geometry
from latent_ops.vae.geometry import Geometry


class ImageVAE:
    """ComfyUI's image-VAE attributes only."""

    latent_channels, downscale_ratio, upscale_ratio = 16, 8, 8


class VideoVAE:
    """ComfyUI's video VAEs: per-axis ratios (time first, as a function of the frame count)."""

    latent_channels = 16
    downscale_ratio = (lambda t: (t + 3) // 4, 16, 16)
    upscale_ratio = (lambda t: t * 4 - 3, 16, 16)


class WithMethods:
    """A VAE whose compression comes only from ComfyUI's methods."""

    def spacial_compression_encode(self) -> int:
        return 4

    def spacial_compression_decode(self) -> int:
        return 2


def test_config_geometry_kl_and_tiny() -> None:
    assert geometry.config_geometry({"latent_channels": 4, "block_out_channels": [8, 8, 8, 8]}) == Geometry(4, 8, 8)
    assert geometry.config_geometry({"latent_channels": 4, "block_out_channels": [8, 16, 16]}) == Geometry(4, 4, 4)
    tiny = {"latent_channels": 16, "block_out_channels": [64] * 4, "num_encoder_blocks": [1, 3, 3],
            "num_decoder_blocks": [3, 3, 3, 1], "upsampling_scaling_factor": 2}  # fmt: skip
    assert geometry.config_geometry(tiny) == Geometry(16, 4, 8)  # the Tiny rule, not block_out_channels
    with pytest.raises(ValueError, match="config_geometry: not a diffusers VAE config.*block_out_channels"):
        geometry.config_geometry({"latent_channels": 4})


def test_spatial_compression_of_any_comfy_vae() -> None:
    assert geometry.spatial_compression(ImageVAE(), "encode") == geometry.spatial_compression(ImageVAE(), "decode") == 8
    assert geometry.spatial_compression(VideoVAE(), "decode") == 16  # last entry of the per-axis tuple
    assert (geometry.spatial_compression(WithMethods(), "encode"), geometry.spatial_compression(WithMethods(), "decode")) == (4, 2)
    with pytest.raises(ValueError, match="direction must be 'encode' or 'decode', got 'up'"):
        geometry.spatial_compression(ImageVAE(), "up")
    with pytest.raises(ValueError, match="object has no int downscale_ratio, got None"):
        geometry.spatial_compression(object(), "encode")


def test_vae_geometry_and_the_nodes_rule() -> None:
    assert geometry.vae_geometry(ImageVAE()) == Geometry(16, 8, 8)

    class NoUpscale:
        latent_channels, downscale_ratio = 4, 16

    assert geometry.vae_geometry(NoUpscale()) == Geometry(4, 16, 16)
    with pytest.raises(ValueError, match=r"^MyNode: vae must have int 'latent_channels'.*; video: use like$"):
        geometry.vae_geometry(VideoVAE(), "MyNode", "; video: use like")
    assert geometry.latent_geometry(None, 3, 2, "MyNode") == (3, 2)
    assert geometry.latent_geometry(ImageVAE(), 3, 2, "MyNode") == (16, 8)
    assert latents.empty_latent(64, 40, 2, vae=ImageVAE())["samples"].shape == (2, 16, 5, 8)
    with pytest.raises(ValueError, match="empty_latent: vae must have int 'latent_channels'"):
        latents.empty_latent(64, 64, 1, vae=VideoVAE())


def test_latent_format_from_config() -> None:
    cfg = {"latent_channels": 16, "block_out_channels": [8, 8, 8, 8], "scaling_factor": 0.3611, "shift_factor": 0.1159}
    assert geometry.latent_format_from_config(cfg, "flux") == LatentFormat("flux", 16, 8, 0.3611, 0.1159)
    bare = geometry.latent_format_from_config({"latent_channels": 4, "block_out_channels": [8, 8],
                                               "scaling_factor": None, "shift_factor": None}, "custom")  # fmt: skip
    assert (bare.downscale, bare.scale, bare.shift) == (2, 1.0, 0.0)
