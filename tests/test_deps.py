"""A missing optional package is a clear error naming what needed it and how to install it."""

from __future__ import annotations

import json
import sys

import pytest

from latent_ops import checkpoints
from latent_ops.deps import MissingDependencyError, require
from latent_ops.embedded.loader import DEFAULT_DIR, load_embedded
from latent_ops.vae import loading as models
from latent_ops.workflow import Engine, ExecutionError


def test_require_returns_the_module() -> None:
    assert require("json", "reading") is json


def test_missing_package_names_purpose_package_and_install_command() -> None:
    with pytest.raises(MissingDependencyError) as info:
        require("latent_ops_no_such_package_x", "Loading a VAE")
    msg = str(info.value)
    assert msg.startswith("Loading a VAE needs the Python package 'latent_ops_no_such_package_x'")
    assert f"{sys.executable} -m pip install latent_ops_no_such_package_x" in msg
    assert isinstance(info.value, ImportError) and isinstance(info.value.__cause__, ImportError)


def test_missing_submodule_says_the_package_is_too_old() -> None:
    with pytest.raises(MissingDependencyError, match=r"lacks .*too old.* -m pip install -U json"):
        require("json.no_such_submodule", "Loading a checkpoint")


@pytest.fixture
def no_diffusers(monkeypatch):
    """Make ``import diffusers`` fail as it does where the package is not installed."""
    for name in [m for m in sys.modules if m == "diffusers" or m.startswith("diffusers.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "diffusers", None)


def test_loaders_report_missing_diffusers(no_diffusers, tmp_path) -> None:
    with pytest.raises(MissingDependencyError, match=r"Loading the embedded model .* needs the Python package 'diffusers'"):
        load_embedded(DEFAULT_DIR)
    with pytest.raises(MissingDependencyError, match=r"Loading the VAE .* 'diffusers'.* -m pip install diffusers"):
        models.load_vae(DEFAULT_DIR / "vae")
    (tmp_path / "m.safetensors").write_bytes(b"")
    with pytest.raises(MissingDependencyError, match="Loading the checkpoint .*m.safetensors"):
        checkpoints.load_single_file(tmp_path / "m.safetensors")


def test_node_error_names_the_node_and_the_install_command(no_diffusers, registry) -> None:
    prompt = {"1": {"class_type": "LatentOpsVAELoader", "inputs": {"vae_name": models.DEFAULT_VAE_NAME}},
              "2": {"class_type": "LatentOpsVAEDecode",
                    "inputs": {"vae": ["1", 0], "samples": ["3", 0], "tile_size": 0, "overlap": 64}},
              "3": {"class_type": "EmptyLatentImage", "inputs": {"width": 32, "height": 32, "batch_size": 1}},
              "4": {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}}}
    with pytest.raises(ExecutionError) as info:
        Engine(registry).run(prompt)
    msg = str(info.value)
    assert "node 1 (LatentOpsVAELoader)" in msg and "pip install diffusers" in msg
