"""The repository root loads as a ComfyUI custom node, the way ComfyUI's loader imports it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Mirrors ComfyUI's nodes.py:load_custom_node for a folder: the module name is the full path
# with "." replaced by "_x_", and the spec comes from the folder's __init__.py.
PROBE = r"""
import importlib.util, json, sys, time
root = sys.argv[1]
t0 = time.perf_counter()
import torch
t1 = time.perf_counter()
name = root.replace(".", "_x_")
spec = importlib.util.spec_from_file_location(name, root + "/__init__.py")
module = importlib.util.module_from_spec(spec)
sys.modules[name] = module
spec.loader.exec_module(module)
t2 = time.perf_counter()
print(json.dumps({
    "exports": sorted(module.__all__),
    "ids": sorted(module.NODE_CLASS_MAPPINGS),
    "display": sorted(module.NODE_DISPLAY_NAME_MAPPINGS),
    "toplevel_nodes": "nodes" in sys.modules,
    "toplevel_latent_ops": "latent_ops" in sys.modules,
    "heavy": sorted(m for m in ("diffusers", "transformers", "ray") if m in sys.modules),
    "torch_s": t1 - t0,
    "plugin_s": t2 - t1,
}))
"""


def _probe() -> dict:
    # -I: isolated mode, so neither the working directory nor the installed copy is used.
    out = subprocess.run(
        [sys.executable, "-I", "-c", PROBE, str(ROOT)], capture_output=True, text=True, check=True, cwd="/"
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_loads_like_comfyui() -> None:
    info = _probe()
    assert info["exports"] == ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
    assert info["ids"] == info["display"]
    assert all(node_id.startswith("LatentOps") for node_id in info["ids"])
    # ComfyUI owns the top-level name "nodes"; the library must come from beside the plugin.
    assert not info["toplevel_nodes"]
    assert not info["toplevel_latent_ops"]
    assert info["heavy"] == []


def test_import_is_fast() -> None:
    # The budget is 0.3 s beyond torch on a quiet machine (see benchmarks/bench_import.py);
    # the bound here is loose so that a busy CI machine does not fail it.
    info = _probe()
    assert info["plugin_s"] < 1.5, info
