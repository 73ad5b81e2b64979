"""nodes/comfy_sampling.py outside ComfyUI: what the headless tools see, and clear refusals.

Inside the real ComfyUI these nodes are tested in tests/comfyui (run by tests/test_real_comfyui.py).
"""

from __future__ import annotations

import sys

import latent_ops_nodes
import pytest
import torch

from latent_ops.noise.sources import SeededNoise, SeedOptions
from latent_ops.sampling import registry, schedules

NODES = latent_ops_nodes.NODE_CLASS_MAPPINGS


def test_comfyui_is_not_in_this_process() -> None:
    # The real-ComfyUI suite runs in a child process; nothing here may have imported ComfyUI.
    assert "comfy" not in sys.modules and "comfy.samplers" not in sys.modules


def test_headless_combos_list_our_names() -> None:
    ks = NODES["LatentOpsComfyKSampler"].INPUT_TYPES()["required"]
    assert ks["model"][0] == "MODEL"
    assert ks["sampler_name"][0] == list(registry.SAMPLER_NAMES)
    assert ks["scheduler"][0] == list(schedules.SCHEDULER_NAMES)
    wrap = NODES["LatentOpsSamplerStepNoise"].INPUT_TYPES()
    assert wrap["required"]["sampler_name"][0] == list(registry.SAMPLER_NAMES)
    assert wrap["optional"]["sampler"][0] == "SAMPLER"


def test_ksampler_refuses_to_run_without_comfyui() -> None:
    node = NODES["LatentOpsComfyKSampler"]()
    with pytest.raises(RuntimeError, match="LatentOpsComfyKSampler: needs ComfyUI"):
        node.sample(object(), 1, 4, 7.0, "euler", "normal", [], [], {"samples": torch.zeros(1, 4, 8, 8)}, 1.0,
                    "comfy", 0, 0.0)
    with pytest.raises(ValueError, match="unknown noise convention 'x'"):
        node.sample(object(), 1, 4, 7.0, "euler", "normal", [], [], {"samples": torch.zeros(1, 4, 8, 8)}, 1.0,
                    "x", 0, 0.0)


def test_random_noise_node_builds_a_noise_source() -> None:
    (noise,) = NODES["LatentOpsRandomNoise"]().get_noise(5, "a1111", "uniform", 9, 0.5, variations="3:0.25")
    assert noise == SeededNoise(5, SeedOptions("a1111", 9, 0.5, ((3, 0.25),)), "uniform")
    assert noise.seed == 5 and noise.generate_noise({"samples": torch.zeros(2, 4, 8, 8)}).shape == (2, 4, 8, 8)


class _Sampler:
    """The shape of ComfyUI's KSAMPLER: sampler_function plus options dicts."""

    def __init__(self, fn, extra_options=None, inpaint_options=None) -> None:
        self.sampler_function, self.extra_options, self.inpaint_options = fn, extra_options or {}, inpaint_options or {}


def _ancestral(model, x, sigmas, extra_args=None, callback=None, disable=None, noise_sampler=None):
    return x + noise_sampler(sigmas[0], sigmas[1])


def test_step_noise_node_wraps_a_connected_sampler() -> None:
    given = _Sampler(_ancestral, {"eta": 0.5}, {"random": True})
    (out,) = NODES["LatentOpsSamplerStepNoise"]().get_sampler("euler", "diffusers", 0, 0.0, sampler=given)
    assert out is not given and type(out) is _Sampler
    assert out.extra_options is given.extra_options and out.inpaint_options is given.inpaint_options
    assert given.sampler_function is _ancestral  # the cached input is left alone
    x, sigmas = torch.zeros(2, 1, 2, 2), torch.tensor([1.0, 0.0])
    batch = out.sampler_function(None, x, sigmas, extra_args={"seed": 3})
    alone = out.sampler_function(None, x[:1], sigmas, extra_args={"seed": 4})
    assert torch.equal(batch[1:], alone)


def test_step_noise_node_errors() -> None:
    node = NODES["LatentOpsSamplerStepNoise"]()
    with pytest.raises(RuntimeError, match="LatentOpsSamplerStepNoise: needs ComfyUI"):
        node.get_sampler("euler_ancestral", "comfy", 0, 0.0)
    with pytest.raises(ValueError, match="LatentOpsSamplerStepNoise: sampler int has no sampler_function"):
        node.get_sampler("euler", "comfy", 0, 0.0, sampler=3)
