"""pyproject.toml lists every package, and the installed layout never exposes `nodes`."""

from __future__ import annotations

from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]


def _config() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_every_package_is_listed() -> None:
    cfg = _config()["tool"]["setuptools"]
    listed = set(cfg["packages"])
    mapping = cfg["package-dir"]
    found = set()
    for init in (ROOT / "latent_ops").rglob("__init__.py"):
        rel = init.parent.relative_to(ROOT)
        found.add(".".join(rel.parts))
    found.add("latent_ops_nodes")
    assert found == listed, f"add to [tool.setuptools] packages: {sorted(found - listed)}; stale: {sorted(listed - found)}"
    assert mapping["latent_ops_nodes"] == "nodes"
    assert "nodes" not in listed


def test_runtime_dependencies_are_open_ranges() -> None:
    deps = _config()["project"]["dependencies"]
    torch_dep = next(d for d in deps if d.startswith("torch"))
    assert "==" not in torch_dep, "ComfyUI users keep their own torch: no pin in pyproject"
    assert not any(d.startswith(("torchvision", "transformers")) for d in deps)


def test_comfy_registry_metadata() -> None:
    cfg = _config()
    comfy = cfg["tool"]["comfy"]
    assert comfy["PublisherId"] and comfy["DisplayName"]
    assert cfg["project"]["urls"]["Repository"].startswith("https://")
    assert "comfyui" not in cfg["project"]["name"].lower()
