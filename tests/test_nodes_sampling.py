"""The sampling nodes headless: loader listing/loading, text encode, sampler, unsample."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from latent_ops import seeds
from latent_ops.sampling.diffusion import sample
from latent_ops.sampling.registry import SAMPLERS
from latent_ops.weights import folders as model_paths


def _tiny_folder_builder():
    spec = importlib.util.spec_from_file_location("_ckpt_helpers", Path(__file__).with_name("test_checkpoints.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.make_folder


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("models")
    (root / "diffusers").mkdir()
    _tiny_folder_builder()(root / "diffusers")
    return root


@pytest.fixture(scope="module")
def nodes(registry):
    return registry


def test_loader_encode_sample_unsample(models_dir, nodes):
    with model_paths.using(models_dir=models_dir):
        loader = nodes["LatentOpsCheckpointLoader"]
        choices = loader.INPUT_TYPES()["required"]["ckpt_name"][0]
        assert "tiny-sd" in choices
        model, clip, vae = loader().load("tiny-sd")
    assert model.prediction == "eps" and hasattr(vae, "decode")
    (pos,) = nodes["LatentOpsTextEncode"]().encode(clip, "a cat")
    (neg,) = nodes["LatentOpsTextEncode"]().encode(clip, "")
    latent = {"samples": torch.zeros(2, 4, 8, 8), "batch_index": [3, 4]}
    args = dict(seed=5, steps=3, cfg=2.0, sampler_name="euler_ancestral", scheduler="karras", positive=pos,
                negative=neg, latent_image=latent, denoise=1.0, noise_convention="comfy", subseed=9,
                subseed_strength=0.25)
    (out,) = nodes["LatentOpsSampler"]().sample(model, **args)
    assert out["batch_index"] == [3, 4] and out["samples"].shape == (2, 4, 8, 8)
    ref = sample(model, latent, pos, neg, seed=5, steps=3, cfg=2.0, sampler_name="euler_ancestral",
                 scheduler="karras", subseed=9, subseed_strength=0.25)
    torch.testing.assert_close(out["samples"], ref["samples"])
    (noise,) = nodes["LatentOpsUnsample"]().unsample(model, pos, neg, {"samples": out["samples"]}, 3, 1.0,
                                                     "euler", "karras", 1.0)
    assert noise["samples"].shape == (2, 4, 8, 8)
    (again,) = nodes["LatentOpsSampler"]().sample(model, **{**args, "sampler_name": "euler"},
                                                  noise={"samples": noise["samples"]})
    assert bool(torch.isfinite(again["samples"]).all())


def test_sampler_two_stage_optional_inputs(models_dir, nodes):
    with model_paths.using(models_dir=models_dir):
        model, clip, _ = nodes["LatentOpsCheckpointLoader"]().load("tiny-sd")
    pos, neg = clip.encode("dog"), clip.encode("")
    node = nodes["LatentOpsSampler"]()
    base = dict(seed=1, steps=4, cfg=1.5, sampler_name="euler", scheduler="normal", positive=pos, negative=neg,
                denoise=1.0, noise_convention="comfy", subseed=0, subseed_strength=0.0)
    (full,) = node.sample(model, latent_image={"samples": torch.zeros(1, 4, 8, 8)}, **base)
    (half,) = node.sample(model, latent_image={"samples": torch.zeros(1, 4, 8, 8)}, **base, end_at_step=2,
                          return_with_leftover_noise=True)
    (rest,) = node.sample(model, latent_image=half, **base, start_at_step=2, add_noise=False)
    torch.testing.assert_close(rest["samples"], full["samples"], rtol=1e-4, atol=1e-4)


def test_sampler_combos_use_comfy_names(nodes):
    req = nodes["LatentOpsSampler"].INPUT_TYPES()["required"]
    names = req["sampler_name"][0]
    for n in ("euler", "euler_ancestral", "heun", "dpm_2", "dpmpp_2m", "dpmpp_2m_sde", "dpmpp_sde", "dpmpp_3m_sde",
              "lms", "ddim", "uni_pc", "lcm"):
        assert n in names
    assert req["scheduler"][0] == ["simple", "sgm_uniform", "karras", "exponential", "ddim_uniform", "beta",
                                   "normal", "linear_quadratic", "kl_optimal"]
    assert req["seed"][1]["control_after_generate"] is True and req["seed"][1]["max"] == 0xFFFFFFFFFFFFFFFF
    unsample_names = nodes["LatentOpsUnsample"].INPUT_TYPES()["required"]["sampler_name"][0]
    assert "euler_ancestral" not in unsample_names
    # both combos are read from the one sampler table
    assert names == list(SAMPLERS) and unsample_names == [n for n, r in SAMPLERS.items() if r.invertible]
    assert req["subseed"][1]["max"] == seeds.MAX_SEED
