"""Loading VAEs offline: formats, families, configs, hostile files."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from latent_ops.vae import loading as models
from latent_ops.weights import ldm_convert


def tiny_kl(gen, chans=(8, 8, 8, 8), latent=4, quant=True, **kw):
    from diffusers import AutoencoderKL

    n = len(chans)
    m = AutoencoderKL(
        block_out_channels=list(chans), down_block_types=["DownEncoderBlock2D"] * n,
        up_block_types=["UpDecoderBlock2D"] * n, layers_per_block=1, latent_channels=latent,
        norm_num_groups=8, use_quant_conv=quant, use_post_quant_conv=quant, **kw,
    )  # fmt: skip
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    return m.eval()


def tiny_taesd(gen, latent=4):
    from diffusers import AutoencoderTiny

    m = AutoencoderTiny(encoder_block_out_channels=[8] * 4, decoder_block_out_channels=[8] * 4, latent_channels=latent,
                        num_encoder_blocks=[1, 2, 1, 1], num_decoder_blocks=[1, 1, 2, 1])  # fmt: skip
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    return m.eval()


def reference_kl(m, pixels):
    """Independent reference: diffusers' own encode (mode) and decode, ComfyUI ranges."""
    with torch.inference_mode():
        z = m.encode(pixels.movedim(-1, 1) * 2 - 1).latent_dist.mode()
        img = ((m.decode(z).sample + 1) / 2).clamp(0, 1).movedim(1, -1)
    return z, img


@pytest.fixture
def pixels(gen):
    return torch.rand(2, 32, 48, 3, generator=gen)


def _check_same(vae, m, pixels):
    z_ref, img_ref = reference_kl(m, pixels)
    z = vae.encode(pixels)
    torch.testing.assert_close(z, z_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(vae.decode(z), img_ref, atol=1e-5, rtol=1e-5)


def test_all_kl_layouts_give_identical_outputs(gen, tmp_path, pixels) -> None:
    m = tiny_kl(gen)
    m.save_pretrained(tmp_path / "diffusers")
    sd = m.state_dict()
    save_file(ldm_convert.vae_diffusers_to_ldm(sd), str(tmp_path / "ldm.safetensors"))
    full = ldm_convert.vae_diffusers_to_ldm(sd, prefix="first_stage_model.")
    full["model.diffusion_model.input_blocks.0.0.weight"] = torch.zeros(2, 4, 3, 3)
    full["cond_stage_model.transformer.x"] = torch.zeros(1)
    save_file(full, str(tmp_path / "checkpoint.safetensors"))
    save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp_path / "diffusers_keys.safetensors"))
    for name in ("diffusers", "ldm.safetensors", "checkpoint.safetensors", "diffusers_keys.safetensors"):
        vae = models.load_vae(tmp_path / name)
        assert vae.family == "sd15" and vae.scale_factor == pytest.approx(0.18215) and vae.shift_factor == 0.0
        assert (vae.latent_channels, vae.downscale_ratio) == (4, 8)
        _check_same(vae, m, pixels)


def test_16_channel_vae_families(gen, tmp_path, pixels) -> None:
    m = tiny_kl(gen, latent=16, quant=False)
    path = tmp_path / "vae16.safetensors"
    save_file(ldm_convert.vae_diffusers_to_ldm(m.state_dict()), str(path))
    flux = models.load_vae(path)
    assert flux.family == "flux" and (flux.scale_factor, flux.shift_factor) == (0.3611, 0.1159)
    sd3 = models.load_vae(path, family="sd3")
    assert sd3.family == "sd3" and (sd3.scale_factor, sd3.shift_factor) == (1.5305, 0.0609)
    assert sd3.latent_format.channels == 16
    _check_same(flux, m, pixels)
    with pytest.raises(models.ModelLoadError, match="does not fit"):
        models.load_vae(path, family="sdxl")


def test_family_hints(gen, tmp_path) -> None:
    m = tiny_kl(gen)
    ldm = ldm_convert.vae_diffusers_to_ldm(m.state_dict())
    save_file(ldm, str(tmp_path / "sdxl_vae.safetensors"))
    assert models.load_vae(tmp_path / "sdxl_vae.safetensors").family == "sdxl"
    assert models.load_vae(tmp_path / "sdxl_vae.safetensors", family="sd15").family == "sd15"
    xl = {("first_stage_model." + k): v for k, v in ldm.items()}
    xl["conditioner.embedders.1.model.x"] = torch.zeros(1)
    assert models.detect_vae_family(xl) == "sdxl"
    assert models.detect_vae_family(ldm) == "sd15"
    assert models.name_family_hint("flux1-ae.safetensors") == "flux"
    assert models.name_family_hint("taesdxl_decoder.pth") == "taesdxl"
    assert models.name_family_hint("sd3_vae.safetensors") == "sd3"
    with pytest.raises(models.ModelLoadError, match="unknown VAE family"):
        models.detect_vae_family(ldm, "sd9")


def test_taesd_pairs(gen, tmp_path, pixels) -> None:
    for fam, ch, fmt in (("taesd", 4, "sd15"), ("taesdxl", 4, "sdxl"), ("taesd3", 16, "sd3"), ("taef1", 16, "flux")):
        t = tiny_taesd(gen, ch)
        enc, dec = ldm_convert.taesd_diffusers_to_original(t.state_dict())
        save_file(enc, str(tmp_path / f"{fam}_encoder.safetensors"))
        save_file(dec, str(tmp_path / f"{fam}_decoder.safetensors"))
        vae = models.load_vae(tmp_path / f"{fam}_encoder.safetensors")
        assert vae.family == fam and vae.latent_format.name == fmt and vae.latent_channels == ch
        # raw-latent convention: encoder output (model space) / scale + shift
        scale, shift = vae.scale_factor, vae.shift_factor
        with torch.inference_mode():
            ref = t.encoder(pixels.movedim(-1, 1) * 2 - 1) / scale + shift
            z = vae.encode(pixels)
            torch.testing.assert_close(z, ref, atol=1e-5, rtol=1e-5)
            img = ((t.decoder((z - shift) * scale) + 1) / 2).clamp(0, 1).movedim(1, -1)
        torch.testing.assert_close(vae.decode(z), img, atol=1e-5, rtol=1e-5)
    (tmp_path / "taesd_encoder.safetensors").unlink()
    with pytest.raises(models.ModelLoadError, match="encoder file"):
        models.load_vae(tmp_path / "taesd_decoder.safetensors")


def test_custom_diffusers_config(gen, tmp_path) -> None:
    """The embedded default's layout: non-SD blocks, f=4, own scale/shift in config.json."""
    m = tiny_kl(gen, chans=(8, 16, 16), scaling_factor=0.75, shift_factor=0.2)
    m.save_pretrained(tmp_path / "emb")
    vae = models.load_vae(tmp_path / "emb")
    assert (vae.family, vae.downscale_ratio, vae.scale_factor, vae.shift_factor) == ("custom", 4, 0.75, 0.2)
    assert vae.latent_format.downscale == 4
    assert vae.encode(torch.rand(1, 16, 16, 3, generator=gen)).shape == (1, 4, 4, 4)


def test_default_vae_path(gen, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(models, "EMBEDDED_VAE_DIR", tmp_path / "none")
    assert models.default_vae_path() is None
    assert models.DEFAULT_VAE_NAME not in models.vae_choices([], [])
    tiny_kl(gen).save_pretrained(tmp_path / "emb")
    monkeypatch.setattr(models, "EMBEDDED_VAE_DIR", tmp_path / "emb")
    assert models.default_vae_path() == tmp_path / "emb"
    assert models.resolve_vae_choice(models.DEFAULT_VAE_NAME, [], []) == tmp_path / "emb"
    assert models.load_vae(models.default_vae_path()).family == "embedded"


# ---------------------------------------------------------------------- hostile files
def _good_file(gen, tmp_path: Path) -> Path:
    path = tmp_path / "good.safetensors"
    save_file(ldm_convert.vae_diffusers_to_ldm(tiny_kl(gen).state_dict()), str(path))
    return path


def test_truncated_and_random_files(gen, tmp_path) -> None:
    data = _good_file(gen, tmp_path).read_bytes()
    cases = {
        "trunc.safetensors": (data[: len(data) // 2], "truncated"),
        "header.safetensors": (data[:20], "corrupt or truncated"),
        "tiny.safetensors": (b"abc", "shorter than"),
        "random.safetensors": (torch.randint(0, 256, (4096,), generator=gen, dtype=torch.uint8).numpy().tobytes(), "corrupt"),
        "json.safetensors": ((12).to_bytes(8, "little") + b"not json!!!!" + b"\0" * 8, "not valid JSON"),
        "offsets.safetensors": (
            (lambda h: len(h).to_bytes(8, "little") + h + b"\0" * 8)(
                json.dumps({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 8]}}).encode()
            ),
            "offsets",
        ),
    }
    for name, (blob, msg) in cases.items():
        (tmp_path / name).write_bytes(blob)
        with pytest.raises(models.ModelLoadError, match=msg) as err:
            models.load_vae(tmp_path / name)
        assert name in str(err.value)
    with pytest.raises(models.ModelLoadError, match="no such file"):
        models.load_state_dict_safely(tmp_path / "absent.safetensors")
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(models.ModelLoadError, match="unsupported extension"):
        models.load_state_dict_safely(tmp_path / "x.txt")


class _Payload:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (Path(self.marker), "pwned"))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_pickles_refused_and_never_executed(gen, tmp_path) -> None:
    marker = tmp_path / "ran.txt"
    evil = tmp_path / "evil.ckpt"
    evil.write_bytes(pickle.dumps({"state_dict": {"x": _Payload(str(marker))}}))
    with pytest.raises(models.ModelLoadError, match="allow_pickle=True"):
        models.load_vae(evil)
    with pytest.raises(models.ModelLoadError, match="weights_only=True"):
        models.load_state_dict_safely(evil, allow_pickle=True)
    assert not marker.exists()
    # a plain tensor pickle loads when opted in (Lightning-style wrapper unwrapped)
    sd = ldm_convert.vae_diffusers_to_ldm(tiny_kl(gen).state_dict())
    torch.save({"state_dict": sd, "global_step": 3}, tmp_path / "ok.ckpt")
    with pytest.raises(models.ModelLoadError, match="refusing"):
        models.load_vae(tmp_path / "ok.ckpt")
    assert models.load_vae(tmp_path / "ok.ckpt", allow_pickle=True).latent_channels == 4


def test_wrong_keys_and_shapes(gen, tmp_path) -> None:
    sd = ldm_convert.vae_diffusers_to_ldm(tiny_kl(gen).state_dict())
    missing = dict(sd)
    del missing["decoder.mid.block_1.conv1.weight"]
    save_file(missing, str(tmp_path / "missing.safetensors"))
    with pytest.raises(models.ModelLoadError, match=r"missing.safetensors.*1 missing"):
        models.load_vae(tmp_path / "missing.safetensors")
    shaped = dict(sd)
    shaped["decoder.mid.block_1.conv1.weight"] = torch.zeros(8, 8, 1, 1)
    save_file(shaped, str(tmp_path / "shape.safetensors"))
    with pytest.raises(models.ModelLoadError, match=r"shape.safetensors: wrong tensor shapes.*mid_block"):
        models.load_vae(tmp_path / "shape.safetensors")
    save_file({"model.diffusion_model.x": torch.zeros(1)}, str(tmp_path / "unet.safetensors"))
    with pytest.raises(models.ModelLoadError, match="unet.safetensors: no VAE weights"):
        models.load_vae(tmp_path / "unet.safetensors")
    odd = dict(sd)
    odd["decoder.conv_in.weight"] = torch.zeros(8, 6, 3, 3)
    save_file(odd, str(tmp_path / "odd.safetensors"))
    with pytest.raises(models.ModelLoadError, match="latent channel count 6"):
        models.load_vae(tmp_path / "odd.safetensors")
