"""The plugin inside a real ComfyUI 0.3.64 server: it loads, and every example workflow runs to success.

The server is ``main.py --cpu`` on 127.0.0.1 (a free port) with its own base directory: the
repository is linked into ``custom_nodes/`` and ``workflows/input/*`` copied into ``input/``.
Each ``workflows/*.json`` is converted to API format with our converter and queued with
``POST /prompt``; ``GET /history/{id}`` must report success. The server is stopped in every case.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import latent_ops_nodes
import pytest

from latent_ops import workflow

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((ROOT / "workflows").glob("*.json"))
PLUGIN = "latent-ops"
START_S, RUN_S = 180.0, 300.0
NEW_NODES = ("LatentOpsComfyKSampler", "LatentOpsRandomNoise", "LatentOpsSamplerStepNoise")


class Server:
    def __init__(self, url: str, log: Path, process: subprocess.Popen) -> None:
        self.url, self.log, self.process = url, log, process

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def get(self, path: str) -> object:
        with urllib.request.urlopen(self.url + path, timeout=30) as r:
            return json.loads(r.read())

    def post(self, path: str, body: dict) -> object:
        req = urllib.request.Request(self.url + path, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as err:  # a rejected prompt: the body says which node and why
            raise AssertionError(f"POST {path} -> {err.code}: {err.read().decode(errors='replace')}") from None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=20)


@pytest.fixture(scope="module")
def server(comfyui_dir: Path, extra_path: list[str], tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("comfyui_base")
    (base / "custom_nodes").mkdir()
    (base / "custom_nodes" / PLUGIN).symlink_to(ROOT, target_is_directory=True)
    shutil.copytree(ROOT / "workflows" / "input", base / "input")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    env["PYTHONPATH"] = os.pathsep.join([*extra_path, *filter(None, [os.environ.get("PYTHONPATH")])])
    port = _free_port()
    log = base / "server.log"
    cmd = [sys.executable, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port), "--base-directory",
           str(base), "--database-url", "sqlite:///:memory:", "--disable-auto-launch"]
    with log.open("wb") as out:
        process = subprocess.Popen(cmd, cwd=comfyui_dir, stdout=out, stderr=subprocess.STDOUT, env=env)
    srv = Server(f"http://127.0.0.1:{port}", log, process)
    try:
        deadline = time.monotonic() + START_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"ComfyUI exited with code {process.returncode} while starting:\n{srv.tail()}")
            try:
                srv.get("/system_stats")
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if time.monotonic() > deadline:
                    pytest.fail(f"ComfyUI did not answer within {START_S:.0f} s:\n{srv.tail()}")
                time.sleep(0.5)
        yield srv
    finally:
        _stop(process)


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
    queued = server.post("/prompt", {"prompt": wf.prompt, "client_id": "latent-ops-tests", "extra_data": extra})
    assert not queued.get("node_errors"), queued
    prompt_id = queued["prompt_id"]
    deadline = time.monotonic() + RUN_S
    while True:
        entry = server.get(f"/history/{prompt_id}").get(prompt_id)
        if entry is not None and entry.get("status", {}).get("completed") is not None:
            break
        assert server.process.poll() is None, f"ComfyUI died running {path.name}:\n{server.tail()}"
        assert time.monotonic() < deadline, f"{path.name}: not done within {RUN_S:.0f} s:\n{server.tail()}"
        time.sleep(0.25)
    status = entry["status"]
    errors = [m for m in status.get("messages", []) if m[0] == "execution_error"]
    assert status["status_str"] == "success" and status["completed"], f"{path.name}: {errors or status}"
    assert entry["outputs"], f"{path.name}: ran but produced no outputs"
