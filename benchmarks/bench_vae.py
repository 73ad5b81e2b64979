"""VAE decode benchmark: Latent Ops vs diffusers' AutoencoderKL, same random SD1.5-architecture weights.

Every measurement runs in its own subprocess (wall time of the decode call only; peak RSS of
that process from ``ru_maxrss``), so cases can be run separately on a shared machine:

    python benchmarks/bench_vae.py --case decode512 --threads 1
    python benchmarks/bench_vae.py --case tiled1024 --threads 2
    python benchmarks/bench_vae.py --case tiles1024     # tile mode (bounded by tile) vs untiled: error
    python benchmarks/bench_vae.py --case decode4096    # tile mode (128-latent tiles, halo 16), 2.5 GiB budget
    python benchmarks/bench_vae.py --case decode512 --device cuda --dtype fp16 --batch 8
    python benchmarks/bench_vae.py --case decode4096 --device cuda --dtype fp16 --psnr --diffusers-tiling

On a GPU (``--device cuda``) the clocks wait for the queued kernels, the peak is
``torch.cuda.max_memory_allocated`` of the decode, decode4096 runs ``decode_tiled(z, 64, 64, 16)``
under a 1.5 GB budget, and images are copied back to the CPU (as a ComfyUI node returns them) by
both implementations. ``--psnr`` also decodes the 4096 px latent exactly (the streamed path) as
the reference for the tiled decodes.

Weights: ``configs/sd15-vae`` with N(0, 1/fan_in) weights from a seeded CPU generator, written
once as a diffusers folder (for diffusers) and an LDM-layout ``.safetensors`` (for our loader).
Latents: seeded N(0, 1). Ratios are printed against the baseline measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _device

WORK = Path(tempfile.gettempdir()) / "latent_ops_bench_vae"


def _setup() -> None:
    import torch
    from diffusers import AutoencoderKL
    from safetensors.torch import save_file

    from latent_ops.vae import families as vae_families
    from latent_ops.weights import ldm_convert

    if (WORK / "ldm.safetensors").is_file():
        return
    WORK.mkdir(parents=True, exist_ok=True)
    cfg = vae_families.shipped_config("sd15")
    module = AutoencoderKL.from_config({k: v for k, v in cfg.items() if not k.startswith("_")})
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.ndim > 1:
                fan_in = math.prod(p.shape[1:])
                p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(fan_in))
            elif "norm" in name and name.endswith("weight"):
                p.fill_(1.0)
            else:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.01)
    module.save_pretrained(WORK / "diffusers")
    save_file(ldm_convert.vae_diffusers_to_ldm(module.state_dict()), str(WORK / "ldm.safetensors"))


def _latent(size: int, batch: int = 1):  # noqa: ANN202
    import torch

    gen = torch.Generator().manual_seed(size)
    return torch.randn(batch, 4, size // 8, size // 8, generator=gen)


def worker(impl: str, size: int, threads: int, out: str, repeats: int, device_name: str = "cpu",
           dtype_name: str = "fp32", batch: int = 1) -> dict:
    """One measurement in this process; prints a JSON line."""
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    device, dtype = _device.resolve(device_name), _device.dtype_of(dtype_name)
    z = _latent(size, batch)
    times = []
    if impl.startswith("diffusers"):
        from diffusers import AutoencoderKL

        vae = AutoencoderKL.from_pretrained(WORK / "diffusers", torch_dtype=dtype).to(device).eval()
        if impl == "diffusers_tiling":
            vae.enable_tiling()

        def run():  # noqa: ANN202
            with torch.inference_mode():
                y = vae.decode(z.to(device, dtype)).sample
                return ((y.float() + 1) / 2).clamp(0, 1).movedim(1, -1).cpu()
    else:
        from latent_ops.vae import loading as models
        from latent_ops.vae import tiling as vae_tiling

        budget = (int(1.5e9) if device.type == "cuda" else int(2.5 * 2**30)) if impl == "ours_tiles4096" else None
        vae = models.load_vae(WORK / "ldm.safetensors", family="sd15", memory_budget=budget, device=device, dtype=dtype)

        def run():  # noqa: ANN202
            if impl == "ours":
                return vae.decode(z)
            if impl == "ours_tiled":
                return vae.decode_tiled(z, 64, 64, 16, strategy="exact")
            if impl == "ours_tiles":
                with torch.inference_mode():
                    y = vae_tiling.run(vae.module, "decode", z, vae_tiling.Plan("tiles", (48, 48), 16, 4))
                return ((y + 1) / 2).clamp(0, 1).movedim(1, -1)
            if impl == "ours_tiles4096":
                start = time.perf_counter()

                def tick(done: int, total: int) -> None:
                    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
                    print(f"tile {done}/{total} at {time.perf_counter() - start:.0f} s, peak RSS so far {rss:.2f} GiB",
                          file=sys.stderr, flush=True)  # fmt: skip

                tile = 64 if device.type == "cuda" else 128
                return vae.decode_tiled(z, tile, tile, 16, callback=tick)
            raise ValueError(impl)

    cpu = []
    for _ in range(repeats):
        _device.reset_peak(device)
        t0, c0 = _device.clock(device), time.process_time()
        img = run()
        times.append(_device.clock(device) - t0)
        cpu.append(time.process_time() - c0)
    if out:
        np.save(out, img.numpy())
    sat = float(((img <= 0) | (img >= 1)).float().mean())
    res = {
        "impl": impl,
        "size": size,
        "threads": threads,
        "times": times,
        "cpu_times": cpu,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "peak_device_gb": _device.peak_gib(device) if device.type != "cpu" else None,
        "device": _device.describe(device),
        "saturated": sat,
        "loadavg": open("/proc/loadavg").read().split()[:3],
    }
    print(json.dumps(res), flush=True)
    return res


def _spawn(impl: str, size: int, threads: int, repeats: int, save: bool, extra: tuple[str, ...] = ()) -> dict:
    out = str(WORK / f"{impl}_{size}.npy") if save else ""
    cmd = [sys.executable, __file__, "--worker", impl, "--size", str(size), "--threads", str(threads),
           "--repeats", str(repeats), "--out", out, *extra]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"worker {impl} {size} failed:\n{proc.stderr[-3000:]}")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res["out"] = out
    print(f"  {impl:>17} {size:>5}px: times {[round(t, 2) for t in res['times']]} s, "
          f"cpu {[round(t, 2) for t in res.get('cpu_times', [])]} s, peak RSS "
          f"{res['peak_rss_gb']:.2f} GiB" + (f", device peak {res['peak_device_gb']:.2f} GiB"
          if res.get("peak_device_gb") is not None else "") + f", loadavg {res['loadavg']}", flush=True)  # fmt: skip
    return res


def _psnr(a_path: str, b_path: str) -> float:
    import numpy as np

    a, b = np.load(a_path).astype(np.float64), np.load(b_path).astype(np.float64)
    mse = float(((a - b) ** 2).mean())
    return float("inf") if mse == 0 else 10 * math.log10(1.0 / mse)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--case", choices=["decode512", "tiled1024", "tiles1024", "decode4096", "all"], default="decode512")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=0, help="timed runs per measurement (0 = case default)")
    ap.add_argument("--diffusers-tiling", action="store_true", help="also time diffusers' enable_tiling (1024)")
    ap.add_argument("--worker")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--out", default="")
    ap.add_argument("--batch", type=int, default=1, help="latents per decode call (decode512)")
    ap.add_argument("--psnr", action="store_true", help="decode4096: also the exact decode, as the PSNR reference")
    _device.add_arguments(ap, dtype=True)
    args = ap.parse_args()
    if args.worker:
        worker(args.worker, args.size, args.threads, args.out, max(1, args.repeats), args.device, args.dtype, args.batch)
        return
    print(f"{_device.describe(_device.resolve(args.device))}, {args.dtype}, batch {args.batch}")
    _setup()
    dev = ("--device", args.device, "--dtype", args.dtype)
    print(f"threads={args.threads} loadavg before: {open('/proc/loadavg').read().strip()}")
    cases = ["decode512", "tiled1024", "tiles1024", "decode4096"] if args.case == "all" else [args.case]
    for case in cases:
        print(f"[{case}]", flush=True)
        if case == "decode512":
            n = args.repeats or 3
            base = _spawn("diffusers", 512, args.threads, n, True, (*dev, "--batch", str(args.batch)))
            ours = _spawn("ours", 512, args.threads, n, True, (*dev, "--batch", str(args.batch)))
            tb, to = min(base["times"][1:] or base["times"]), min(ours["times"][1:] or ours["times"])
            cb, co = min(base["cpu_times"][1:] or base["cpu_times"]), min(ours["cpu_times"][1:] or ours["cpu_times"])
            print(f"  decode 512 ours/diffusers wall {to / tb:.3f}x, cpu {co / cb:.3f}x (best of runs after the "
                  f"first), PSNR ours vs diffusers {_psnr(ours['out'], base['out']):.1f} dB")  # fmt: skip
        elif case in ("tiled1024", "tiles1024"):
            n = args.repeats or 1
            untiled = _spawn("ours", 1024, args.threads, n, True, dev)
            tiled = _spawn("ours_tiled" if case == "tiled1024" else "ours_tiles", 1024, args.threads, n, True, dev)
            print(f"  {case}: time tiled/untiled {min(tiled['times']) / min(untiled['times']):.3f}x, peak RSS "
                  f"tiled/untiled {tiled['peak_rss_gb'] / untiled['peak_rss_gb']:.3f}, PSNR "
                  f"{_psnr(tiled['out'], untiled['out']):.1f} dB, saturated {untiled['saturated']:.3f}")  # fmt: skip
            if args.diffusers_tiling:
                dt = _spawn("diffusers_tiling", 1024, args.threads, n, True, dev)
                print(f"  diffusers enable_tiling: time/ours-untiled {min(dt['times']) / min(untiled['times']):.3f}x, "
                      f"PSNR vs ours untiled {_psnr(dt['out'], untiled['out']):.1f} dB")  # fmt: skip
        elif case == "decode4096":
            res = _spawn("ours_tiles4096", 4096, args.threads, 1, args.psnr, dev)
            peak = res["peak_device_gb"] if res.get("peak_device_gb") is not None else res["peak_rss_gb"]
            print(f"  decode 4096: {res['times'][0]:.1f} s, peak {peak:.2f} GiB (goal < 4 CPU RSS, <= 1.5 GB GPU)")
            others = [_spawn("diffusers_tiling", 4096, args.threads, 1, args.psnr, dev)] if args.diffusers_tiling else []
            if args.psnr:
                ref = _spawn("ours_tiled", 4096, args.threads, 1, True, dev)
                for r in [res, *others]:
                    print(f"  {r['impl']}: PSNR vs exact {_psnr(r['out'], ref['out']):.1f} dB")
    print(f"loadavg after: {open('/proc/loadavg').read().strip()}")


if __name__ == "__main__":
    main()
