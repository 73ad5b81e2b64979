"""Every registered VAE family, run end to end on tiny random weights; and the registry itself.

A family added to ``latent_ops.vae.families.REGISTRY`` is tested here by being registered: its
record is checked against its shipped config, tiny weights of its architecture are written in its
native file layout, loaded back without and with ``family=``, and encoded/decoded untiled, exact
and in tiles.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from latent_ops import latent_format as lf
from latent_ops.vae import detect, families, geometry
from latent_ops.vae import loading as models
from latent_ops.vae.families import REGISTRY, DuplicateFamilyError, FamilyRegistry, VAEFamily
from latent_ops.weights import ldm_convert

FAMILY_IDS = [f.name for f in REGISTRY]


def tiny_module(family: VAEFamily, gen: torch.Generator) -> torch.nn.Module:
    """The family's shipped architecture with 8-channel levels, one block each, weights ``0.3 * randn``."""
    from diffusers import AutoencoderKL, AutoencoderTiny

    init = {k: v for k, v in family.shipped_config().items() if not k.startswith("_")}
    if family.kind == "kl":
        n = len(init["block_out_channels"])
        init.update(block_out_channels=[8] * n, layers_per_block=1, norm_num_groups=8)
        m = AutoencoderKL.from_config(init)
    else:
        n = len(init.pop("block_out_channels"))
        init.update(encoder_block_out_channels=[8] * n, decoder_block_out_channels=[8] * n,
                    num_encoder_blocks=[1] * n, num_decoder_blocks=[1] * n)  # fmt: skip
        m = AutoencoderTiny.from_config(init)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    return m.eval()


def write_native(family: VAEFamily, module: torch.nn.Module, folder: Path) -> Path:
    """Tiny weights as users have them: an LDM ``.safetensors`` (KL) or a TAESD encoder/decoder pair."""
    if family.kind == "kl":
        path = folder / "weights.safetensors"  # a name that implies no family
        save_file(ldm_convert.vae_diffusers_to_ldm(module.state_dict()), str(path))
        return path
    enc, dec = ldm_convert.taesd_diffusers_to_original(module.state_dict())
    save_file(enc, str(folder / f"{family.name}_encoder.safetensors"))
    save_file(dec, str(folder / f"{family.name}_decoder.safetensors"))
    return folder / f"{family.name}_decoder.safetensors"


# ---------------------------------------------------------------------- the records
@pytest.mark.parametrize("name", FAMILY_IDS)
def test_record_agrees_with_its_shipped_config(name: str) -> None:
    family = REGISTRY.get(name)
    cfg = family.shipped_config()
    assert cfg["_class_name"] == {"kl": "AutoencoderKL", "tiny": "AutoencoderTiny"}[family.kind]
    geo = geometry.config_geometry(cfg)
    assert geo.channels == family.channels == family.latent_format.channels
    assert geo.downscale == geo.upscale == family.latent_format.downscale
    if family.kind == "kl":
        assert family.pairs_with is None
        assert geometry.latent_format_from_config(cfg, name) == family.latent_format
    else:  # a TAESD family works in the latent space of a registered KL family with its channels
        partner = REGISTRY.get(family.pairs_with)
        assert partner.kind == "kl" and partner.latent_format == family.latent_format


@pytest.mark.parametrize("name", FAMILY_IDS)
def test_family_is_reachable_without_a_family_argument(name: str) -> None:
    family = REGISTRY.get(name)
    if family.kind == "tiny":
        assert detect.name_family_hint(f"{name}_decoder.pth") == name
    elif not family.default:
        word = (family.name_markers or family.name_tokens)[0]
        assert detect.name_family_hint(f"my_{word}_vae.safetensors") == name


# ---------------------------------------------------------------------- the harness
@pytest.mark.parametrize("name", FAMILY_IDS)
def test_family_loads_encodes_decodes_and_tiles(name: str, gen: torch.Generator, tmp_path: Path) -> None:
    family = REGISTRY.get(name)
    module = tiny_module(family, gen)
    path = write_native(family, module, tmp_path)
    vae = models.load_vae(path, family=name)
    assert (vae.family, vae.latent_format, vae.latent_channels) == (name, family.latent_format, family.channels)
    assert vae.downscale_ratio == vae.upscale_ratio == family.latent_format.downscale
    detected = models.load_vae(path).family  # file name or the kind's default
    assert detected == (name if family.kind == "tiny" or family.default else REGISTRY.candidates("kl", family.channels)[0].name)

    pixels = torch.rand(2, 32, 40, 3, generator=gen)
    z = vae.encode(pixels)
    assert z.shape == (2, family.channels, 4, 5) and z.dtype == torch.float32 and torch.isfinite(z).all()
    img = vae.decode(z)
    assert img.shape == (2, 32, 40, 3) and 0 <= img.min() and img.max() <= 1

    if family.kind == "kl":  # exact streaming and one whole-image tile both equal untiled
        torch.testing.assert_close(vae.decode_tiled(z, strategy="exact"), img, atol=1e-4, rtol=0)
        torch.testing.assert_close(vae.encode_tiled(pixels, strategy="exact"), z, atol=1e-4, rtol=0)
        torch.testing.assert_close(vae.decode_tiled(z, 5, 5, 0), img, atol=1e-4, rtol=0)
    else:  # no normalisation or attention: tiles differ from untiled only through the halo
        torch.testing.assert_close(vae.decode_tiled(z, 2, 2, 8), img, atol=1e-3, rtol=0)
        torch.testing.assert_close(vae.encode_tiled(pixels, 16, 16, 64), z, atol=1e-3, rtol=1e-3)


# ---------------------------------------------------------------------- the registry
def _extra(name: str = "sd9", channels: int = 8, **kw: object) -> VAEFamily:
    return VAEFamily(name, "kl", channels, "sd15-vae", lf.LatentFormat(name, channels, 8, 0.5), **kw)  # type: ignore[arg-type]


def test_registry_refuses_duplicates_and_bad_records() -> None:
    reg = REGISTRY.copy()
    with pytest.raises(DuplicateFamilyError, match="'sd15' is already registered"):
        reg.add(REGISTRY.get("sd15"))
    with pytest.raises(DuplicateFamilyError, match="default kl family with 4 channels"):
        reg.add(_extra("sd16", 4, default=True))
    with pytest.raises(ValueError, match="kind 'gan'"):
        reg.add(replace(_extra(), kind="gan"))
    with pytest.raises(ValueError, match="pairs with 'sd9'"):
        reg.add(VAEFamily("taesd9", "tiny", 8, "taesd", _extra().latent_format))
    with pytest.raises(families.ModelLoadError, match="unknown VAE family 'sd9'; known: "):
        reg.get("sd9")
    assert len(reg) == len(REGISTRY) and "sd15" in reg and "sd9" not in reg
    mock = FamilyRegistry([_extra(default=True)])  # a registry built from scratch
    assert mock.names() == mock.names("kl") == ("sd9",) and mock.names("tiny") == () and mock.taesd_prefixes() == ()
    assert mock.taesd_file("_encoder.safetensors") is None and REGISTRY.taesd_file("taesd_vae.pth") is None
    assert [f.name for f in mock.candidates("kl", 8)] == ["sd9"] and mock.candidates("kl", 4) == ()


def test_a_registered_family_is_detected_and_the_builtin_registry_is_untouched(gen, tiny_kl) -> None:
    reg = REGISTRY.copy()
    reg.add(_extra(default=True, checkpoint_key=r"^sd9_marker\.", name_tokens=("nine",)))
    reg.add(_extra("sd9x", name_markers=("sd9x",)))
    reg.add(VAEFamily("taesd9", "tiny", 8, "taesd", reg.get("sd9").latent_format))
    sd = ldm_convert.vae_diffusers_to_ldm(tiny_kl(gen, latent=8, quant=False).state_dict())
    assert detect.detect_vae_family(sd, registry=reg) == "sd9"
    assert detect.detect_vae_family(sd, "sd9x", registry=reg) == "sd9x"
    full = {**{f"first_stage_model.{k}": v for k, v in sd.items()}, "sd9_marker.w": torch.zeros(1)}
    assert detect.checkpoint_family_hint(full, registry=reg) == "sd9"
    assert detect.name_family_hint("nine.safetensors", registry=reg) == "sd9"
    assert detect.name_family_hint("my-sd9x.safetensors", registry=reg) == "sd9x"
    assert detect.name_family_hint("taesd9_encoder.pth", registry=reg) == "taesd9"
    assert reg.taesd_file("TAESD9_decoder.safetensors") == ("taesd9", "decoder")
    assert detect.family_from_config({"latent_channels": 8, "scaling_factor": 0.5}, registry=reg) == "sd9"
    assert reg.latent_format("taesd9", {"latent_channels": 8, "num_encoder_blocks": [1] * 4,
                                        "num_decoder_blocks": [1] * 4}).name == "sd9"  # fmt: skip
    with pytest.raises(families.ModelLoadError, match="unsupported latent channel count 8: known VAEs have 4 or 16"):
        detect.detect_vae_family(sd)
    assert "sd9" not in REGISTRY and "sd9" not in families.FAMILIES


def test_derived_tables_keep_their_public_values() -> None:
    assert families.FAMILIES == ("sd15", "sdxl", "sd3", "flux", "taesdxl", "taesd3", "taef1", "taesd")
    assert families.KL_FAMILIES == ("sd15", "sdxl", "sd3", "flux")
    assert families.TAESD_NAMES == ("taesdxl", "taesd3", "taef1", "taesd")
    assert families.detect_vae_family is detect.detect_vae_family  # old home still resolves
    assert families.shipped_config("sdxl")["scaling_factor"] == lf.SDXL.scale
    with pytest.raises(AttributeError):
        families.no_such_name  # noqa: B018
