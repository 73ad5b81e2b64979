"""The ComfyUI-loader examples (``workflows/comfyui/``) in the real ComfyUI 0.3.64, with a checkpoint file.

The server (conftest.py) holds a tiny SD1.5-layout single-file checkpoint in ``models/checkpoints``
(seeded random weights; ComfyUI's own model detection loads it as SD15, with its CLIP-L and VAE).
Each example, its checkpoint swapped for that one and shrunk to 64 x 64 and 4 steps, goes through
``POST /prompt``; then the issue's "done when", compared on the files ComfyUI saves (SaveLatent
added after the sampler, SaveImage's PNGs):

- Load Checkpoint -> KSampler (Latent Ops noise) -> VAE Decode with ``comfy`` + ``euler`` equals
  the same graph with the core KSampler (latents within 1e-6, identical PNGs);
- with ``a1111`` + ``euler_ancestral`` image k of a batch equals seed + k run alone;
- SamplerCustomAdvanced with our NOISE and step-noise SAMPLER equals KSampler (Latent Ops noise)
  for the same seed and sampler (ancestral and SDE);
- the core-node declarations the example files were written from are the server's.

That our a1111 + ancestral step noise is A1111's algorithm is test_parity.py's subject.
"""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING

import latent_ops_nodes
import numpy as np
import pytest
import safetensors.torch
import torch
from PIL import Image

from latent_ops import workflow

if TYPE_CHECKING:
    from conftest import Server

ROOT = Path(__file__).resolve().parents[2]
COMFYUI_DIR = ROOT / "workflows" / "comfyui"
EXAMPLES = sorted(p.stem for p in COMFYUI_DIR.glob("*.json"))
SIZE, STEPS = 64, 4
KSAMPLER_INPUTS = ("model", "seed", "steps", "cfg", "sampler_name", "scheduler", "positive", "negative",
                   "latent_image", "denoise")

_spec = importlib.util.spec_from_file_location("make_workflows", ROOT / "scripts" / "make_workflows.py")
maker = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(maker)
REGISTRY = maker.comfyui.with_core(latent_ops_nodes.headless_registry(), {})[0]


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def example(name: str, checkpoint: str) -> dict:
    """``workflows/comfyui/<name>.json`` as an API prompt on ``checkpoint``, at 64 x 64 and 4 steps."""
    prompt = copy.deepcopy(workflow.load(COMFYUI_DIR / f"{name}.json", REGISTRY).prompt)
    for spec in prompt.values():
        inputs = spec["inputs"]
        if spec["class_type"] == "CheckpointLoaderSimple":
            inputs["ckpt_name"] = checkpoint
        if spec["class_type"] == "EmptyLatentImage":
            inputs.update(width=SIZE, height=SIZE)
        if "steps" in inputs:
            inputs["steps"] = STEPS
    return prompt


def node(prompt: dict, title: str) -> str:
    """The id of the one node titled ``title`` or, for the one SaveImage, ``"SaveImage"``."""
    ids = [nid for nid, spec in prompt.items()
           if title in ((spec.get("_meta") or {}).get("title"), "SaveImage" if spec["class_type"] == "SaveImage" else None)]
    assert len(ids) == 1, (title, ids)
    return ids[0]


def set_inputs(prompt: dict, title: str, **inputs: object) -> dict:
    prompt[node(prompt, title)]["inputs"].update(inputs)
    return prompt


def run(server: Server, prompt: dict, what: str, latent_of: str) -> tuple[torch.Tensor, np.ndarray]:
    """Run ``prompt`` with a SaveLatent after node ``latent_of``: (saved latent, saved images [B, H, W, 3])."""
    prompt = copy.deepcopy(prompt)
    saver = str(max(int(n) for n in prompt) + 1)
    prompt[saver] = {"class_type": "SaveLatent", "inputs": {"samples": [node(prompt, latent_of), 0],
                                                             "filename_prefix": f"latent_ops_tests/{what}"}}
    set_inputs(prompt, "SaveImage", filename_prefix=f"latent_ops_tests/{what}")
    entry = server.run(prompt, what)
    (latent_file,) = server.output_files(entry, saver, "latents")
    latent = safetensors.torch.load_file(str(latent_file))["latent_tensor"]
    images = [np.asarray(Image.open(p).convert("RGB")) for p in server.output_files(entry, node(prompt, "SaveImage"))]
    return latent, np.stack(images)


def test_core_node_declarations_are_the_servers(server: Server) -> None:
    """scripts/comfyui_core_nodes.json (what the example files were written from) is what this ComfyUI declares."""
    assert maker.comfyui.capture(server.get("/object_info")) == maker.comfyui.core_nodes()


@pytest.mark.parametrize("name", EXAMPLES)
def test_loader_example_runs(server: Server, name: str) -> None:
    """The example runs on a real checkpoint file loaded by ComfyUI's own detection (SD15, no missing weights)."""
    prompt = example(name, server.checkpoint)
    entry = server.run(prompt, f"comfyui/{name}.json")
    images = [np.asarray(Image.open(p)) for p in server.output_files(entry, node(prompt, "SaveImage"))]
    assert images and all(im.std() > 1 for im in images), f"{name}: blank images"
    if name != "a1111_variations":  # the variations example saves one labelled grid
        batch = prompt[node(prompt, "Empty Latent")]["inputs"]["batch_size"]
        assert [im.shape for im in images] == [(SIZE, SIZE, 3)] * batch
    log = server.log.read_text(errors="replace")  # loaded as SD1.5: EPS UNet, SD1 CLIP, the checkpoint's (TAESD) VAE
    for line in ("model_type EPS", "Requested to load SD1ClipModel", "Requested to load TAESD"):
        assert line in log, f"{line!r} not logged:\n{server.tail()}"
    missing = ("unet missing:", "clip missing:", "Missing VAE keys")  # what ComfyUI warns for weights not in the file
    assert not [line for line in log.splitlines() if any(m in line for m in missing)], server.tail()


def test_comfy_euler_equals_core_ksampler(server: Server) -> None:
    """Done when: Load Checkpoint -> our sampler -> VAE Decode, comfy + euler, equals the core KSampler."""
    ours = set_inputs(example("txt2img", server.checkpoint), "Sampler", seed=5, sampler_name="euler",
                      scheduler="normal", noise_convention="comfy")
    set_inputs(ours, "Empty Latent", batch_size=2)
    core = copy.deepcopy(ours)
    sid = node(core, "Sampler")
    core[sid] = {"class_type": "KSampler", "inputs": {k: ours[sid]["inputs"][k] for k in KSAMPLER_INPUTS},
                 "_meta": {"title": "Sampler"}}
    latent, images = run(server, ours, "ours_euler", "Sampler")
    want, want_images = run(server, core, "core_euler", "Sampler")
    assert latent.shape == (2, 4, SIZE // 8, SIZE // 8)
    assert rel(latent, want) <= 1e-6
    assert np.array_equal(images, want_images)
    assert rel(latent[0], latent[1]) > 1e-2  # seed 5 and 6 differ: the comparison is not vacuous


def test_a1111_ancestral_image_k_equals_seed_k_alone(server: Server) -> None:
    """Done when: with a1111 + euler_ancestral, image k of a batch of 2 equals seed + k with batch_size 1."""
    prompt = set_inputs(example("txt2img", server.checkpoint), "Sampler", sampler_name="euler_ancestral",
                        scheduler="normal", noise_convention="a1111", ensd=0)
    batch, batch_images = run(server, set_inputs(set_inputs(copy.deepcopy(prompt), "Sampler", seed=100),
                                                 "Empty Latent", batch_size=2), "a1111_batch", "Sampler")
    assert batch.shape[0] == 2 and rel(batch[0], batch[1]) > 1e-2
    for k in range(2):
        alone, alone_images = run(server, set_inputs(set_inputs(copy.deepcopy(prompt), "Sampler", seed=100 + k),
                                                     "Empty Latent", batch_size=1), f"a1111_seed{100 + k}", "Sampler")
        assert rel(batch[k:k + 1], alone) <= 1e-5, k
        assert np.abs(batch_images[k].astype(int) - alone_images[0].astype(int)).max() <= 1, k


@pytest.mark.parametrize(("sampler", "scheduler"), [("euler_ancestral", "normal"), ("dpmpp_2m_sde", "karras")])
def test_custom_sampler_graph_equals_ksampler_graph(server: Server, sampler: str, scheduler: str) -> None:
    """SamplerCustomAdvanced + our NOISE + our step-noise SAMPLER gives KSampler (Latent Ops noise)'s latents."""
    custom = example("custom_sampler", server.checkpoint)
    set_inputs(custom, "Noise", noise_seed=9)
    set_inputs(custom, "Sampler Select", sampler_name=sampler)
    set_inputs(custom, "Step Noise", sampler_name=sampler)
    set_inputs(custom, "Scheduler", scheduler=scheduler)
    set_inputs(custom, "Empty Latent", batch_size=2)
    cfg = custom[node(custom, "Guider")]["inputs"]["cfg"]
    plain = set_inputs(example("txt2img", server.checkpoint), "Sampler", seed=9, sampler_name=sampler,
                       scheduler=scheduler, cfg=cfg, noise_convention="comfy")
    set_inputs(plain, "Empty Latent", batch_size=2)
    got, _ = run(server, custom, f"custom_{sampler}", "Sampler")
    want, _ = run(server, plain, f"ksampler_{sampler}", "Sampler")
    assert rel(got, want) <= 1e-6
    assert rel(got[0], got[1]) > 1e-2
