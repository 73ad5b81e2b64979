"""What every benchmark shares about devices: ``--device``, synchronised clocks and peak memory.

On CUDA a clock reading first waits for the queued kernels (``torch.cuda.synchronize``), so a
time covers the work and not just its launch, and peaks come from ``torch.cuda.max_memory_allocated``
(reset before each measurement). On the CPU the clocks are plain and the peak is the process's
resident set (``ru_maxrss``), as the benchmarks measured before.
"""

from __future__ import annotations

import argparse
import resource
import time

import torch

from latent_ops import devices


def add_arguments(parser: argparse.ArgumentParser, dtype: bool = False) -> None:
    """``--device`` (default cpu) and, if asked, ``--dtype`` (default fp32) on ``parser``."""
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N, mps or auto")
    if dtype:
        parser.add_argument("--dtype", default="fp32", choices=("fp32", "fp16", "bf16"),
                            help="network precision (default fp32)")


def resolve(name: str) -> torch.device:
    """The device ``--device`` names; exits with the one-line reason when this machine lacks it."""
    try:
        return devices.resolve_device(name, source="--device")
    except devices.DeviceError as err:
        raise SystemExit(f"benchmark: {err}") from None


def dtype_of(name: str) -> torch.dtype:
    """``fp32`` / ``fp16`` / ``bf16`` -> torch dtype."""
    return devices.resolve_dtype(name, torch.device("cpu"), source="--dtype")


def describe(device: torch.device) -> str:
    """``device: cuda:0 (NVIDIA H100 80GB HBM3), torch 2.x``: the line each benchmark prints first."""
    return f"device: {devices.describe(device)}, torch {torch.__version__}"


def clock(device: torch.device) -> float:
    """``time.perf_counter()`` after the queued work on ``device`` has finished."""
    devices.synchronize(device)
    return time.perf_counter()


def reset_peak(device: torch.device) -> None:
    """Start a new peak-memory measurement on ``device`` (CUDA only; the CPU's is per process)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device: torch.device) -> float:
    """Peak memory in GiB: CUDA's allocated peak since :func:`reset_peak`, else this process's peak RSS."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
