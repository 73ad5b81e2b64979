"""LDM <-> diffusers VAE key maps and TAESD original <-> diffusers maps."""

from __future__ import annotations

import pytest
import torch

from latent_ops.weights import ldm_convert


@pytest.mark.parametrize("chans,lpb", [((8, 8, 8, 8), 1), ((8, 16), 2), ((8, 16, 16), 0)])
def test_diffusers_ldm_round_trip(gen, tiny_kl, chans, lpb) -> None:
    sd = tiny_kl(gen, chans, lpb).state_dict()
    ldm = ldm_convert.vae_diffusers_to_ldm(sd)
    assert ldm_convert.is_ldm_vae(ldm) and not ldm_convert.is_ldm_vae(sd)
    back = ldm_convert.vae_ldm_to_diffusers(ldm)
    assert back.keys() == sd.keys()
    for k in sd:
        assert torch.equal(back[k], sd[k]), k


def test_ldm_key_names_golden(gen, tiny_kl) -> None:
    ldm = ldm_convert.vae_diffusers_to_ldm(tiny_kl(gen, (8, 16, 16, 16)).state_dict(), prefix="first_stage_model.")
    p = "first_stage_model."
    # written out from the CompVis layout: level order reversed in the decoder, 1x1-conv attention
    assert ldm[p + "encoder.down.0.block.0.norm1.weight"].shape == (8,)
    assert ldm[p + "encoder.down.1.block.0.nin_shortcut.weight"].shape == (16, 8, 1, 1)
    assert ldm[p + "encoder.down.0.downsample.conv.weight"].shape == (8, 8, 3, 3)
    assert ldm[p + "decoder.up.0.block.0.nin_shortcut.weight"].shape == (8, 16, 1, 1)  # last diffusers up block
    assert ldm[p + "decoder.up.3.upsample.conv.weight"].shape == (16, 16, 3, 3)  # first diffusers up block
    assert ldm[p + "decoder.mid.attn_1.q.weight"].shape == (16, 16, 1, 1)
    assert p + "decoder.mid.attn_1.proj_out.bias" in ldm and p + "encoder.norm_out.weight" in ldm
    assert p + "encoder.mid.block_2.conv2.weight" in ldm and p + "post_quant_conv.weight" in ldm


@pytest.mark.parametrize("quant", [True, False])
def test_matches_diffusers_own_converter(gen, tiny_kl, quant) -> None:
    """Our LDM -> diffusers map agrees with diffusers' single-file converter (independent reference)."""
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    m = tiny_kl(gen, (8, 16, 16, 16), latent=4 if quant else 16, quant=quant)
    ldm = ldm_convert.vae_diffusers_to_ldm(m.state_dict())
    ref = convert_ldm_vae_checkpoint(dict(ldm), dict(m.config))
    ours = ldm_convert.vae_ldm_to_diffusers(ldm)
    assert ours.keys() == ref.keys()
    for k in ref:
        assert torch.equal(ours[k], ref[k]), k


def test_legacy_attention_names_normalised(gen, tiny_kl) -> None:
    sd = tiny_kl(gen).state_dict()
    legacy = {}
    for k, v in sd.items():
        k = k.replace(".to_q.", ".query.").replace(".to_k.", ".key.").replace(".to_v.", ".value.")
        k = k.replace(".to_out.0.", ".proj_attn.")
        legacy[k] = v[:, :, None, None] if "proj_attn.weight" in k else v
    norm = ldm_convert.normalize_diffusers_vae(legacy)
    assert norm.keys() == sd.keys()
    assert all(torch.equal(norm[k], sd[k]) for k in sd)


def test_taesd_round_trip_and_index_shift() -> None:
    from diffusers import AutoencoderTiny

    t = AutoencoderTiny(encoder_block_out_channels=[8] * 4, decoder_block_out_channels=[8] * 4,
                        num_encoder_blocks=[1] * 4, num_decoder_blocks=[1] * 4)  # fmt: skip
    sd = t.state_dict()
    enc, dec = ldm_convert.taesd_diffusers_to_original(sd)
    assert "0.weight" in enc and "1.conv.0.weight" in enc
    assert "0.weight" not in dec  # the original decoder starts with a parameter-free Clamp
    assert torch.equal(dec["1.weight"], sd["decoder.layers.0.weight"])
    back = ldm_convert.taesd_original_to_diffusers(enc, dec)
    assert back.keys() == sd.keys() and all(torch.equal(back[k], sd[k]) for k in sd)
    with pytest.raises(ValueError, match="TAESD key"):
        ldm_convert.taesd_original_to_diffusers({"encoder.x": torch.zeros(1)}, None)


def test_prefix_helpers() -> None:
    sd = {"first_stage_model.a": torch.zeros(1), "model.diffusion_model.b": torch.ones(1)}
    assert list(ldm_convert.strip_prefix(sd, "model.diffusion_model.")) == ["b"]
    prefix, sub = ldm_convert.split_by_prefix(sd, ldm_convert.VAE_PREFIXES)
    assert prefix == "first_stage_model." and list(sub) == ["a"]
    assert ldm_convert.split_by_prefix({"x": torch.zeros(1)}, ("vae.",)) is None
    with pytest.raises(ValueError, match="count_levels"):
        ldm_convert.count_levels({"x": torch.zeros(1)}, ldm=True)
