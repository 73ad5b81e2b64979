"""Tests for latent_ops.embedded.loader, on the default folder committed with the repository.

The shipped model is part of the project, not an optional extra: if it is missing the shipped
tests fail rather than skip.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from latent_ops.embedded.loader import (
    DEFAULT_DIR,
    EmbeddedBackbone,
    betas_from_config,
    is_embedded_folder,
    latent_format_from_vae_config,
    load_embedded,
)

INPUTS = Path(__file__).resolve().parents[1] / "workflows" / "input"


@pytest.fixture(scope="module")
def parts():
    return load_embedded(DEFAULT_DIR)


def test_is_embedded_folder(tmp_path):
    assert not is_embedded_folder(tmp_path)
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    assert not is_embedded_folder(tmp_path)
    (tmp_path / "model_index.json").write_text("{not json")
    assert not is_embedded_folder(tmp_path)
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "LatentOpsEmbeddedPipeline"}))
    assert is_embedded_folder(tmp_path)


def test_load_rejects_other_folders(tmp_path):
    with pytest.raises(ValueError, match="not an embedded model folder"):
        load_embedded(tmp_path)
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "LatentOpsEmbeddedPipeline"}))
    with pytest.raises(ValueError, match="no vae/"):
        load_embedded(tmp_path)


def test_betas_from_config():
    cfg = {"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear"}
    b = betas_from_config(cfg)
    assert b.dtype == torch.float64 and float(b[0]) == pytest.approx(0.00085) and float(b[-1]) == pytest.approx(0.012)
    assert torch.allclose(betas_from_config({**cfg, "beta_schedule": "linear"}), torch.linspace(0.00085, 0.012, 1000,
                                                                                                dtype=torch.float64))
    with pytest.raises(ValueError, match="beta_schedule"):
        betas_from_config({**cfg, "beta_schedule": "cosine"})


def test_latent_format_from_vae_config():
    f = latent_format_from_vae_config({"latent_channels": 4, "block_out_channels": [8, 8, 8], "scaling_factor": 0.5,
                                       "shift_factor": 0.25})
    assert (f.name, f.channels, f.downscale, f.scale, f.shift) == ("embedded", 4, 4, 0.5, 0.25)
    assert latent_format_from_vae_config({"latent_channels": 4, "block_out_channels": [8, 8],
                                          "scaling_factor": 2.0, "shift_factor": None}).shift == 0.0


def test_shipped_folder_parts(parts):
    assert is_embedded_folder(DEFAULT_DIR)
    vcfg = json.loads((DEFAULT_DIR / "vae" / "config.json").read_text())
    fmt = parts.latent_format
    assert (fmt.channels, fmt.downscale) == (4, 4)
    assert fmt.scale == pytest.approx(vcfg["scaling_factor"]) and fmt.scale != pytest.approx(0.18215)
    assert fmt.shift == pytest.approx(vcfg["shift_factor"])
    assert parts.prediction == "eps" and parts.alphas_cumprod.shape == (1000,)
    assert parts.scheduler_config["clip_sample"] is False
    assert parts.text_encoder.known_words[:3] == ["0", "1", "2"] and "Z" in parts.text_encoder.known_words
    backbone, te, vae, cfg = parts  # the tuple latent_ops.checkpoints.loading unpacks
    assert isinstance(backbone, EmbeddedBackbone) and cfg["latent_format"] == fmt
    with pytest.raises(ValueError, match="knows"):
        te.encode("dragon")


def test_shipped_folder_size_is_small():
    total = sum(p.stat().st_size for p in DEFAULT_DIR.rglob("*.safetensors"))
    assert total < 8e6


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * np.log10(255.0**2 / mse)


@pytest.mark.parametrize("name", ["glyph_A.png", "glyph_7.png"])
def test_shipped_vae_round_trip(parts, name):
    img = np.asarray(Image.open(INPUTS / name).convert("RGB"))
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 127.5 - 1
    with torch.no_grad():
        z = parts.vae.encode(x).latent_dist.mode()
        rec = parts.vae.decode(z).sample.clamp(-1, 1)
    assert z.shape == (1, 4, 8, 8)
    out = ((rec[0].permute(1, 2, 0) + 1) * 127.5).round().numpy()
    assert _psnr(out, img) > 20.0


def test_shipped_backbone_validates_cond(parts):
    x = torch.zeros(2, 4, 8, 8)
    with pytest.raises(ValueError, match="cond must be"):
        parts.backbone(x, torch.tensor([1, 2]), torch.zeros(2, 1, 7))
    with pytest.raises(ValueError, match="required"):
        parts.backbone(x, torch.tensor([1, 2]), None)
    eps = parts.backbone(x, torch.tensor([999.0, 500.0]), parts.text_encoder.embed("A"))
    assert eps.shape == x.shape and bool(torch.isfinite(eps).all())


def test_shipped_model_through_load_checkpoint():
    from latent_ops.checkpoints.loading import load_checkpoint

    model, te, vae = load_checkpoint(DEFAULT_DIR)
    assert model.prediction == "eps" and model.latent_format.name == "embedded"
    cond = te.encode("letter A")
    assert cond[0][0].shape[:2] == (1, 1)


def test_shipped_vae_through_project_loader():
    """The VAE folder loads through latent_ops.vae.loading.load_vae with the measured scale/shift."""
    from latent_ops.vae import loading as models

    vae = models.load_vae(DEFAULT_DIR / "vae")
    vcfg = json.loads((DEFAULT_DIR / "vae" / "config.json").read_text())
    assert vae.latent_format.scale == pytest.approx(vcfg["scaling_factor"])
    assert vae.latent_format.shift == pytest.approx(vcfg["shift_factor"])
    img = np.asarray(Image.open(INPUTS / "glyph_B.png").convert("RGB"))
    pixels = torch.from_numpy(img)[None].float() / 255  # [1, H, W, 3]
    z = vae.encode(pixels)
    assert z.shape == (1, 4, 8, 8)
    out = vae.decode(z)[0].clamp(0, 1).numpy() * 255
    assert _psnr(out, img) > 18.0
