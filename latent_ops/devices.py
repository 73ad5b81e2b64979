"""Where the networks run and in which precision: the one home of the device and dtype choice.

A user names a device (``"auto" | "cpu" | "cuda" | "cuda:N" | "mps"``) and a dtype
(``"auto" | "fp32" | "fp16" | "bf16"``); this module turns the names into a ``torch.device`` and a
``torch.dtype`` and refuses, in one line, a device this machine does not have. The choice comes
from, first to last: a :func:`using` block (the headless runner's ``--device``/``--dtype``), the
environment variables :data:`DEVICE_ENV` / :data:`DTYPE_ENV`, then ``"auto"``. ``"auto"`` is a GPU
when one is present (CUDA, else Apple's MPS) with a safe half precision (bfloat16 on CUDA GPUs of
compute capability 8.0 or later, float16 on older ones and on MPS; the VAE recomputes a non-finite
half-precision chunk in float32), and the CPU in float32 otherwise.

:func:`compute_device` is where weights go; :func:`intermediate_device` (the CPU, as in ComfyUI
without ``--gpu-only``) is where IMAGE and LATENT outputs live between nodes. Noise is drawn on the
CPU whatever the device, so a seed means the same image everywhere. The choice lives in context
variables, like :mod:`latent_ops.progress`: nothing global is mutated and threads stay separate.
Inside ComfyUI the nodes ask ComfyUI's model management instead (``nodes/comfy_adapter.py``).
"""

from __future__ import annotations

import argparse
import contextlib
import contextvars
import os
from collections.abc import Iterator

import torch

from .errors import LatentOpsError

DEVICE_ENV = "LATENT_OPS_DEVICE"
"""Environment variable naming the default device (``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``)."""
DTYPE_ENV = "LATENT_OPS_DTYPE"
"""Environment variable naming the default dtype (``auto``, ``fp32``, ``fp16``, ``bf16``)."""

DEVICE_CHOICES = ("auto", "cpu", "cuda", "cuda:N", "mps")
"""What a user may name as a device (``cuda:N`` = the N-th CUDA device)."""
DTYPES: dict[str, torch.dtype | None] = {
    "auto": None, "fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16,
}  # fmt: skip
"""Dtype names a user may give -> ``torch.dtype`` (``auto``: chosen from the device)."""
_ALIASES = {"float32": "fp32", "float16": "fp16", "half": "fp16", "bfloat16": "bf16"}

_device: contextvars.ContextVar[str | torch.device | None] = contextvars.ContextVar("latent_ops_device", default=None)
_dtype: contextvars.ContextVar[str | torch.dtype | None] = contextvars.ContextVar("latent_ops_dtype", default=None)


class DeviceError(LatentOpsError):
    """A device or dtype name that is unknown, or a device this machine does not have."""


def _cuda_problem(index: int | None) -> str | None:
    """Why ``cuda[:index]`` cannot be used here, or None when it can."""
    if not torch.backends.cuda.is_built():
        return f"this torch {torch.__version__} is built without CUDA"
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        return "no CUDA GPU is visible (check the driver and CUDA_VISIBLE_DEVICES)"
    if index is not None and index >= count:
        return f"only {count} CUDA device(s) here (cuda:0..cuda:{count - 1})"
    return None


def resolve_device(spec: str | torch.device | None = "auto", *, source: str = "device") -> torch.device:
    """The ``torch.device`` a device name means on this machine.

    Args:
        spec: ``"auto"`` (or None), ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"``, or a
            ``torch.device`` (CUDA and MPS ones are checked; others, e.g. ``meta``, pass as they are).
        source: what named it, for the message (``"--device"``, ``"LATENT_OPS_DEVICE"``).

    Raises:
        DeviceError: an unknown name, or a device this machine does not have (one line, naming
            ``source``, the value and the reason).
    """
    if spec is None or (isinstance(spec, str) and spec.strip().lower() == "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        mps = getattr(torch.backends, "mps", None)
        return torch.device("mps") if mps is not None and mps.is_available() else torch.device("cpu")
    if isinstance(spec, str):
        text = spec.strip().lower()
        try:
            dev = torch.device(text)
        except RuntimeError:
            dev = None
        if dev is None or dev.type not in ("cpu", "cuda", "mps") or (dev.type != "cuda" and dev.index not in (None, 0)):
            raise DeviceError(f"{source} {spec!r}: unknown device; expected one of {', '.join(DEVICE_CHOICES)}")
    elif isinstance(spec, torch.device):
        dev = spec
    else:
        raise DeviceError(f"{source}: expected a device name or torch.device, got {type(spec).__name__}")
    if dev.type == "cuda" and (why := _cuda_problem(dev.index)) is not None:
        raise DeviceError(f"{source} {str(spec)!r} is not available: {why}; use cpu or auto")
    if dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise DeviceError(f"{source} {str(spec)!r} is not available: this machine has no usable Apple MPS "
                              "device; use cpu or auto")
    return dev


def auto_dtype(device: torch.device) -> torch.dtype:
    """The safe default precision on ``device``: bfloat16 on CUDA GPUs of compute capability 8.0+
    (Ampere and later), float16 on older CUDA GPUs and on MPS, float32 elsewhere (CPU, meta)."""
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.get_device_capability(device)[0] >= 8 else torch.float16
    return torch.float16 if device.type == "mps" else torch.float32


def resolve_dtype(spec: str | torch.dtype | None, device: torch.device, *, source: str = "dtype") -> torch.dtype:
    """The ``torch.dtype`` a dtype name means on ``device`` (``"auto"``/None: :func:`auto_dtype`).

    Raises:
        DeviceError: a name that is not one of :data:`DTYPES` (or float32/float16/bfloat16/half),
            or a ``torch.dtype`` other than float32, float16 and bfloat16.
    """
    if isinstance(spec, torch.dtype):
        if spec not in (torch.float32, torch.float16, torch.bfloat16):
            raise DeviceError(f"{source}: {spec} is not supported; expected float32, float16 or bfloat16")
        return spec
    if spec is not None and not isinstance(spec, str):
        raise DeviceError(f"{source}: expected a dtype name or torch.dtype, got {type(spec).__name__}")
    name = "auto" if spec is None else _ALIASES.get(spec.strip().lower(), spec.strip().lower())
    if name not in DTYPES:
        raise DeviceError(f"{source} {spec!r}: unknown dtype; expected one of {', '.join(DTYPES)}")
    chosen = DTYPES[name]
    return auto_dtype(device) if chosen is None else chosen


def _device_choice() -> tuple[str | torch.device | None, str]:
    chosen = _device.get()
    if chosen is not None:
        return chosen, "device"
    env = os.environ.get(DEVICE_ENV, "").strip()
    return (env, DEVICE_ENV) if env else ("auto", "device")


def compute_device() -> torch.device:
    """Where networks run now: the :func:`using` choice, else ``$LATENT_OPS_DEVICE``, else ``"auto"``.

    Raises:
        DeviceError: the chosen device is unknown or not available here.
    """
    spec, source = _device_choice()
    return resolve_device(spec, source=source)


def compute_dtype(device: torch.device | None = None) -> torch.dtype:
    """Precision of the networks on ``device`` (default :func:`compute_device`): the :func:`using`
    choice, else ``$LATENT_OPS_DTYPE``, else ``"auto"`` (:func:`auto_dtype`).

    Raises:
        DeviceError: an unknown dtype name (or an unavailable device when ``device`` is None).
    """
    dev = compute_device() if device is None else device
    chosen = _dtype.get()
    if chosen is not None:
        return resolve_dtype(chosen, dev)
    env = os.environ.get(DTYPE_ENV, "").strip()
    return resolve_dtype(env, dev, source=DTYPE_ENV) if env else auto_dtype(dev)


def intermediate_device() -> torch.device:
    """Where IMAGE/LATENT outputs live between nodes: the CPU (ComfyUI's default)."""
    return torch.device("cpu")


@contextlib.contextmanager
def using(device: str | torch.device | None = None, dtype: str | torch.dtype | None = None) -> Iterator[None]:
    """Make ``device`` / ``dtype`` the library default inside the ``with`` block (None keeps the
    outer choice). Both, and the environment variables that None falls back to, are checked on
    entry, so an unavailable device fails before any work.

    Raises:
        DeviceError: an unknown or unavailable device, or an unknown dtype (one line).
    """
    dev = resolve_device(device, source="device") if device is not None else None
    if dev is None and _device.get() is None and os.environ.get(DEVICE_ENV, "").strip():
        compute_device()
    if dtype is not None:
        resolve_dtype(dtype, torch.device("cpu"))
    elif _dtype.get() is None and (env := os.environ.get(DTYPE_ENV, "").strip()):
        resolve_dtype(env, torch.device("cpu"), source=DTYPE_ENV)
    device_token = _device.set(dev) if dev is not None else None
    dtype_token = _dtype.set(dtype) if dtype is not None else None
    try:
        yield
    finally:
        if dtype_token is not None:
            _dtype.reset(dtype_token)
        if device_token is not None:
            _device.reset(device_token)


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add ``--device`` and ``--dtype`` to ``parser`` (the runner's and the benchmarks'); returns it.

    Both default to None: the environment variables, else ``auto``. Pass the parsed values to
    :func:`using`, which refuses an unavailable device in one line.
    """
    parser.add_argument("--device", metavar="DEVICE", help="where networks run: auto (a GPU when present), cpu, "
                        f"cuda, cuda:N or mps (default: ${DEVICE_ENV}, else auto)")
    parser.add_argument("--dtype", choices=tuple(DTYPES), help="network precision: auto (bf16 or fp16 on a GPU, "
                        f"fp32 on the CPU), fp32, fp16 or bf16 (default: ${DTYPE_ENV}, else auto)")
    return parser


def describe(device: torch.device) -> str:
    """A human name for ``device``: ``"cuda:0 (NVIDIA H100 80GB HBM3)"``, ``"cpu"``, ``"mps"``."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


def synchronize(device: torch.device) -> None:
    """Wait for queued work on ``device`` (CUDA, MPS); nothing elsewhere. For timings only."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()
