"""Diffusion checkpoints: diffusers folders, single files (SD1.x, SD2.x, SDXL) and the embedded default.

- :mod:`.loading`: :func:`load_checkpoint` and the checkpoint picker (the public names below).
- :mod:`.text_encoders`: CLIP text encoders and the UNet backbone adapter.
"""

from .loading import (
    CHECKPOINT_EXTENSIONS,
    CONFIG_DIR,
    DEFAULT_NAME,
    EMBEDDED_DIR,
    CheckpointError,
    checkpoint_choices,
    detect_family,
    embedded_available,
    load_checkpoint,
    load_diffusers_folder,
    load_single_file,
    resolve_checkpoint,
    sampling_from_config,
)

__all__ = [
    "CHECKPOINT_EXTENSIONS", "CONFIG_DIR", "DEFAULT_NAME", "EMBEDDED_DIR", "CheckpointError", "checkpoint_choices",
    "detect_family", "embedded_available", "load_checkpoint", "load_diffusers_folder", "load_single_file",
    "resolve_checkpoint", "sampling_from_config",
]
