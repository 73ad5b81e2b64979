"""The plugin inside a real ComfyUI 0.3.64 server: it loads, and every example workflow runs to success.

The server (the ``server`` fixture of conftest.py) is ``main.py --cpu`` on 127.0.0.1 (a free port) with
its own base directory: the repository is linked into ``custom_nodes/`` and ``workflows/input/*``
copied into ``input/``. Each ``workflows/*.json`` is converted to API format with our converter and
queued with ``POST /prompt``; ``GET /history/{id}`` must report success. The server is stopped in
every case. (``workflows/comfyui/*.json`` need a checkpoint: test_loader_workflows.py runs them.)
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import latent_ops_nodes
import pytest

from latent_ops import workflow

if TYPE_CHECKING:
    from conftest import Server

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((ROOT / "workflows").glob("*.json"))
PLUGIN = "latent-ops"
NEW_NODES = ("LatentOpsComfyKSampler", "LatentOpsRandomNoise", "LatentOpsSamplerStepNoise")


def test_plugin_loads_without_import_failure(server: Server) -> None:
    log = server.log.read_text(errors="replace")
    ours = [line for line in log.splitlines()
            if ("IMPORT FAILED" in line or "Cannot import" in line) and PLUGIN in line]
    assert not ours, "\n".join(ours) + "\n" + server.tail()
    info = server.get("/object_info")
    assert set(latent_ops_nodes.NODE_CLASS_MAPPINGS) <= set(info), sorted(set(latent_ops_nodes.NODE_CLASS_MAPPINGS) - set(info))
    for node_id in NEW_NODES:  # inside ComfyUI the combos list ComfyUI's own samplers and schedulers
        assert info[node_id]["python_module"].startswith("custom_nodes"), info[node_id]["python_module"]
    core = info["KSampler"]["input"]["required"]
    mine = info["LatentOpsComfyKSampler"]["input"]["required"]
    assert mine["sampler_name"][0] == core["sampler_name"][0]
    assert mine["scheduler"][0] == core["scheduler"][0]
    assert info["LatentOpsRandomNoise"]["output"] == ["NOISE"]
    assert info["LatentOpsSamplerStepNoise"]["output"] == ["SAMPLER"]


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.stem for p in WORKFLOWS])
def test_workflow_runs(server: Server, path: Path) -> None:
    wf = workflow.load(path, latent_ops_nodes.headless_registry())
    extra = {"extra_pnginfo": {"workflow": wf.ui}} if wf.ui else {}
    server.run(wf.prompt, path.name, extra)


def test_cancel_stops_a_long_library_loop(server: Server) -> None:
    """The Cancel button reaches our library's interrupt points (here one per stacked variation:
    1,024 full draws of 16 x 4 x 256 x 256, a minute or more of work on a CPU)."""
    variations = ", ".join(f"{s}:0.01" for s in range(1, 1025))
    prompt = {
        "1": {"class_type": "LatentOpsNoise", "inputs": {
            "width": 2048, "height": 2048, "batch_size": 16, "seed": 1, "convention": "diffusers",
            "noise_type": "gaussian", "subseed": 0, "subseed_strength": 0.0, "variations": variations}},
        "2": {"class_type": "SaveLatent", "inputs": {"samples": ["1", 0], "filename_prefix": "cancelled"}},
    }
    prompt_id = server.queue(prompt)
    deadline = time.monotonic() + 60
    while not any(item[1] == prompt_id for item in server.get("/queue")["queue_running"]):
        assert time.monotonic() < deadline, server.tail()
        time.sleep(0.05)
    time.sleep(2.0)  # well inside the node
    began = time.monotonic()
    server.interrupt()
    entry = server.wait(prompt_id, "the cancelled prompt")
    stopped_after = time.monotonic() - began
    kinds = [m[0] for m in entry["status"]["messages"]]
    assert "execution_interrupted" in kinds and entry["status"]["status_str"] == "error", entry["status"]
    assert stopped_after < 10, f"Cancel took {stopped_after:.1f} s"
    assert not list((server.base / "output").glob("cancelled*")), "a cancelled run wrote its file"
