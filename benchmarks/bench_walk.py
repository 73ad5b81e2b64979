"""Benchmark: latent walk (one weight matrix x keyframes GEMM) vs a per-frame loop vs memory copy.

Run: ``python benchmarks/bench_walk.py [--frames 64] [--shape 4 128 128] [--reps 30] [--device cuda]``.
On a GPU the tensors live there and every clock reading waits for the queued kernels.

For 1 and 2 torch threads it times, on float32 ``[frames, C, H, W]`` outputs:
- ``copy``: ``dst.copy_(src)`` of a buffer the size of the walk's output, the machine's
  memory-copy bandwidth measured in the same run (the baseline);
- ``walk out=``: :func:`latent_ops.walk.walk` writing into a preallocated output;
- ``walk``: the same, allocating its output;
- ``BLAS mm``: the same frames as one matrix multiply ``walk_weights(...) @ keyframes`` (why
  :func:`walk` does not use one);
- ``loop``: a naive per-frame Python loop calling :func:`latent_ops.interp.slerp` and stacking.

GB/s counts the bytes each variant writes (the output, once); ``vs copy`` is that figure over
the copy's written GB/s, i.e. copy time / walk time (the goal is >= 0.5). The variants run
interleaved, round after round, so a noisy neighbour slows them alike; times are medians.
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable

import _device
import torch

from latent_ops import interp
from latent_ops.walk import ease, walk, walk_weights


def _time_interleaved(
    fns: dict[str, Callable[[], object]], reps: int, warmup: int = 3, device: torch.device | None = None
) -> dict[str, list[float]]:
    """Run every variant once per round, round after round, so slow phases of a shared machine hit all alike."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    device = device or torch.device("cpu")
    for i in range(warmup + reps):
        for name, fn in fns.items():
            start = _device.clock(device)
            fn()
            if i >= warmup:
                times[name].append((_device.clock(device) - start) * 1e3)
    return times


def naive_walk(keyframes: torch.Tensor, frames: int) -> torch.Tensor:
    """Reference: one slerp call per frame through the keyframe segments (linear easing)."""
    segments = keyframes.shape[0] - 1
    out = []
    for f in range(frames):
        pos = f * segments / (frames - 1)
        seg = min(int(pos), segments - 1)
        u = float(ease(torch.tensor(pos - seg), "linear"))
        out.append(interp.slerp(keyframes[seg : seg + 1], keyframes[seg + 1 : seg + 2], u))
    return torch.cat(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--shape", type=int, nargs="+", default=[4, 128, 128])
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    _device.add_arguments(parser)
    args = parser.parse_args()
    device = _device.resolve(args.device)

    gen = torch.Generator().manual_seed(0)
    shape = (args.frames, *args.shape)
    nbytes = torch.Size(shape).numel() * 4
    src = torch.randn(shape, generator=gen).to(device)
    dst = torch.empty_like(src)
    print(
        f"{_device.describe(device)}; output {list(shape)} float32 = {nbytes / 2**20:.1f} MiB written per call"
    )
    print(
        f"{'threads':>7} {'variant':<24} {'median ms':>9} {'best ms':>8} {'GB/s written':>12} "
        f"{'vs copy':>8} {'vs loop':>8}"
    )
    for threads in args.threads if device.type == "cpu" else [torch.get_num_threads()]:
        torch.set_num_threads(threads)
        for k in (2, 4):
            keyframes = torch.randn((k, *args.shape), generator=gen).to(device)
            out = torch.empty(shape, device=device)
            assert torch.allclose(walk(keyframes, args.frames), naive_walk(keyframes, args.frames), atol=1e-4)
            variants = {
                "copy (baseline)": lambda: dst.copy_(src),
                f"walk K={k} out=": lambda kf=keyframes, o=out: walk(kf, args.frames, out=o),
                f"walk K={k} (allocating)": lambda kf=keyframes: walk(kf, args.frames),
                f"walk K={k} gaussian": lambda kf=keyframes, o=out: walk(
                    kf, args.frames, magnitude="gaussian", out=o
                ),
                f"walk K={k} cosine loop": lambda kf=keyframes, o=out: walk(
                    kf, args.frames, easing="cosine", loop=True, out=o
                ),
                f"walk K={k} constant_angular": lambda kf=keyframes, o=out: walk(
                    kf, args.frames, easing="constant_angular", out=o
                ),
                f"walk K={k} method=lerp": lambda kf=keyframes, o=out: walk(
                    kf, args.frames, method="lerp", out=o
                ),
                f"BLAS mm(W, X) K={k}": lambda kf=keyframes, o=out: torch.mm(
                    walk_weights(kf, args.frames), kf.flatten(1), out=o.view(args.frames, -1)
                ),
            }
            times = _time_interleaved(variants, args.reps, device=device)
            loop = _time_interleaved(
                {"loop": lambda kf=keyframes: naive_walk(kf, args.frames)}, max(5, args.reps // 5), device=device
            )
            times[f"per-frame loop K={k}"] = loop["loop"]
            copy_ms = statistics.median(times["copy (baseline)"])
            loop_ms = statistics.median(loop["loop"])
            for name, ts in times.items():
                ms = statistics.median(ts)
                gbs = nbytes / ms / 1e6
                print(
                    f"{threads:>7} {name:<24} {ms:9.3f} {min(ts):8.3f} {gbs:12.1f} {copy_ms / ms:8.2f} "
                    f"{loop_ms / ms:7.1f}x"
                )


if __name__ == "__main__":
    main()
