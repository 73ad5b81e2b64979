"""Set-up of the real-ComfyUI suite: ComfyUI 0.3.64 first on ``sys.path``, on the CPU, quiet.

This folder is its own pytest suite (``norecursedirs`` keeps it out of the main collection):
ComfyUI's modules must not leak into the main test process, where ``nodes/comfy_adapter.py``
would find them and change behaviour. ``tests/test_real_comfyui.py`` runs it in a child process.

Fixtures build a tiny SD1.5-class model from ComfyUI's own classes with seeded random weights
(ComfyUI's layers skip initialisation, so every parameter is filled), wrapped in its ModelPatcher;
and start the real server (``main.py --cpu`` on 127.0.0.1, its own base directory holding the
plugin, ``workflows/input/*`` and a tiny SD1.5-layout checkpoint file), stopped in every case.
"""

from __future__ import annotations

import importlib.util
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

import pytest
import torch

_spec = importlib.util.spec_from_file_location("latent_ops_comfyui_harness", Path(__file__).with_name("harness.py"))
harness = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(harness)

ROOT = Path(__file__).resolve().parents[2]
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


# --------------------------------------------------------------------------------- the checkpoint
CHECKPOINT = "latent_ops_tiny_sd15.safetensors"
"""The file name of :func:`write_tiny_sd15_checkpoint`'s checkpoint in the server's ``models/checkpoints``."""

# The smallest UNet ComfyUI's model_detection still calls SD15: SD15 matches on model_channels 320,
# context_dim 768 and conv (not linear) transformer projections; levels and depths are read from the
# keys, so one level, one res block, one transformer block and no middle block are accepted.
SD15_UNET = {
    "context_dim": 768, "model_channels": 320, "use_linear_in_transformer": False, "adm_in_channels": None,
    "use_temporal_attention": False, "in_channels": 4, "out_channels": 4, "num_res_blocks": [1],
    "channel_mult": [1], "transformer_depth": [1], "transformer_depth_output": [1, 1],
    "transformer_depth_middle": -2, "use_spatial_transformer": True, "legacy": False, "image_size": 32,
    "use_checkpoint": False,
}


def write_tiny_sd15_checkpoint(path: Path, seed: int = 0) -> Path:
    """A single-file SD1.5-layout checkpoint (LDM keys) that ComfyUI's CheckpointLoaderSimple loads as SD15.

    ``model.diffusion_model.*``: :data:`SD15_UNET` (19 M parameters); ``cond_stage_model.transformer.*``:
    a full CLIP-L text encoder (its size is fixed by ComfyUI's config; 123 M parameters, stored in fp16);
    ``first_stage_model.*``: a TAESD (ComfyUI takes a ``taesd_decoder`` VAE as the checkpoint's VAE).
    Weights are seeded random (:func:`fill_weights`); about 290 MB. Returns ``path``.
    """
    import comfy.sd1_clip
    import comfy.supported_models
    import comfy.taesd.taesd
    import safetensors.torch

    unet = comfy.supported_models.SD15(SD15_UNET).get_model({})
    clip = comfy.sd1_clip.SD1ClipModel(device="cpu", dtype=torch.float32)
    vae = comfy.taesd.taesd.TAESD()
    state: dict[str, torch.Tensor] = {}
    for module, keep, prefix, dtype in ((unet, "diffusion_model.", "model.diffusion_model.", torch.float16),
                                        (clip, "clip_l.transformer.", "cond_stage_model.transformer.", torch.float16),
                                        (vae, "", "first_stage_model.", torch.float32)):
        fill_weights(module, seed)
        seed += 1
        state.update({prefix + key[len(keep):]: value.to(dtype).contiguous()
                      for key, value in module.state_dict().items() if key.startswith(keep)})
    path.parent.mkdir(parents=True, exist_ok=True)
    safetensors.torch.save_file(state, str(path))
    return path


# ------------------------------------------------------------------------------------- the server
START_S, RUN_S = 180.0, 300.0


class Server:
    """A running ComfyUI server: its URL, base directory, log and process; ``checkpoint`` is the name of
    the tiny SD1.5 checkpoint in its ``models/checkpoints``."""

    checkpoint = CHECKPOINT

    def __init__(self, url: str, base: Path, log: Path, process: subprocess.Popen) -> None:
        self.url, self.base, self.log, self.process = url, base, log, process

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

    def queue(self, prompt: dict, extra_data: dict | None = None) -> str:
        """Queue an API-format ``prompt`` with ``POST /prompt``; returns its prompt id."""
        queued = self.post("/prompt", {"prompt": prompt, "client_id": "latent-ops-tests", "extra_data": extra_data or {}})
        assert not queued.get("node_errors"), queued
        return queued["prompt_id"]

    def wait(self, prompt_id: str, what: str) -> dict:
        """Wait until prompt ``prompt_id`` is done (in any way); returns its ``GET /history`` entry."""
        deadline = time.monotonic() + RUN_S
        while True:
            entry = self.get(f"/history/{prompt_id}").get(prompt_id)
            if entry is not None and entry.get("status", {}).get("completed") is not None:
                return entry
            assert self.process.poll() is None, f"ComfyUI died running {what}:\n{self.tail()}"
            assert time.monotonic() < deadline, f"{what}: not done within {RUN_S:.0f} s:\n{self.tail()}"
            time.sleep(0.05)

    def interrupt(self) -> None:
        """``POST /interrupt``: the Cancel button."""
        req = urllib.request.Request(self.url + "/interrupt", data=b"{}", headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            assert r.status == 200

    def run(self, prompt: dict, what: str, extra_data: dict | None = None) -> dict:
        """Queue an API-format ``prompt``, wait for it, require success and outputs; returns its
        ``GET /history`` entry."""
        entry = self.wait(self.queue(prompt, extra_data), what)
        status = entry["status"]
        errors = [m for m in status.get("messages", []) if m[0] == "execution_error"]
        assert status["status_str"] == "success" and status["completed"], f"{what}: {errors or status}"
        assert entry["outputs"], f"{what}: ran but produced no outputs"
        return entry

    def output_files(self, entry: dict, node_id: str, kind: str = "images") -> list[Path]:
        """The files node ``node_id`` wrote in a history ``entry`` (``kind``: ``images`` or ``latents``)."""
        items = entry["outputs"][node_id][kind]
        assert all(item["type"] == "output" for item in items), items
        return [self.base / "output" / item["subfolder"] / item["filename"] for item in items]


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


@pytest.fixture(scope="session")
def server(comfyui_dir: Path, extra_path: list[str], tmp_path_factory: pytest.TempPathFactory):
    """ComfyUI 0.3.64 serving on 127.0.0.1 with the plugin linked into ``custom_nodes/``, the example inputs
    in ``input/`` and :data:`CHECKPOINT` in ``models/checkpoints/`` (removed again afterwards)."""
    base = tmp_path_factory.mktemp("comfyui_base")
    (base / "custom_nodes").mkdir()
    (base / "custom_nodes" / "latent-ops").symlink_to(ROOT, target_is_directory=True)
    shutil.copytree(ROOT / "workflows" / "input", base / "input")
    checkpoint = base / "models" / "checkpoints" / CHECKPOINT
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    env["PYTHONPATH"] = os.pathsep.join([*extra_path, *filter(None, [os.environ.get("PYTHONPATH")])])
    port = _free_port()
    log = base / "server.log"
    cmd = [sys.executable, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port), "--base-directory",
           str(base), "--database-url", "sqlite:///:memory:", "--disable-auto-launch"]
    process = None
    try:
        write_tiny_sd15_checkpoint(checkpoint)
        with log.open("wb") as out:
            process = subprocess.Popen(cmd, cwd=comfyui_dir, stdout=out, stderr=subprocess.STDOUT, env=env)
        srv = Server(f"http://127.0.0.1:{port}", base, log, process)
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
        if process is not None:
            _stop(process)
        checkpoint.unlink(missing_ok=True)
