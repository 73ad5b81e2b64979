"""Headless model lookup: --models-dir, LATENT_OPS_MODELS, extra_model_paths.yaml, confinement."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from latent_ops.weights import folders as model_paths

YAML = """
# a ComfyUI-style file
comfyui:
    base_path: comfy/
    # is_default: true
    checkpoints: models/checkpoints/
    vae: models/vae/   # trailing comment
    vae_approx: |
         models/approx_a
         models/approx_b
a111:
    base_path: "webui"
    vae: 'models/VAE'
"""


def _touch(p: Path) -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(b"x")
    return p


def test_parse_subset_matches_pyyaml() -> None:
    parsed = model_paths.parse_extra_model_paths(YAML)
    assert parsed["comfyui"]["vae_approx"].split("\n") == ["models/approx_a", "models/approx_b"]
    assert parsed["a111"] == {"base_path": "webui", "vae": "models/VAE"}
    yaml = pytest.importorskip("yaml")
    ref = yaml.safe_load(YAML)
    for section, entries in ref.items():
        for key, value in entries.items():
            assert parsed[section][key].split("\n") == str(value).strip().split("\n")


@pytest.mark.parametrize("bad", ["- a\n", "x:\n    - a\n", "x:\n  a: 1\n    b: 2\n", "  a: 1\n", "x:\n  {a: 1}\n"])
def test_parse_rejects_unsupported(bad) -> None:
    with pytest.raises(ValueError, match="extra_model_paths line"):
        model_paths.parse_extra_model_paths(bad)


def test_folders_order_and_yaml(tmp_path, monkeypatch) -> None:
    yaml_file = tmp_path / "extra.yaml"
    yaml_file.write_text(YAML)
    for d in ("root/vae", "comfy/models/vae", "webui/models/VAE", "comfy/models/approx_b", "env1/vae", "env2/vae"):
        (tmp_path / d).mkdir(parents=True)
    monkeypatch.setenv(model_paths.ENV_VAR, os.pathsep.join([str(tmp_path / "env1"), str(tmp_path / "env2")]))
    assert model_paths.folders("vae") == [tmp_path / "env1/vae", tmp_path / "env2/vae"]
    with model_paths.using(models_dir=tmp_path / "root", extra_paths_yaml=yaml_file):
        got = model_paths.folders("vae")
        assert got == [tmp_path / "root/vae", tmp_path / "comfy/models/vae", tmp_path / "webui/models/VAE",
                       tmp_path / "env1/vae", tmp_path / "env2/vae"]  # fmt: skip
        assert model_paths.folders("vae_approx") == [tmp_path / "comfy/models/approx_b"]  # approx_a missing
    assert model_paths.folders("vae")[0] == tmp_path / "env1/vae"  # context restored
    monkeypatch.delenv(model_paths.ENV_VAR)
    assert model_paths.folders("checkpoints") == []


def test_list_and_resolve(tmp_path) -> None:
    root = tmp_path / "models"
    _touch(root / "vae/a.safetensors")
    _touch(root / "vae/sub/b.SAFETENSORS")
    _touch(root / "vae/notes.txt")
    (root / "vae/diff").mkdir()
    _touch(root / "vae/diff/config.json")
    with model_paths.using(models_dir=root):
        assert model_paths.list_models("vae", [".safetensors"]) == ["a.safetensors", "sub/b.SAFETENSORS"]
        assert model_paths.list_model_dirs("vae") == ["diff"]
        assert model_paths.resolve("vae", "sub/b.SAFETENSORS") == (root / "vae/sub/b.SAFETENSORS").resolve()
        with pytest.raises(model_paths.ModelPathError, match="not found"):
            model_paths.resolve("vae", "missing.safetensors")


def test_resolve_refuses_escapes(tmp_path) -> None:
    root = tmp_path / "models"
    secret = _touch(tmp_path / "secret.safetensors")
    _touch(root / "vae/ok.safetensors")
    (root / "vae/link.safetensors").symlink_to(secret)
    (root / "vae/dirlink").symlink_to(tmp_path)
    with model_paths.using(models_dir=root):
        for name in ("../secret.safetensors", str(secret), "/etc/passwd", "a/../../secret.safetensors", ""):
            with pytest.raises(model_paths.ModelPathError, match="relative path"):
                model_paths.resolve("vae", name)
        for name in ("link.safetensors", "dirlink/secret.safetensors"):
            with pytest.raises(model_paths.ModelPathError, match="outside"):
                model_paths.resolve("vae", name)
        assert "link.safetensors" not in model_paths.list_models("vae", [".safetensors"])


def test_bad_yaml_names_file(tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("- nope\n")
    with pytest.raises(ValueError, match="bad.yaml"):
        with model_paths.using(extra_paths_yaml=bad):
            pass
