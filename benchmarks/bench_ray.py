"""A seed sweep on Ray workers vs one process: workflows/txt2img_samplers.json, ``Sampler A.seed=1..N``.

In one run, on this machine, with the same prompts (the embedded model, CPU):
  local     the ``latent-ops run`` loop: one Engine, the nodes write the files; torch at its default threads
  ray x2    ``run_sweep(address="local", workers=2)``: 2 workers of 1 CPU = 1 torch thread each
  local 1t  the local loop at 1 torch thread (ray x2's files must be byte-identical to its files)

Printed: time to first result (start-up and model load included), steady ms per prompt (each
worker's first prompt left out), throughput ratios, and the per-prompt overhead Ray adds. A
seed prompt's own time (~0.2 s here) is large next to the overhead and to the noise of a shared
machine, so the overhead is measured on a cheap sweep of the same workflow (``Prompts
grid.font_size``: only the grid and its save run, same files and prompt sizes): ray x1 minus the
local loop, both at 1 thread, per prompt, as a share of a seed prompt's own time (goal: < 5 %).

    python benchmarks/bench_ray.py [--prompts 64] [--skip-overhead]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

import torch  # noqa: E402
from latent_ops_nodes import NODE_DISPLAY_NAME_MAPPINGS, headless_registry  # noqa: E402
from latent_ops_nodes.headless import HEADLESS_NODE_DISPLAY_NAME_MAPPINGS  # noqa: E402

from latent_ops.media import files  # noqa: E402
from latent_ops.workflow import Engine, load  # noqa: E402
from latent_ops.workflow.distributed import WorkerSpec, run_sweep  # noqa: E402
from latent_ops.workflow.sweep import Sweep  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / "workflows" / "txt2img_samplers.json"
INPUTS = ROOT / "workflows" / "input"


def sweep(items: list[str]) -> Sweep:
    registry = headless_registry()
    workflow = load(WORKFLOW, registry, {**HEADLESS_NODE_DISPLAY_NAME_MAPPINGS, **NODE_DISPLAY_NAME_MAPPINGS})
    return Sweep(workflow, items, registry)


def local(runs: Sweep, out: Path, threads: int | None) -> dict:
    """The CLI's loop; returns times (s from start) at which each prompt's files were written."""
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        start = time.perf_counter()
        engine, stamps, own, cpu = Engine(runs.registry), [], [], []
        with files.using(input_dir=INPUTS, output_dir=out, temp_dir=out / "temp"):
            for run in runs:
                result = engine.run(run.prompt, extra_pnginfo={"workflow": run.ui})
                stamps.append(time.perf_counter() - start)
                cpu.append(time.process_time())
                own.append(sum(result.timings.values()))
    finally:
        torch.set_num_threads(before)
    return {"stamps": stamps, "first": stamps[0], "steady": (stamps[-1] - stamps[0]) / (len(stamps) - 1),
            "cpu": (cpu[-1] - cpu[0]) / (len(cpu) - 1), "own": statistics.median(own[1:]),
            "threads": threads or before}


def on_ray(runs: Sweep, out: Path, workers: int) -> dict:
    stamps, reports, cpu = [], [], []
    start = time.perf_counter()

    def seen(report: object) -> None:
        stamps.append(time.perf_counter() - start)
        cpu.append(time.process_time())
        reports.append(report)

    sweep_report = run_sweep(runs, runs.registry, address="local", workers=workers, spec=WorkerSpec(cpus=1),
                             out_dir=out, input_dir=INPUTS, temp_dir=out / "temp", on_result=seen)
    assert sweep_report.ok, [p.error for p in sweep_report.prompts if p.error]
    firsts, warm = {}, 0.0
    for stamp, report in zip(stamps, reports, strict=True):
        key = report.worker.get("worker")
        if key not in firsts:
            firsts[key] = stamp
    warm = max(firsts.values())
    after = [s for s in stamps if s > warm]
    steady = (stamps[-1] - warm) / len(after) if after else float("nan")
    overhead = [r.seconds - sum(r.timings.values()) for r in reports[len(firsts):]]
    worker_cpu = statistics.mean(r.cpu for r in reports[len(firsts):])
    warm_at = stamps.index(warm)
    driver_cpu = (cpu[-1] - cpu[warm_at]) / max(1, len(stamps) - 1 - warm_at)
    return {"first": sweep_report.first_result, "steady": steady, "workers": len(firsts), "driver_cpu": driver_cpu,
            "worker_cpu": worker_cpu,
            "in_worker": statistics.median(overhead) if overhead else float("nan"),
            "own": statistics.median(sum(r.timings.values()) for r in reports[len(firsts):]),
            "total": sweep_report.seconds}


def same_files(a: Path, b: Path) -> bool:
    def tree(root: Path) -> dict[str, bytes]:
        return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*.png"))}

    return tree(a) == tree(b) and bool(tree(a))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--skip-overhead", action="store_true", help="no overhead probe")
    args = parser.parse_args()
    runs = sweep([f"Sampler A.seed=1..{args.prompts}"])
    print(f"{args.prompts} prompts of {WORKFLOW.name} ('Sampler A.seed=1..{args.prompts}'), {os.cpu_count()} CPUs, "
          f"torch {torch.__version__}, default torch threads {torch.get_num_threads()}")
    with tempfile.TemporaryDirectory(prefix="bench-ray-") as tmp:
        work = Path(tmp)
        base = local(runs, work / "local", None)
        ray2 = on_ray(runs, work / "ray2", 2)
        one = local(runs, work / "local1", 1)
        print(f"local ({base['threads']} threads): first result {base['first']:.2f} s (cold process), "
              f"{1e3 * base['steady']:.1f} ms/prompt")
        print(f"local 1t: first result {one['first']:.2f} s (warm process), {1e3 * one['steady']:.1f} ms/prompt "
              f"(own node time {1e3 * one['own']:.1f} ms)")
        print(f"ray x2 (1 thread each, {ray2['workers']} used): first result {ray2['first']:.2f} s (Ray start-up and "
              f"model loads included), {1e3 * ray2['steady']:.1f} ms/prompt, total {ray2['total']:.1f} s")
        print(f"throughput ray x2 / local: {base['steady'] / ray2['steady']:.2f}x; / local 1t: "
              f"{one['steady'] / ray2['steady']:.2f}x; files byte-identical to local 1t: "
              f"{same_files(work / 'local1', work / 'ray2')}")
        if args.skip_overhead:
            return
        probe = sweep([f"Prompts grid.font_size=8..{7 + args.prompts}"])
        cheap = local(probe, work / "probe_local", 1)
        ray1 = on_ray(probe, work / "probe_ray", 1)
        added = ray1["steady"] - cheap["steady"]
        print(f"overhead probe ('Prompts grid.font_size', 1 thread): local {1e3 * cheap['steady']:.1f} ms/prompt, "
              f"ray x1 {1e3 * ray1['steady']:.1f} ms/prompt; files byte-identical: "
              f"{same_files(work / 'probe_local', work / 'probe_ray')}")
        print(f"overhead Ray adds per prompt: {1e3 * added:+.1f} ms wall = {100 * added / one['steady']:+.1f} % of a "
              f"seed prompt (local 1t); CPU: driver {1e3 * ray1['driver_cpu']:.1f} ms + worker "
              f"{1e3 * ray1['worker_cpu']:.1f} ms vs local {1e3 * cheap['cpu']:.1f} ms = "
              f"{1e3 * (ray1['driver_cpu'] + ray1['worker_cpu'] - cheap['cpu']):+.1f} ms; inside the worker "
              f"{1e3 * ray1['in_worker']:.1f} ms beyond its nodes")


if __name__ == "__main__":
    main()
