"""A seed sweep on Ray workers vs one process: workflows/txt2img_samplers.json, ``Sampler A.seed=1..N``.

In one run, on this machine, with the same prompts (the embedded model, CPU):
  local     the ``latent-ops run`` loop: one Engine, the nodes write the files; torch at its default threads
  ray x2    ``run_sweep(address="local", workers=2)``: 2 workers of 1 CPU = 1 torch thread each
  local 1t  the local loop at 1 torch thread, and
  ray x1    1 worker: the same work, so the difference is what Ray adds per prompt (handing the prompt
            out, the worker's private folder, the files' bytes back, the driver's planning and writing)

Printed: time to first result (start-up and model load included), steady seconds per prompt (the
first prompt of each worker left out), throughput ratios, and the per-prompt overhead Ray adds
(goal: < 5 % of a prompt's own time). Wall-clock differences drown in noise on a shared machine,
so the overhead is also given in CPU time: the driver's (this process) plus the worker's, against
the local loop's. ray x1's files are checked against local 1t's (byte-identical).

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


def sweep(prompts: int) -> Sweep:
    registry = headless_registry()
    workflow = load(WORKFLOW, registry, {**HEADLESS_NODE_DISPLAY_NAME_MAPPINGS, **NODE_DISPLAY_NAME_MAPPINGS})
    return Sweep(workflow, [f"Sampler A.seed=1..{prompts}"], registry)


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
    parser.add_argument("--skip-overhead", action="store_true", help="only local vs ray x2")
    args = parser.parse_args()
    runs = sweep(args.prompts)
    print(f"{args.prompts} prompts of {WORKFLOW.name} ('Sampler A.seed=1..{args.prompts}'), {os.cpu_count()} CPUs, "
          f"torch {torch.__version__}, default torch threads {torch.get_num_threads()}")
    with tempfile.TemporaryDirectory(prefix="bench-ray-") as tmp:
        work = Path(tmp)
        base = local(runs, work / "local", None)
        ray2 = on_ray(runs, work / "ray2", 2)
        print(f"local ({base['threads']} threads): first result {base['first']:.2f} s, "
              f"{1e3 * base['steady']:.1f} ms/prompt (own node time {1e3 * base['own']:.1f} ms)")
        print(f"ray x2 (1 thread each, {ray2['workers']} used): first result {ray2['first']:.2f} s, "
              f"{1e3 * ray2['steady']:.1f} ms/prompt, total {ray2['total']:.1f} s")
        print(f"throughput ray x2 / local: {base['steady'] / ray2['steady']:.2f}x")
        if args.skip_overhead:
            return
        one = local(runs, work / "local1", 1)
        print(f"throughput ray x2 / local 1t: {one['steady'] / ray2['steady']:.2f}x")
        ray1 = on_ray(runs, work / "ray1", 1)
        added = ray1["steady"] - one["steady"]
        print(f"local 1t: {1e3 * one['steady']:.1f} ms/prompt; ray x1: {1e3 * ray1['steady']:.1f} ms/prompt "
              f"(first result {ray1['first']:.2f} s); wall difference {1e3 * added:+.1f} ms = "
              f"{100 * added / one['steady']:+.1f} % (noisy on a shared machine)")
        spent = ray1["driver_cpu"] + ray1["worker_cpu"]
        print(f"CPU per prompt: local 1t {1e3 * one['cpu']:.1f} ms; ray x1 driver {1e3 * ray1['driver_cpu']:.1f} + worker "
              f"{1e3 * ray1['worker_cpu']:.1f} = {1e3 * spent:.1f} ms")
        print(f"overhead Ray adds per prompt (CPU, Ray's own daemons not counted): {1e3 * (spent - one['cpu']):.1f} ms "
              f"= {100 * (spent - one['cpu']) / one['cpu']:.1f} % of a local prompt's CPU time; inside the worker "
              f"{1e3 * ray1['in_worker']:.1f} ms wall beyond its nodes (engine, private folder, file bytes)")
        print(f"ray x1 files byte-identical to local 1t: {same_files(work / 'local1', work / 'ray1')}")


if __name__ == "__main__":
    main()
