"""Set-up of the real-ComfyUI suite: ComfyUI 0.3.64 first on ``sys.path``, on the CPU, quiet.

This folder is its own pytest suite (``norecursedirs`` keeps it out of the main collection):
ComfyUI's modules must not leak into the main test process, where ``nodes/comfy_adapter.py``
would find them and change behaviour. ``tests/test_real_comfyui.py`` runs it in a child process.

Fixtures build a tiny SD1.5-class model from ComfyUI's own classes with seeded random weights
(ComfyUI's layers skip initialisation, so every parameter is filled), wrapped in its ModelPatcher.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

_spec = importlib.util.spec_from_file_location("latent_ops_comfyui_harness", Path(__file__).with_name("harness.py"))
harness = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(harness)

SKIP = harness.missing_reason()
COMFYUI = None if SKIP else harness.comfyui_dir()
EXTRA_PATH = harness.extra_path()  # before ComfyUI's folder (and the stub) go on sys.path

if COMFYUI is not None:
    sys.path[:0] = [str(COMFYUI), *EXTRA_PATH]
    import comfy.cli_args

    comfy.cli_args.args.cpu = True  # before comfy.model_management picks a device
    import comfy.model_management
    import comfy.utils

    comfy.utils.PROGRESS_BAR_ENABLED = False

# A small SD1.5 UNet: 2 levels, 32 channels, one transformer block, context 32.
UNET = {
    "context_dim": 32, "model_channels": 32, "use_linear_in_transformer": False, "adm_in_channels": None,
    "use_temporal_attention": False, "in_channels": 4, "out_channels": 4, "num_res_blocks": [1, 1],
    "channel_mult": [1, 2], "transformer_depth": [1, 0], "transformer_depth_output": [1, 1, 0, 0],
    "transformer_depth_middle": 0, "use_spatial_transformer": True, "legacy": False, "image_size": 32,
    "use_checkpoint": False,
}


# Run directly without the snapshot: collect nothing and say why in one line.
collect_ignore_glob = ["test_*.py"] if SKIP else []


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if SKIP:
        terminalreporter.write_line(SKIP)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if SKIP and exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED:
        session.exitstatus = pytest.ExitCode.OK


def fill_weights(model: torch.nn.Module, seed: int) -> None:
    """Seeded weights: ``randn / sqrt(fan_in)`` for matrices and kernels, norms near 1, small biases."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            r = torch.randn(p.shape, generator=g)
            if p.dim() > 1:
                p.copy_(r / p[0].numel() ** 0.5)
            elif "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.1 * r)
            else:
                p.copy_(0.02 * r)


@pytest.fixture(scope="session")
def tiny_model():
    """A ComfyUI ModelPatcher around a tiny SD15 BaseModel (EPS, SD1.5 latent format), on the CPU."""
    import comfy.model_patcher
    import comfy.supported_models

    config = comfy.supported_models.SD15(UNET)
    config.unet_config["num_heads"] = 4
    model = config.get_model({})
    fill_weights(model, 0)
    mm = comfy.model_management
    return comfy.model_patcher.ModelPatcher(model, load_device=mm.get_torch_device(), offload_device=mm.unet_offload_device())


@pytest.fixture(scope="session")
def conds() -> tuple[list, list]:
    """(positive, negative) CONDITIONING: ``[[tensor [1, 4, 32], {}]]`` each, seeded."""
    g = torch.Generator().manual_seed(7)
    return [[torch.randn(1, 4, 32, generator=g), {}]], [[torch.randn(1, 4, 32, generator=g), {}]]


@pytest.fixture(scope="session")
def comfyui_dir() -> Path:
    """The unpacked ComfyUI folder (holding main.py)."""
    return COMFYUI


@pytest.fixture(scope="session")
def extra_path() -> list[str]:
    """Folders a ComfyUI process needs on PYTHONPATH (the torchvision stub when torchvision is absent)."""
    return EXTRA_PATH
