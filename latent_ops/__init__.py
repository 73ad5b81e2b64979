"""Latent Ops: latent-space operations for image generative models (torch only, no ComfyUI).

One package per subject, a few cross-cutting modules at the top (see ``docs/architecture.md``)::

    interp, walk, traverse        interpolation, keyframe walks, traversal sweeps
    latent_format, latents        model latent formats; LATENT dict helpers
    seeds, errors, progress, deps seed rules, the error base class, progress hooks, optional deps
    limits                        bounds on user-sized work, checked before it starts
    noise/     sampling/          seeded noise; samplers, schedules, the sampling loop
    vae/       checkpoints/       VAEs; diffusion checkpoints and text encoders
    weights/   media/   space/    files of weights; files of pictures; the latent space map
    embedded/  workflow/          the embedded default model; the headless workflow engine and CLI

Submodules are imported on use (``from latent_ops import interp``); importing the package itself
is cheap and never imports diffusers or transformers. Module names from before the subject
packages (``latent_ops.schedules``, ``latent_ops.files``, ...) still resolve through
:data:`MOVED` for ``from latent_ops import <name>``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__version__ = "0.1.0"

MOVED: dict[str, str] = {
    "animation": "media.animation", "cli": "workflow.cli", "cluster": "space.cluster",
    "denoisers": "sampling.denoisers", "diffusion": "sampling.diffusion", "files": "media.files",
    "images": "media.images", "ldm_convert": "weights.ldm_convert", "model_files": "weights.files",
    "model_paths": "weights.folders", "models": "vae.loading", "neighbors": "space.neighbors",
    "noise_types": "noise.types", "noising": "sampling.noising", "pca": "space.pca", "philox": "noise.philox",
    "schedules": "sampling.schedules", "space_map": "space.plot", "step_noise": "noise.step",
    "text_encoders": "checkpoints.text_encoders", "vae_any": "vae.generic", "vae_families": "vae.families",
    "vae_stream": "vae.stream", "vae_tiling": "vae.tiling", "variation": "noise.variation",
}  # fmt: skip
"""Old flat module name -> its home in a subject package (``from latent_ops import files`` keeps working)."""


def __getattr__(name: str) -> ModuleType:
    """Resolve an old flat module name to its module in the subject packages (PEP 562)."""
    if name in MOVED:
        return importlib.import_module(f"{__name__}.{MOVED[name]}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
