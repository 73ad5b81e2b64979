"""ComfyUI-only niceties behind one small seam: progress bars, Cancel and model folders.

ComfyUI is imported lazily and only here. Without ComfyUI (the headless runner, scripts, tests)
every function falls back to :mod:`latent_ops.progress`, whose hooks the headless engine sets.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import importlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from ._library import devices, files, model_paths, per_image, progress, schedules
from ._library import samplers as sampling_registry

F = TypeVar("F", bound=Callable[..., Any])


def _comfy(module: str):  # noqa: ANN202 - returns a module or None
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


def comfy_progress() -> Callable[[int, int], None] | None:
    """A :mod:`latent_ops.progress` hook for one node call inside ComfyUI, else ``None``.

    Every call (a library ``report`` or ``check``) raises ComfyUI's
    ``InterruptProcessingException`` once the user pressed Cancel; a new position also moves the
    node's ``comfy.utils.ProgressBar`` (made on the first report, so nodes that never report
    draw no bar, and ``check`` calls, which repeat the last position, send no message).
    """
    utils, mm = _comfy("comfy.utils"), _comfy("comfy.model_management")
    if utils is None or mm is None or not hasattr(mm, "throw_exception_if_processing_interrupted"):
        return None
    bar: list = []
    last = [(0, 1)]

    def hook(done: int, total: int) -> None:
        mm.throw_exception_if_processing_interrupted()
        if (done, total) == last[0]:
            return
        last[0] = (done, total)
        if not bar:
            bar.append(utils.ProgressBar(total))
        bar[0].update_absolute(done, total)

    return hook


def interruptible(method: F) -> F:
    """Decorate a node's ``FUNCTION``: inside ComfyUI the call runs with :func:`comfy_progress`
    installed, so the library's progress reports and interrupt points (``progress.report`` /
    ``progress.check``) drive ComfyUI's bar and obey its Cancel. Headless the engine's hook is
    already installed and is kept; without either the call is unchanged."""

    @functools.wraps(method)
    def call(*args: Any, **kwargs: Any) -> Any:  # noqa: ANN401
        hook = None if progress.hooked() else comfy_progress()
        if hook is None:
            return method(*args, **kwargs)
        with progress.reporting(hook):
            return method(*args, **kwargs)

    call.interruptible = True  # type: ignore[attr-defined] - checked by the node tests
    return call  # type: ignore[return-value]


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
    """ComfyUI's device for node outputs (CPU unless --gpu-only); headless
    :func:`latent_ops.devices.intermediate_device` (the CPU)."""
    mm = _comfy("comfy.model_management")
    if mm is not None and hasattr(mm, "intermediate_device"):
        return mm.intermediate_device()
    return devices.intermediate_device()


def compute_device():  # noqa: ANN201 - torch.device
    """ComfyUI's torch device for heavy work; headless :func:`latent_ops.devices.compute_device`
    (``--device``, ``$LATENT_OPS_DEVICE``, else a GPU when present)."""
    mm = _comfy("comfy.model_management")
    if mm is not None and hasattr(mm, "get_torch_device"):
        return mm.get_torch_device()
    return devices.compute_device()


def compute_dtype():  # noqa: ANN201 - torch.dtype
    """Precision of the networks a loader builds: ComfyUI's ``unet_dtype`` for its device inside
    ComfyUI; headless :func:`latent_ops.devices.compute_dtype` (``--dtype``, ``$LATENT_OPS_DTYPE``,
    else half precision on a GPU and float32 on the CPU)."""
    mm = _comfy("comfy.model_management")
    if mm is not None and hasattr(mm, "unet_dtype") and hasattr(mm, "get_torch_device"):
        return mm.unet_dtype(device=mm.get_torch_device())
    return devices.compute_dtype()


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


# --- Sampling with ComfyUI's own MODEL (used by nodes/comfy_sampling.py) -------------------------


def _require(module: str, node: str):  # noqa: ANN202 - returns a module
    """ComfyUI module ``module``, or a clear error naming ``node`` when ComfyUI is not running."""
    found = _comfy(module)
    if found is None:
        raise RuntimeError(
            f"{node}: needs ComfyUI ({module} is not importable); it samples ComfyUI's MODEL and runs only "
            "inside ComfyUI. Headless, use LatentOpsSampler with LatentOpsCheckpointLoader."
        )
    return found


def sampler_names() -> list[str]:
    """ComfyUI's sampler names (``comfy.samplers.KSampler.SAMPLERS``); ours outside ComfyUI."""
    samplers = _comfy("comfy.samplers")
    if samplers is not None and hasattr(samplers, "KSampler"):
        return list(samplers.KSampler.SAMPLERS)
    return list(sampling_registry.SAMPLER_NAMES)


def scheduler_names() -> list[str]:
    """ComfyUI's scheduler names (``comfy.samplers.KSampler.SCHEDULERS``); ours outside ComfyUI."""
    samplers = _comfy("comfy.samplers")
    if samplers is not None and hasattr(samplers, "KSampler"):
        return list(samplers.KSampler.SCHEDULERS)
    return list(schedules.SCHEDULER_NAMES)


def sampler_object(name: str, node: str):  # noqa: ANN201 - a comfy.samplers.KSAMPLER
    """ComfyUI's SAMPLER for ``name`` (``comfy.samplers.sampler_object``: ddim keeps its inpaint options)."""
    samplers = _require("comfy.samplers", node)
    if name not in samplers.KSampler.SAMPLERS:
        raise ValueError(f"{node}: unknown sampler_name {name!r}; known: {list(samplers.KSampler.SAMPLERS)}")
    return samplers.sampler_object(name)


def with_step_noise(sampler: object, options: object, node: str, batch_index: list | None = None):  # noqa: ANN201
    """A copy of ComfyUI SAMPLER ``sampler`` whose step noise is per-image (``per_image.with_step_noise``).

    The copy keeps the sampler's class, ``extra_options`` and ``inpaint_options``; only its
    ``sampler_function`` is wrapped (and only if that function takes a ``noise_sampler``).
    """
    fn = getattr(sampler, "sampler_function", None)
    if not callable(fn):
        raise ValueError(
            f"{node}: sampler {type(sampler).__name__} has no sampler_function; only k-diffusion SAMPLERs "
            "(comfy.samplers.KSAMPLER, e.g. from KSamplerSelect) can take per-image step noise"
        )
    out = copy.copy(sampler)
    out.sampler_function = per_image.with_step_noise(fn, options, batch_index=batch_index)
    return out


def ksample(model: object, latent: dict, positive: list, negative: list, *, noise: object, steps: int, cfg: float,
            sampler_name: str, scheduler: str, denoise: float, add_noise: bool = True, start_step: int | None = None,
            end_step: int | None = None, force_full_denoise: bool = True, node: str = "KSampler") -> dict:
    """ComfyUI's KSampler / KSamplerAdvanced with our initial noise and per-image step noise.

    Follows ``nodes.common_ksampler``: empty latents get the model's channels, ``noise_mask``
    inpaints, the sigmas are ``comfy.samplers.KSampler``'s (``denoise``, discarded penultimate
    sigma) cut to ``[start_step, end_step)``, previews and interrupts go through
    ``latent_preview.prepare_callback``. ``noise`` is a NOISE (``seed``, ``generate_noise``,
    ``options``: a :class:`latent_ops.noise.sources.SeededNoise`); its seed reaches the sampler as
    ``extra_args["seed"]``. Returns a copy of ``latent`` with new ``samples``.
    """
    comfy_sample = _require("comfy.sample", node)
    samplers, utils = _require("comfy.samplers", node), _require("comfy.utils", node)
    latent_preview = _require("latent_preview", node)
    if scheduler not in samplers.KSampler.SCHEDULERS:
        raise ValueError(f"{node}: unknown scheduler {scheduler!r}; known: {list(samplers.KSampler.SCHEDULERS)}")
    sampler = sampler_object(sampler_name, node)
    samples = comfy_sample.fix_empty_latent_channels(model, latent["samples"])
    out = latent.copy()
    sigmas = samplers.KSampler(model, steps=steps, device=model.load_device, sampler=sampler_name,
                               scheduler=scheduler, denoise=denoise, model_options=model.model_options).sigmas
    sigmas = schedules.step_window(sigmas, start_step=start_step, end_step=end_step,
                                   force_full_denoise=force_full_denoise)
    if len(sigmas) <= 1:  # KSampler returns the latent unchanged when there is no step to run
        out["samples"] = samples
        return out
    fixed = {**latent, "samples": samples}
    if add_noise:
        init = noise.generate_noise(fixed)
    else:
        import torch

        init = torch.zeros(samples.shape, dtype=samples.dtype, layout=samples.layout, device="cpu")
    sampler = with_step_noise(sampler, noise.options, node, batch_index=latent.get("batch_index"))
    callback = latent_preview.prepare_callback(model, steps)
    out["samples"] = comfy_sample.sample_custom(
        model, init, cfg, sampler, sigmas, positive, negative, samples, noise_mask=latent.get("noise_mask"),
        callback=callback, disable_pbar=not utils.PROGRESS_BAR_ENABLED, seed=noise.seed)
    return out
