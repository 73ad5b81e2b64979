"""Offline loading of tiny random SD-style diffusers folders; text encoding and sampling checked
against the same modules driven the diffusers way."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from latent_ops import checkpoints
from latent_ops.sampling.diffusion import sample

CHARS = "abcdefghijklmnopqrstuvwxyz"


def write_tokenizer(folder: Path, pad_token: str = "<|endoftext|>") -> None:
    """A tiny CLIP tokenizer; ``pad_token="!"`` is how SD2's and SDXL's second tokenizer pad."""
    from transformers import CLIPTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for suffix in ("", "</w>"):
        for c in CHARS:
            vocab[c + suffix] = len(vocab)
    vocab.update({"!": len(vocab), "!</w>": len(vocab) + 1})
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tok = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), pad_token=pad_token,
                        model_max_length=77)
    tok.save_pretrained(folder)


def clip_config(**kw):
    from transformers import CLIPTextConfig

    base = dict(vocab_size=60, hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
                max_position_embeddings=77, bos_token_id=0, eos_token_id=1, pad_token_id=1, projection_dim=16)
    return CLIPTextConfig(**{**base, **kw})


def make_folder(root: Path, sdxl: bool = False) -> Path:
    """A tiny random SD (or SDXL-style) diffusers pipeline folder."""
    with torch.random.fork_rng(devices=[]):  # deterministic random init; the global state is restored
        torch.manual_seed(0)
        return _make_folder(root, sdxl)


def _make_folder(root: Path, sdxl: bool) -> Path:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    folder = root / ("tiny-sdxl" if sdxl else "tiny-sd")
    unet_kw = dict(block_out_channels=(32, 64), layers_per_block=1, sample_size=8, in_channels=4, out_channels=4,
                   down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                   up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32, norm_num_groups=8,
                   attention_head_dim=8)
    if sdxl:
        unet_kw.update(cross_attention_dim=64, addition_embed_type="text_time", addition_time_embed_dim=8,
                       projection_class_embeddings_input_dim=16 + 6 * 8)
    UNet2DConditionModel(**unet_kw).save_pretrained(folder / "unet")
    CLIPTextModel(clip_config()).save_pretrained(folder / "text_encoder")
    write_tokenizer(folder / "tokenizer")
    if sdxl:
        CLIPTextModelWithProjection(clip_config()).save_pretrained(folder / "text_encoder_2")
        write_tokenizer(folder / "tokenizer_2", pad_token="!")  # as SDXL's tokenizer_2
    vae = AutoencoderKL(block_out_channels=(8, 8), down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=8,
                        layers_per_block=1, scaling_factor=0.5)
    vae.save_pretrained(folder / "vae")
    (folder / "scheduler").mkdir()
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(
        {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012,
         "num_train_timesteps": 1000, "prediction_type": "epsilon"}))
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    return folder


@pytest.fixture(scope="module")
def sd_folder(tmp_path_factory) -> Path:
    return make_folder(tmp_path_factory.mktemp("ckpt"))


def test_text_encoding_matches_transformers(sd_folder):
    model, clip, vae = checkpoints.load_checkpoint(sd_folder)
    cond = clip.encode("a cat")
    assert isinstance(cond, list) and len(cond) == 1
    t, extra = cond[0]
    assert t.shape == (1, 77, 32) and extra["pooled_output"].shape == (1, 32)
    parts = clip.parts[0]
    ids = parts.tokenizer("a cat", padding="max_length", max_length=77, return_tensors="pt").input_ids
    ref = parts.model(input_ids=ids).last_hidden_state
    torch.testing.assert_close(t, ref)
    long = clip.encode(" ".join(["a"] * 90))[0][0]
    assert long.shape == (1, 154, 32)  # two 77-token windows
    assert model.prediction == "eps" and vae.latent_format.scale == 0.5 and model.latent_format.channels == 4


def test_sampling_matches_diffusers_euler_loop(sd_folder):
    from diffusers import EulerDiscreteScheduler

    model, clip, vae = checkpoints.load_checkpoint(sd_folder)
    pos, neg = clip.encode("a red cat"), clip.encode("")
    n = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    cfg, steps = 2.5, 4
    out = sample(model, {"samples": torch.zeros(1, 4, 8, 8)}, pos, neg, seed=0, steps=steps, cfg=cfg,
                 sampler_name="euler", scheduler="simple", noise=n)["samples"]
    sch = EulerDiscreteScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                 timestep_spacing="trailing")
    sch.set_timesteps(steps)
    unet = model.backbone.unet
    x = n * (1 + sch.sigmas[0] ** 2) ** 0.5
    ctx = torch.cat([pos[0][0], neg[0][0]])
    with torch.no_grad():
        for t in sch.timesteps:
            xin = sch.scale_model_input(torch.cat([x, x]), t)
            eps_c, eps_u = unet(xin, t, encoder_hidden_states=ctx).sample.chunk(2)
            x = sch.step(eps_u + (eps_c - eps_u) * cfg, t, x).prev_sample
    torch.testing.assert_close(out, x / 0.5, rtol=1e-4, atol=1e-4)


def test_sdxl_folder(tmp_path):
    folder = make_folder(tmp_path, sdxl=True)
    model, clip, vae = checkpoints.load_checkpoint(folder)
    cond = clip.encode("a dog")
    assert cond[0][0].shape == (1, 77, 64) and cond[0][1]["pooled_output"].shape == (1, 16)
    out = sample(model, {"samples": torch.zeros(2, 4, 8, 8)}, cond, clip.encode(""), seed=1, steps=2, cfg=3.0,
                 sampler_name="dpmpp_2m", scheduler="karras")
    assert out["samples"].shape == (2, 4, 8, 8) and bool(torch.isfinite(out["samples"]).all())
    assert model.backbone.sdxl
    # a direct call with batch-1 conditioning broadcasts it over the batch, as the sampler does
    x, t = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0)), torch.tensor([5.0, 5.0])
    pooled = cond[0][1]["pooled_output"]
    one = model.backbone(x, t, cond[0][0], pooled_output=pooled)
    full = model.backbone(x, t, cond[0][0].expand(2, -1, -1), pooled_output=pooled.expand(2, -1))
    torch.testing.assert_close(one, full)


def test_errors(tmp_path, sd_folder):
    with pytest.raises(ValueError, match="no such"):
        checkpoints.load_checkpoint(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="model_index"):
        checkpoints.load_checkpoint(tmp_path / "empty")
    bad = tmp_path / "bad.safetensors"
    from safetensors.torch import save_file

    save_file({"foo": torch.zeros(2)}, str(bad))
    with pytest.raises(ValueError, match="SD1"):
        checkpoints.load_checkpoint(bad)


def test_choices_and_resolve(tmp_path, sd_folder):
    ck, df = tmp_path / "checkpoints", tmp_path / "diffusers"
    ck.mkdir()
    (ck / "a.safetensors").write_bytes(b"")
    df.mkdir()
    (df / "pipe").mkdir()
    (df / "pipe" / "model_index.json").write_text("{}")
    names = checkpoints.checkpoint_choices([ck], [df])
    assert names[-2:] == ["a.safetensors", "pipe"]
    assert checkpoints.resolve_checkpoint("pipe", [ck], [df]) == (df / "pipe").resolve()
    with pytest.raises(ValueError):
        checkpoints.resolve_checkpoint("../x", [ck], [df])


_RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1", "norm2": "out_layers.0",
           "conv2": "out_layers.3", "conv_shortcut": "skip_connection"}


def unet_diffusers_to_ldm(sd: dict, layers: int, n_levels: int) -> dict:
    """The original LDM UNet key layout, written out independently of diffusers' converter."""
    out = {}

    def put(prefix_from: str, prefix_to: str, resnet: bool) -> None:
        for k, v in sd.items():
            if k.startswith(prefix_from + "."):
                rest = k[len(prefix_from) + 1 :]
                if resnet:
                    head, _, tail = rest.partition(".")
                    rest = f"{_RESNET[head]}.{tail}"
                out[f"model.diffusion_model.{prefix_to}.{rest}"] = v

    top = {"conv_in": "input_blocks.0.0", "time_embedding.linear_1": "time_embed.0",
           "time_embedding.linear_2": "time_embed.2", "conv_norm_out": "out.0", "conv_out": "out.2",
           "add_embedding.linear_1": "label_emb.0.0", "add_embedding.linear_2": "label_emb.0.2"}
    for a, b in top.items():
        put(a, b, False)
    for i in range(n_levels):
        for j in range(layers):
            put(f"down_blocks.{i}.resnets.{j}", f"input_blocks.{1 + i * (layers + 1) + j}.0", True)
            put(f"down_blocks.{i}.attentions.{j}", f"input_blocks.{1 + i * (layers + 1) + j}.1", False)
        put(f"down_blocks.{i}.downsamplers.0.conv", f"input_blocks.{(i + 1) * (layers + 1)}.0.op", False)
        for j in range(layers + 1):
            put(f"up_blocks.{i}.resnets.{j}", f"output_blocks.{i * (layers + 1) + j}.0", True)
            put(f"up_blocks.{i}.attentions.{j}", f"output_blocks.{i * (layers + 1) + j}.1", False)
        has_attn = any(k.startswith(f"up_blocks.{i}.attentions.") for k in sd)
        put(f"up_blocks.{i}.upsamplers.0.conv", f"output_blocks.{i * (layers + 1) + layers}.{2 if has_attn else 1}.conv",
            False)
    put("mid_block.resnets.0", "middle_block.0", True)
    put("mid_block.attentions.0", "middle_block.1", False)
    put("mid_block.resnets.1", "middle_block.2", True)
    assert len(out) == len(sd), sorted(set(sd) - {k for k in sd})
    return out


def test_single_file_ldm_checkpoint_matches_folder(tmp_path, sd_folder):
    from safetensors.torch import save_file

    from latent_ops.weights.ldm_convert import vae_diffusers_to_ldm

    model, clip, vae = checkpoints.load_checkpoint(sd_folder)
    unet = model.backbone.unet
    sd = unet_diffusers_to_ldm(unet.state_dict(), layers=1, n_levels=2)
    te = clip.parts[0].model.state_dict()
    te = {k if k.startswith("text_model.") else f"text_model.{k}": v for k, v in te.items()}  # the LDM layout
    sd.update({f"cond_stage_model.transformer.{k}": v for k, v in te.items()})
    sd.update(vae_diffusers_to_ldm(vae.module.state_dict(), prefix="first_stage_model."))
    path = tmp_path / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    cfgs = tmp_path / "cfg"
    (cfgs / "unet").mkdir(parents=True)
    (cfgs / "unet" / "config.json").write_text((sd_folder / "unet" / "config.json").read_text())
    (cfgs / "text_encoder").mkdir()
    (cfgs / "text_encoder" / "config.json").write_text((sd_folder / "text_encoder" / "config.json").read_text())
    with pytest.raises(ValueError, match="tokenizer"):
        checkpoints.load_checkpoint(path, config_dir=cfgs)
    m2, c2, v2 = checkpoints.load_checkpoint(path, config_dir=cfgs, tokenizer_dir=sd_folder / "tokenizer")
    torch.testing.assert_close(c2.encode("a cat")[0][0], clip.encode("a cat")[0][0])
    x, s = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0)), torch.tensor([3.0])
    ctx = clip.encode("a cat")[0][0]
    torch.testing.assert_close(m2(x, s, ctx), model(x, s, ctx))
    assert m2.prediction == "eps" and v2.latent_channels == 4


def test_embedded_folder_dispatch(tmp_path, monkeypatch):
    """A LatentOps* folder goes through latent_ops.embedded.loader.load_embedded (faked here)."""
    import sys
    import types

    from diffusers import AutoencoderKL

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        vae_module = AutoencoderKL(block_out_channels=(8, 8), down_block_types=("DownEncoderBlock2D",) * 2,
                                   up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=8,
                                   layers_per_block=1, scaling_factor=0.457, shift_factor=0.371)
    calls = []

    class Enc:
        def encode(self, text):
            return [[torch.full((1, 1, 4), float(len(text))), {}]]

    def backbone(x, t, cond, **extra):
        calls.append(cond.shape)
        return torch.zeros_like(x)

    fake = types.ModuleType("latent_ops.embedded.loader")
    fake.load_embedded = lambda folder, device="cpu", dtype=None: (backbone, Enc(), vae_module, {"prediction": "eps"})
    monkeypatch.setitem(sys.modules, "latent_ops.embedded.loader", fake)
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "LatentOpsDefaultPipeline"}))
    model, enc, vae = checkpoints.load_checkpoint(tmp_path)
    assert model.latent_format.scale == pytest.approx(0.457) and model.latent_format.shift == pytest.approx(0.371)
    assert model.latent_format.downscale == 2 and vae.latent_format == model.latent_format
    out = sample(model, {"samples": torch.zeros(1, 4, 4, 4)}, enc.encode("cat"), enc.encode(""), seed=0, steps=2,
                 cfg=3.0, sampler_name="euler", scheduler="normal")
    assert calls and out["samples"].shape == (1, 4, 4, 4)
    # a zero eps-prediction keeps the noise scaled down to sigma 0: x0 = x at every step
    assert bool(torch.isfinite(out["samples"]).all())


_OPEN_CLIP_LAYER = {"layer_norm1": "ln_1", "layer_norm2": "ln_2", "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj",
                    "self_attn.out_proj": "attn.out_proj"}


def clip_to_open_clip(sd: dict, prefix: str) -> dict:
    """transformers CLIPTextModel(WithProjection) weights -> the open_clip text tower layout (written out here,
    independently of diffusers' ``convert_open_clip_checkpoint``).

    open_clip keeps q, k, v as one ``attn.in_proj_{weight,bias}`` ([3W, W] / [3W], q first) and applies
    ``x @ text_projection`` with ``text_projection`` [W, P], the transpose of the Linear weight [P, W].
    """
    sd = {k.removeprefix("text_model."): v for k, v in sd.items() if not k.endswith("position_ids")}
    n = 1 + max(int(k.split(".")[2]) for k in sd if k.startswith("encoder.layers."))
    out = {}
    for i in range(n):
        src, dst = f"encoder.layers.{i}.", f"{prefix}transformer.resblocks.{i}."
        for kind in ("weight", "bias"):
            out[f"{dst}attn.in_proj_{kind}"] = torch.cat([sd.pop(f"{src}self_attn.{q}_proj.{kind}") for q in "qkv"])
            for a, b in _OPEN_CLIP_LAYER.items():
                out[f"{dst}{b}.{kind}"] = sd.pop(f"{src}{a}.{kind}")
    out[f"{prefix}token_embedding.weight"] = sd.pop("embeddings.token_embedding.weight")
    out[f"{prefix}positional_embedding"] = sd.pop("embeddings.position_embedding.weight")
    for kind in ("weight", "bias"):
        out[f"{prefix}ln_final.{kind}"] = sd.pop(f"final_layer_norm.{kind}")
    if "text_projection.weight" in sd:
        out[f"{prefix}text_projection"] = sd.pop("text_projection.weight").T.contiguous()
    out[f"{prefix}logit_scale"] = torch.tensor(4.6052)  # in real checkpoints; unused by the text tower
    assert not sd, sorted(sd)
    return out


def write_ldm_file(path: Path, sd: dict, vae_module: torch.nn.Module) -> Path:
    from safetensors.torch import save_file

    from latent_ops.weights.ldm_convert import vae_diffusers_to_ldm

    sd = {**sd, **vae_diffusers_to_ldm(vae_module.state_dict(), prefix="first_stage_model.")}
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    return path


def copy_configs(folder: Path, dest: Path, subs: tuple[str, ...]) -> Path:
    for sub in subs:
        (dest / sub).mkdir(parents=True)
        (dest / sub / "config.json").write_text((folder / sub / "config.json").read_text())
    return dest


SD2_CLIP_LAYERS = 23  # diffusers' SD2 text encoder stops one block before OpenCLIP-H's 24 (penultimate layer)
SD2_V_KEY = "model.diffusion_model.output_blocks.11.1.transformer_blocks.0.norm1.bias"


def make_sd2_folder(root: Path) -> Path:
    """A tiny SD2-shaped pipeline: 4 UNet levels x 2 layers (so ``output_blocks.11.1`` exists), linear
    projections, a 23-block text encoder with GELU, and a tokenizer that pads with "!"."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel

    folder = root / "tiny-sd2"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(2)
        UNet2DConditionModel(block_out_channels=(8, 16, 16, 16), layers_per_block=2, sample_size=8, in_channels=4,
                             out_channels=4, down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                             up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3, cross_attention_dim=32,
                             norm_num_groups=8, attention_head_dim=4, use_linear_projection=True,
                             ).save_pretrained(folder / "unet")
        CLIPTextModel(clip_config(num_hidden_layers=SD2_CLIP_LAYERS, hidden_act="gelu")).save_pretrained(
            folder / "text_encoder")
        AutoencoderKL(block_out_channels=(8, 8), down_block_types=("DownEncoderBlock2D",) * 2,
                      up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=8,
                      layers_per_block=1, scaling_factor=0.5).save_pretrained(folder / "vae")
    write_tokenizer(folder / "tokenizer", pad_token="!")
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    return folder


def test_single_file_sd2_openclip_checkpoint_matches_folder(tmp_path):
    folder = make_sd2_folder(tmp_path)
    model, clip, vae = checkpoints.load_checkpoint(folder)
    tok = clip.parts[0].tokenizer
    assert tok.pad_token_id == tok.convert_tokens_to_ids("!") != tok.eos_token_id  # padding is visible in cond
    te = clip.parts[0].model.state_dict()
    ckpt = clip_to_open_clip(te, "cond_stage_model.model.")
    g = torch.Generator().manual_seed(5)
    for k in [k for k in ckpt if ".resblocks.22." in k]:  # OpenCLIP's last block, which SD2 does not use
        ckpt[k.replace(".resblocks.22.", ".resblocks.23.")] = torch.randn(ckpt[k].shape, generator=g)
    ckpt["cond_stage_model.model.text_projection"] = torch.randn(32, 16, generator=g)  # unused by SD2
    cfgs = copy_configs(folder, tmp_path / "cfg", ("unet", "text_encoder"))
    plain = tmp_path / "clip-tokenizer"  # a generic CLIP tokenizer (pads with EOS), as users pass one
    write_tokenizer(plain)

    unet = model.backbone.unet
    bias = unet.up_blocks[3].attentions[2].transformer_blocks[0].norm1.bias  # LDM output_blocks.11.1
    ramp = torch.linspace(-1.0, 1.0, bias.numel())
    x, t = torch.randn(1, 4, 8, 8, generator=g), torch.tensor([500.0])
    ctx = clip.encode("a cat")[0][0]
    for std, guess in ((0.095, "v"), (0.085, "eps")):
        bias.copy_(ramp / ramp.std() * std)
        sd = unet_diffusers_to_ldm(unet.state_dict(), layers=2, n_levels=4)
        assert float(sd[SD2_V_KEY].std()) == pytest.approx(std)
        path = write_ldm_file(tmp_path / f"sd2-{guess}.safetensors", {**sd, **ckpt}, vae.module)
        assert checkpoints.detect_family({**sd, **ckpt}) == "sd2"
        m2, c2, v2 = checkpoints.load_checkpoint(path, config_dir=cfgs, tokenizer_dir=plain)
        assert m2.prediction == guess and v2.latent_channels == 4
        for text in ("a cat", "", " ".join(["ab"] * 80)):
            (c_ref, e_ref), (c_got, e_got) = clip.encode(text)[0], c2.encode(text)[0]
            torch.testing.assert_close(c_got, c_ref)
            torch.testing.assert_close(e_got["pooled_output"], e_ref["pooled_output"])
        torch.testing.assert_close(m2.backbone(x, t, ctx), model.backbone(x, t, ctx))
        other = "eps" if guess == "v" else "v"
        assert checkpoints.load_checkpoint(path, config_dir=cfgs, tokenizer_dir=plain,
                                          prediction=other)[0].prediction == other
    torch.testing.assert_close(m2(x, torch.tensor([3.0]), ctx), model(x, torch.tensor([3.0]), ctx))  # both eps


def test_single_file_sdxl_checkpoint_matches_folder(tmp_path):
    folder = make_folder(tmp_path, sdxl=True)
    model, clip, vae = checkpoints.load_checkpoint(folder)
    tok_g = clip.parts[1].tokenizer
    assert tok_g.pad_token_id == tok_g.convert_tokens_to_ids("!") != tok_g.eos_token_id
    unet = model.backbone.unet
    sd = unet_diffusers_to_ldm(unet.state_dict(), layers=1, n_levels=2)
    assert "model.diffusion_model.label_emb.0.0.weight" in sd
    te_l = {k if k.startswith("text_model.") else f"text_model.{k}": v
            for k, v in clip.parts[0].model.state_dict().items()}
    sd.update({f"conditioner.embedders.0.transformer.{k}": v for k, v in te_l.items()})
    te_g = clip.parts[1].model.state_dict()
    sd.update(clip_to_open_clip(te_g, "conditioner.embedders.1.model."))
    assert sd["conditioner.embedders.1.model.text_projection"].shape == (32, 16)  # [width, projection_dim]
    assert checkpoints.detect_family(sd) == "sdxl"
    path = write_ldm_file(tmp_path / "tiny-xl.safetensors", sd, vae.module)
    cfgs = copy_configs(folder, tmp_path / "cfg", ("unet", "text_encoder", "text_encoder_2"))
    m2, c2, v2 = checkpoints.load_checkpoint(path, config_dir=cfgs, tokenizer_dir=folder / "tokenizer")
    assert m2.prediction == "eps" and m2.backbone.sdxl and len(c2.parts) == 2
    for text in ("a dog", "", " ".join(["ab"] * 80)):
        (c_ref, e_ref), (c_got, e_got) = clip.encode(text)[0], c2.encode(text)[0]
        assert c_got.shape == c_ref.shape and c_got.shape[-1] == 64
        torch.testing.assert_close(c_got[..., :32], c_ref[..., :32])  # CLIP-L, penultimate layer
        torch.testing.assert_close(c_got[..., 32:], c_ref[..., 32:])  # CLIP-G, penultimate layer
        assert e_got["pooled_output"].shape == (1, 16)  # CLIP-G's projected pooled output
        torch.testing.assert_close(e_got["pooled_output"], e_ref["pooled_output"])
    (ctx, extra), x = clip.encode("a dog")[0], torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    s, ctx, pooled = torch.tensor([3.0, 0.5]), ctx.expand(2, -1, -1), extra["pooled_output"].expand(2, -1)
    ref = model(x, s, ctx, pooled_output=pooled, width=96, height=64)
    torch.testing.assert_close(m2(x, s, ctx, pooled_output=pooled, width=96, height=64), ref)
    other = model(x, s, ctx, pooled_output=pooled, width=64, height=64)
    assert not torch.allclose(other, ref)  # the added size conditioning reaches the UNet
    other = model(x, s, ctx, pooled_output=torch.zeros_like(pooled), width=96, height=64)
    assert not torch.allclose(other, ref)  # and so does the pooled CLIP-G output
