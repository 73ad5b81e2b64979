"""The ComfyUI-loader examples (``workflows/comfyui/``), written by ``scripts/make_workflows.py``.

ComfyUI's own Load Checkpoint, text encoder, sampler parts and VAE around the Latent Ops noise
nodes. They need the user's own SD1.5 (or SDXL) checkpoint, so the headless runner, which knows
only the embedded model, never runs them; ``tests/comfyui/test_loader_workflows.py`` runs them in
the real ComfyUI 0.3.64 with a tiny SD1.5-layout checkpoint.

ComfyUI's core nodes cannot be imported here, so their declarations come from
``comfyui_core_nodes.json``: the part of a ComfyUI 0.3.64 server's ``GET /object_info`` a UI file
depends on (input names, order, types, bounds and defaults; outputs), for the core nodes these
graphs use. Refresh it from a running server::

    curl -s http://127.0.0.1:8188/object_info > info.json
    python scripts/make_workflows.py --core-nodes info.json

(``tests/comfyui/test_loader_workflows.py`` compares it with the real server's answer.)
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

CORE_NODES_FILE = Path(__file__).resolve().with_name("comfyui_core_nodes.json")
CORE_NODES = ("CheckpointLoaderSimple", "CLIPTextEncode", "EmptyLatentImage", "VAEDecode", "SaveImage", "LatentBatch",
              "SamplerCustomAdvanced", "CFGGuider", "KSamplerSelect", "BasicScheduler")
"""The core nodes the examples use: exactly the entries of :data:`CORE_NODES_FILE`."""
KEPT_OPTIONS = ("default", "min", "max", "step", "round", "multiline", "control_after_generate", "forceInput",
                "image_upload", "options")
"""Input options a UI file depends on (widget kind, size, default, control widget); tooltips are dropped."""
FILE_COMBOS = {"CheckpointLoaderSimple": ("ckpt_name",)}
"""Combos that list the user's files: stored empty."""

CHECKPOINT = "v1-5-pruned-emaonly.safetensors"
"""The checkpoint the examples name: users pick their own in Load Checkpoint's list."""
POSITIVE = "a photograph of an astronaut riding a horse on the moon, detailed, sharp focus"
NEGATIVE = "blurry, low quality, watermark"
SIZE = 512  # SD1.5's resolution; 1024 for SDXL
ENSD = 31337  # the "eta noise seed delta" many A1111 set-ups use (A1111's default is 0)
STRENGTHS = (0.0, 0.25, 0.5, 0.75, 1.0)


# ------------------------------------------------------------------------------ core node stand-ins
def _slim(entry: list) -> list:
    """``[type, options]`` with only :data:`KEPT_OPTIONS` (``[type]`` when none is left)."""
    options = entry[1] if len(entry) > 1 and isinstance(entry[1], Mapping) else {}
    kept = {k: options[k] for k in KEPT_OPTIONS if k in options}
    return [entry[0], kept] if kept else [entry[0]]


def capture(object_info: Mapping[str, Any], names: tuple[str, ...] = CORE_NODES) -> dict[str, Any]:
    """The part of a ``GET /object_info`` answer that :data:`CORE_NODES_FILE` stores, for ``names``.

    Inputs keep the server's order (``input_order``); the combos of :data:`FILE_COMBOS` are emptied.
    """
    out: dict[str, Any] = {}
    for name in names:
        entry = object_info[name]
        inputs = {}
        for section, order in entry.get("input_order", {}).items():
            if section in ("required", "optional") and order:
                inputs[section] = {key: [[]] if key in FILE_COMBOS.get(name, ()) else _slim(entry["input"][section][key])
                                   for key in order}
        out[name] = {"display_name": entry.get("display_name") or name, "input": inputs,
                     "output": list(entry["output"]), "output_name": list(entry["output_name"]),
                     "output_node": bool(entry.get("output_node"))}
    return out


def store_core_nodes(object_info: Mapping[str, Any]) -> None:
    """Write :func:`capture` of ``object_info`` to :data:`CORE_NODES_FILE`."""
    CORE_NODES_FILE.write_text(json.dumps(capture(object_info), indent=1) + "\n", encoding="utf-8")


def core_nodes() -> dict[str, Any]:
    """The stored declarations (:data:`CORE_NODES_FILE`), by class type."""
    return json.loads(CORE_NODES_FILE.read_text(encoding="utf-8"))


def _stand_in(name: str, spec: Mapping[str, Any]) -> type:
    """A V1 node class with ``spec``'s declarations whose function refuses to run (it lives in ComfyUI)."""

    def run(self: object, **_: object) -> tuple:
        raise RuntimeError(f"{name} is a ComfyUI core node: run this graph in ComfyUI")

    return type(name, (), {
        "INPUT_TYPES": classmethod(lambda cls: spec["input"]), "RETURN_TYPES": tuple(spec["output"]),
        "RETURN_NAMES": tuple(spec["output_name"]), "OUTPUT_NODE": spec["output_node"], "FUNCTION": "run",
        "run": run, "CATEGORY": "comfyui",
    })


def core_registry() -> dict[str, type]:
    """Stand-in classes for :data:`CORE_NODES` (what ``api_to_ui``/``ui_to_api`` need to know of them)."""
    return {name: _stand_in(name, spec) for name, spec in core_nodes().items()}


def core_display_names() -> dict[str, str]:
    return {name: spec["display_name"] for name, spec in core_nodes().items()}


def with_core(registry: Mapping[str, type], names: Mapping[str, str]) -> tuple[dict[str, type], dict[str, str]]:
    """``registry`` and display ``names`` with the core-node stand-ins (replacing headless versions)."""
    return {**registry, **core_registry()}, {**names, **core_display_names()}


# ------------------------------------------------------------------------------------ the graphs
def _loaders(g: Any, batch_size: int) -> tuple[list, list, list, list, list]:  # noqa: ANN401 - a make_workflows.Graph
    """Load Checkpoint, the two prompts and an empty latent: (model, vae, positive, negative, latent)."""
    ckpt = g.add("CheckpointLoaderSimple", "Load Checkpoint", ckpt_name=CHECKPOINT)
    pos = [g.add("CLIPTextEncode", "Positive", text=POSITIVE, clip=[ckpt, 1]), 0]
    neg = [g.add("CLIPTextEncode", "Negative", text=NEGATIVE, clip=[ckpt, 1]), 0]
    empty = [g.add("EmptyLatentImage", "Empty Latent", width=SIZE, height=SIZE, batch_size=batch_size), 0]
    return [ckpt, 0], [ckpt, 2], pos, neg, empty


def ksampler(g: Any, title: str, model: list, pos: list, neg: list, latent: list, **settings: Any) -> list:  # noqa: ANN401
    """A "KSampler (Latent Ops noise)" node; ``settings`` override its example defaults."""
    inputs = {"seed": 42, "steps": 20, "cfg": 7.0, "sampler_name": "euler_ancestral", "scheduler": "normal",
              "denoise": 1.0, "noise_convention": "comfy", "subseed": 0, "subseed_strength": 0.0,
              "noise_type": "gaussian", "variations": "", "ensd": 0, **settings}
    return [g.add("LatentOpsComfyKSampler", title, model=model, positive=pos, negative=neg, latent_image=latent,
                  **inputs), 0]


def _decode_save(g: Any, latent: list, vae: list, prefix: str) -> None:  # noqa: ANN401
    images = g.add("VAEDecode", "VAE Decode", samples=latent, vae=vae)
    g.add("SaveImage", "Save Image", images=[images, 0], filename_prefix=prefix)


def txt2img(g: Any) -> None:  # noqa: ANN401
    """Load Checkpoint → prompts → KSampler (Latent Ops noise), A1111's CPU noise and euler_ancestral: a batch
    of 4 whose image k is seed 42 + k alone (with ``comfy`` and a deterministic sampler: the core KSampler)."""
    model, vae, pos, neg, empty = _loaders(g, 4)
    sampled = ksampler(g, "Sampler", model, pos, neg, empty, noise_convention="a1111")
    _decode_save(g, sampled, vae, "latent_ops/comfyui_txt2img")


def custom_sampler(g: Any) -> None:  # noqa: ANN401
    """SamplerCustomAdvanced with Latent Ops NOISE (``comfy``: the core RandomNoise's) and KSamplerSelect's
    dpmpp_2m_sde made per-image by Sampler Step Noise (a Brownian tree per image), karras schedule."""
    model, vae, pos, neg, empty = _loaders(g, 4)
    noise = g.add("LatentOpsRandomNoise", "Noise", noise_seed=42, noise_convention="comfy", noise_type="gaussian",
                  subseed=0, subseed_strength=0.0, variations="")
    guider = g.add("CFGGuider", "Guider", model=model, positive=pos, negative=neg, cfg=7.0)
    select = g.add("KSamplerSelect", "Sampler Select", sampler_name="dpmpp_2m_sde")
    sampler = g.add("LatentOpsSamplerStepNoise", "Step Noise", sampler=[select, 0], sampler_name="dpmpp_2m_sde",
                    noise_convention="comfy", subseed=0, subseed_strength=0.0, variations="", ensd=0)
    sigmas = g.add("BasicScheduler", "Scheduler", model=model, scheduler="karras", steps=20, denoise=1.0)
    out = g.add("SamplerCustomAdvanced", "Sampler", noise=[noise, 0], guider=[guider, 0], sampler=[sampler, 0],
                sigmas=[sigmas, 0], latent_image=empty)
    _decode_save(g, [out, 0], vae, "latent_ops/comfyui_custom_sampler")


def a1111_variations(g: Any) -> None:  # noqa: ANN401
    """A1111's convention (CPU noise, ENSD 31337, euler_ancestral) and a variation-seed sweep, subseed 7."""
    model, vae, pos, neg, empty = _loaders(g, 1)
    rows = [ksampler(g, f"Variation {s:g}", model, pos, neg, empty, noise_convention="a1111", ensd=ENSD,
                     subseed=7, subseed_strength=s) for s in STRENGTHS]
    images = [g.add("VAEDecode", "VAE Decode", samples=g.batch(*rows), vae=vae), 0]
    g.grid_save(images, "latent_ops/comfyui_a1111_variations", columns=len(STRENGTHS), scale=1,
                labels=",".join(f"subseed strength {s:g}" for s in STRENGTHS))


WORKFLOWS: dict[str, Callable[[Any], None]] = {
    "txt2img": txt2img,
    "custom_sampler": custom_sampler,
    "a1111_variations": a1111_variations,
}
"""``workflows/comfyui/<name>.json``, by name."""


def build(graph: Callable[[str, str], Any]) -> dict[str, dict[str, Any]]:
    """Every example as an API-format prompt, by name; ``graph`` is ``make_workflows.Graph``."""
    out = {}
    for name, make in WORKFLOWS.items():
        g = graph(CHECKPOINT, "")
        make(g)
        out[name] = g.prompt
    return out
