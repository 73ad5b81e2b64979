"""ComfyUI-only niceties behind one small seam: progress bars, interrupts and model folders.

ComfyUI is imported lazily and only here. Without ComfyUI (the headless runner, scripts, tests)
every function falls back to :mod:`latent_ops.progress`, whose hooks the headless engine sets.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable, Iterator
from pathlib import Path

from ._library import files, model_paths, progress


def _comfy(module: str):  # noqa: ANN202 - returns a module or None
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


def progress_callback(total: int) -> Callable[[int, int], None]:
    """Return ``report(done, total)`` for a loop of ``total`` steps.

    Inside ComfyUI it drives ``comfy.utils.ProgressBar`` (whose hook also raises on /interrupt);
    headless it forwards to :func:`latent_ops.progress.report`, which the engine hooks up.
    """
    utils = _comfy("comfy.utils")
    if utils is None or not hasattr(utils, "ProgressBar"):
        return progress.report
    bar = utils.ProgressBar(total)
    mm = _comfy("comfy.model_management")

    def report(done: int, total_: int) -> None:
        if mm is not None:
            mm.throw_exception_if_processing_interrupted()
        bar.update_absolute(done, total_)

    return report


def model_folders(kind: str) -> list[Path]:
    """Folders that hold models of ``kind`` ("vae", "checkpoints", "vae_approx", ...).

    Inside ComfyUI this is ``folder_paths.get_folder_paths(kind)``; headless it is
    :func:`latent_ops.weights.folders.folders` (``--models-dir``, ``LATENT_OPS_MODELS``,
    ``extra_model_paths.yaml``).
    """
    folder_paths = _comfy("folder_paths")
    if folder_paths is not None and hasattr(folder_paths, "get_folder_paths"):
        return [Path(p) for p in folder_paths.get_folder_paths(kind)]
    return model_paths.folders(kind)


def intermediate_device():  # noqa: ANN201 - torch.device
    """ComfyUI's device for node outputs (CPU unless --gpu-only); CPU headless."""
    mm = _comfy("comfy.model_management")
    if mm is not None and hasattr(mm, "intermediate_device"):
        return mm.intermediate_device()
    import torch

    return torch.device("cpu")


def compute_device():  # noqa: ANN201 - torch.device
    """ComfyUI's torch device for heavy work; CPU headless."""
    mm = _comfy("comfy.model_management")
    if mm is not None and hasattr(mm, "get_torch_device"):
        return mm.get_torch_device()
    import torch

    return torch.device("cpu")


@contextlib.contextmanager
def comfy_folders() -> Iterator[None]:
    """Inside ComfyUI, point :mod:`latent_ops.media.files` at ComfyUI's input/output/temp folders.

    Headless the engine has already configured the folders, so this changes nothing.
    """
    folder_paths = _comfy("folder_paths")
    if folder_paths is None or not hasattr(folder_paths, "get_output_directory"):
        yield
        return
    with files.using(
        input_dir=folder_paths.get_input_directory(),
        output_dir=folder_paths.get_output_directory(),
        temp_dir=folder_paths.get_temp_directory(),
    ):
        yield
