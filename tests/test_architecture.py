"""The house rules that a parser can see: layers, arrows, module sizes (docs/architecture.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LIB = ROOT / "latent_ops"
NODES = ROOT / "nodes"

COMFY_MODULES = ("comfy", "comfy_extras", "comfy_api", "comfy_execution", "folder_paths", "server", "execution",
                 "latent_preview", "node_helpers", "nodes")  # fmt: skip
SUBJECT_PACKAGES = ("checkpoints", "embedded", "media", "noise", "sampling", "space", "vae", "weights", "workflow")


def _modules(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


def _dotted(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[str, int]]:
    """Absolute dotted names of everything ``path`` imports (relative imports resolved), with line numbers."""
    tree = ast.parse(path.read_text(), str(path))
    package = _dotted(path).split(".") if path.name == "__init__.py" else _dotted(path).split(".")[:-1]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                mod = ".".join([*base, node.module] if node.module else base)
            else:
                mod = node.module or ""
            found.append((mod, node.lineno))
            found += [(f"{mod}.{alias.name}", node.lineno) for alias in node.names]
    return found


def _violations(paths: list[Path], forbidden: tuple[str, ...]) -> list[str]:
    out = []
    for path in paths:
        for name, line in _imports(path):
            if any(name == f or name.startswith(f + ".") for f in forbidden):
                out.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    return out


def test_library_never_imports_comfyui_or_nodes() -> None:
    assert _violations(_modules(LIB), (*COMFY_MODULES, "latent_ops_nodes")) == []


def test_engine_never_imports_node_classes() -> None:
    # The engine is given its registry (dependency injection); it never reaches for the node pack.
    assert _violations(_modules(LIB / "workflow"), ("nodes", "latent_ops_nodes")) == []


def test_nodes_reach_the_library_only_through_one_seam() -> None:
    # Every arrow nodes -> latent_ops goes through nodes/_library.py: plain imports that tools follow.
    seam = NODES / "_library.py"
    direct = []
    for path in _modules(NODES):
        if path == seam:
            continue
        for name, line in _imports(path):
            if name == "latent_ops" or name.startswith("latent_ops."):
                direct.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
        assert "importlib" not in path.read_text() or path.name == "comfy_adapter.py", path
    assert direct == []
    assert "lib(" not in "".join(p.read_text() for p in _modules(NODES))


def test_nodes_import_comfyui_only_in_the_adapter() -> None:
    others = [p for p in _modules(NODES) if p.name != "comfy_adapter.py"]
    assert _violations(others, tuple(m for m in COMFY_MODULES if m != "nodes")) == []


@pytest.mark.parametrize("folder", [LIB, NODES], ids=["latent_ops", "nodes"])
def test_every_module_is_under_400_lines(folder: Path) -> None:
    long = {str(p.relative_to(ROOT)): n for p in _modules(folder) if (n := len(p.read_text().splitlines())) >= 400}
    assert long == {}


def test_top_level_is_a_few_cross_cutting_modules_beside_subject_packages() -> None:
    modules = sorted(p.stem for p in LIB.glob("*.py") if p.stem != "__init__")
    packages = sorted(p.name for p in LIB.iterdir() if (p / "__init__.py").exists())
    assert len(modules) <= 12, modules
    assert set(SUBJECT_PACKAGES) <= set(packages), packages


def test_no_module_import_side_effects_on_sys_path() -> None:
    offenders = [str(p.relative_to(ROOT)) for p in _modules(LIB) + _modules(NODES)
                 if "sys.path.insert" in p.read_text() or "sys.path.append" in p.read_text()]  # fmt: skip
    assert offenders == []


def test_moved_module_names_still_resolve() -> None:
    import latent_ops

    for old, new in latent_ops.MOVED.items():
        module = getattr(latent_ops, old)
        assert module.__name__ == f"latent_ops.{new}", old
    with pytest.raises(AttributeError):
        latent_ops.no_such_module  # noqa: B018
