"""The noise nodes: shapes from widgets/VAE/like, LATENT keys kept, inputs untouched, clear errors."""

from __future__ import annotations

import pytest
import torch
from latent_ops_nodes import noise as nodes

from latent_ops import latent_format, noise
from latent_ops.sampling import noising

DEFAULTS = {"width": 64, "height": 48, "batch_size": 2, "seed": 5, "convention": "comfy",
            "noise_type": "gaussian", "subseed": 0, "subseed_strength": 0.0}


class FakeVAE:
    latent_channels = 16
    downscale_ratio = 16


class OurModel:
    prediction = "flow"
    latent_format = latent_format.FLUX


def generate(**kw) -> dict:
    return nodes.LatentOpsNoise().generate(**{**DEFAULTS, **kw})[0]


def test_noise_from_widgets_matches_library() -> None:
    out = generate(width=70, height=41)  # floored like ComfyUI: 8 x 5
    assert set(out) == {"samples"}
    assert torch.equal(out["samples"], noise.make_noise((2, 4, 5, 8), 5))


def test_noise_channels_downscale_and_vae() -> None:
    assert generate(channels=16, downscale=4)["samples"].shape == (2, 16, 12, 16)
    assert generate(vae=FakeVAE(), channels=3)["samples"].shape == (2, 16, 3, 4)


def test_noise_all_options_reach_the_library() -> None:
    out = generate(convention="a1111_nv", noise_type="pink", subseed=7, subseed_strength=0.4,
                   variations="9:0.1", resize_from_width=32, resize_from_height=32)
    ref = noise.make_noise((2, 4, 6, 8), 5, convention="a1111_nv", noise_type="pink", subseed=7,
                           subseed_strength=0.4, variations=[(9, 0.1)], resize_from=(4, 4))
    assert torch.equal(out["samples"], ref)


def test_noise_like_keeps_keys_and_batch_index() -> None:
    mask = torch.ones(1, 1, 16, 16)
    like = {"samples": torch.zeros(2, 16, 6, 5), "batch_index": [3, 1], "noise_mask": mask}
    snapshot = {k: (v.clone() if torch.is_tensor(v) else list(v)) for k, v in like.items()}
    out = generate(like=like)
    assert out is not like and out["noise_mask"] is mask and out["batch_index"] == [3, 1]
    assert torch.equal(out["samples"], noise.make_noise((2, 16, 6, 5), 5, batch_index=[3, 1]))
    assert torch.equal(like["samples"], snapshot["samples"]) and like["batch_index"] == [3, 1]


def test_noise_errors() -> None:
    with pytest.raises(ValueError, match="width 8 x height 8 with downscale 16"):
        generate(width=8, height=8, downscale=16)
    with pytest.raises(ValueError, match="latent_channels"):
        generate(vae=object())
    with pytest.raises(ValueError, match="'1:2:3'"):
        generate(variations="1:2:3")


def test_add_noise_widgets_and_keys(gen: torch.Generator) -> None:
    x = torch.randn(2, 4, 6, 6, generator=gen)
    n = torch.randn(2, 4, 6, 6, generator=gen)
    samples = {"samples": x, "noise_mask": torch.ones(1, 1, 6, 6), "batch_index": [0, 1]}
    x0 = x.clone()
    out = nodes.LatentOpsAddNoise().add(samples, {"samples": n}, 2.0, "eps", "sd15")[0]
    assert out["batch_index"] == [0, 1] and "noise_mask" in out and set(samples) == set(out)
    assert torch.equal(out["samples"], noising.add_noise(x, n, 2.0, latent_format=latent_format.SD15))
    assert torch.equal(x, x0) and samples["samples"] is x


def test_add_noise_model_and_sigmas(gen: torch.Generator) -> None:
    x = torch.randn(1, 16, 4, 4, generator=gen)
    n = torch.randn(1, 16, 4, 4, generator=gen)
    out = nodes.LatentOpsAddNoise().add({"samples": x}, {"samples": n}, 1.0, "eps", "none",
                                        model=OurModel(), sigmas=torch.tensor([1.0, 0.6, 0.3]))[0]
    ref = noising.add_noise(x, n, 0.7, prediction="flow", latent_format=latent_format.FLUX)
    torch.testing.assert_close(out["samples"], ref)


def test_add_noise_comfy_model_duck_type(gen: torch.Generator) -> None:
    class EPS:
        pass

    class V_PREDICTION(EPS):  # noqa: N801 - ComfyUI's class names
        pass

    class ModelSamplingDiscrete(V_PREDICTION):
        pass

    class Patcher:
        def get_model_object(self, name: str) -> object:
            return {"model_sampling": ModelSamplingDiscrete(), "latent_format": latent_format.SDXL}[name]

    x = torch.randn(1, 4, 4, 4, generator=gen)
    n = torch.randn(1, 4, 4, 4, generator=gen)
    out = nodes.LatentOpsAddNoise().add({"samples": x}, {"samples": n}, 3.0, "flow", "none", model=Patcher())[0]
    assert torch.equal(out["samples"], noising.add_noise(x, n, 3.0, prediction="v", latent_format=latent_format.SDXL))


def test_add_noise_mismatch_names_inputs() -> None:
    with pytest.raises(ValueError, match=r"samples \(1, 4, 8, 8\) and noise \(1, 16, 8, 8\)"):
        nodes.LatentOpsAddNoise().add({"samples": torch.zeros(1, 4, 8, 8)}, {"samples": torch.zeros(1, 16, 8, 8)},
                                      1.0, "eps", "none")
    with pytest.raises(ValueError, match="prediction"):
        nodes.LatentOpsAddNoise().add({"samples": torch.zeros(1, 4, 8, 8)}, {"samples": torch.zeros(1, 4, 8, 8)},
                                      1.0, "eps", "none", model=object())


def test_registered() -> None:
    assert nodes.NODE_DISPLAY_NAME_MAPPINGS == {"LatentOpsNoise": "Latent Noise", "LatentOpsAddNoise": "Add Noise at Sigma"}
    spec = nodes.LatentOpsNoise.INPUT_TYPES()["required"]
    assert spec["seed"][1]["control_after_generate"] is True and spec["seed"][1]["max"] == 2**64 - 1
    assert list(spec["convention"][0]) == list(noise.CONVENTIONS)
