"""Engine overhead per node on a 200-node graph of cheap nodes.

Baseline (same run): calling the same node classes' functions directly, in the same order, with
the same inputs (instantiate, look up FUNCTION, call). The engine additionally validates the
prompt, orders it, computes cache signatures, builds kwargs, times each node and stores outputs.
Goal: under 0.1 ms of overhead per node. Pure-Python nodes, 1 thread.

    OMP_NUM_THREADS=1 python benchmarks/bench_engine.py
"""

from __future__ import annotations

import statistics
import time

from latent_ops.workflow import Engine
from latent_ops.workflow.engine import order

N = 200
REPEATS = 30


class Const:
    RETURN_TYPES = ("NUM",)
    FUNCTION = "op"
    CATEGORY = "bench"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {"value": ("FLOAT", {"default": 0.0, "min": -1e9, "max": 1e9})}}

    def op(self, value: float) -> tuple:
        return (value,)


class Add:
    RETURN_TYPES = ("NUM",)
    FUNCTION = "op"
    CATEGORY = "bench"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {"a": ("NUM",), "b": ("NUM",),
                             "scale": ("FLOAT", {"default": 1.0, "min": -10.0, "max": 10.0})},
                "optional": {"mode": (["sum", "mean"], {"default": "sum"})}}

    def op(self, a: float, b: float, scale: float, mode: str = "sum") -> tuple:
        return ((a + b) * scale * (0.5 if mode == "mean" else 1.0),)


class Out:
    RETURN_TYPES = ()
    FUNCTION = "op"
    OUTPUT_NODE = True
    CATEGORY = "bench"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {"x": ("NUM",)}}

    def op(self, x: float) -> dict:
        return {"ui": {"value": [x]}}


REGISTRY = {"Const": Const, "Add": Add, "Out": Out}


def build() -> dict:
    """Const -> 198 Adds (each linked to the previous node and to one 7 steps back) -> Out."""
    prompt = {"0": {"class_type": "Const", "inputs": {"value": 1.0}}}
    for i in range(1, N - 1):
        prompt[str(i)] = {"class_type": "Add", "inputs": {
            "a": [str(i - 1), 0], "b": [str(max(0, i - 7)), 0], "scale": 0.5, "mode": "mean" if i % 3 else "sum"}}
    prompt[str(N - 1)] = {"class_type": "Out", "inputs": {"x": [str(N - 2), 0]}}
    return prompt


def direct(prompt: dict, steps: list[str]) -> float:
    """Baseline: the same node functions called directly in dependency order."""
    values: dict[str, tuple] = {}
    for nid in steps:
        spec = prompt[nid]
        cls = REGISTRY[spec["class_type"]]
        kwargs = {k: (values[v[0]][v[1]] if isinstance(v, list) else v) for k, v in spec["inputs"].items()}
        out = getattr(cls(), cls.FUNCTION)(**kwargs)
        values[nid] = out if isinstance(out, tuple) else ()
    return values[str(N - 2)][0]


def best(fn, repeats: int = REPEATS) -> tuple[float, float]:  # noqa: ANN001
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times)


def main() -> None:
    prompt = build()
    steps = order(prompt, prompt.keys())
    reference = direct(prompt, steps)
    assert Engine(REGISTRY).run(prompt).outputs[str(N - 2)][0] == reference
    base_min, base_med = best(lambda: direct(prompt, steps))
    cold_min, cold_med = best(lambda: Engine(REGISTRY).run(prompt))
    warm_engine = Engine(REGISTRY)
    warm_engine.run(prompt)
    warm_min, warm_med = best(lambda: warm_engine.run(prompt))
    no_cache = Engine(REGISTRY, cache=False)
    nc_min, nc_med = best(lambda: no_cache.run(prompt))
    per_node = lambda t: 1e3 * (t - base_min) / N  # noqa: E731
    print(f"graph: {N} nodes (Const -> {N - 2} x Add -> Out), {REPEATS} repeats, best of / median, 1 thread")
    print(f"direct calls (baseline)     : {1e3 * base_min:7.3f} ms / {1e3 * base_med:7.3f} ms")
    print(f"engine, fresh Engine (cold) : {1e3 * cold_min:7.3f} ms / {1e3 * cold_med:7.3f} ms"
          f"  -> overhead {per_node(cold_min):.4f} ms/node ({cold_min / base_min:.1f}x baseline)")
    print(f"engine, cache disabled      : {1e3 * nc_min:7.3f} ms / {1e3 * nc_med:7.3f} ms"
          f"  -> overhead {per_node(nc_min):.4f} ms/node")
    print(f"engine, all nodes cached    : {1e3 * warm_min:7.3f} ms / {1e3 * warm_med:7.3f} ms"
          f"  -> {1e3 * warm_min / N:.4f} ms/node (validation + signatures only)")
    verdict = "meets" if per_node(cold_min) < 0.1 else "MISSES"
    print(f"goal < 0.1 ms/node overhead: {verdict} ({per_node(cold_min):.4f} ms/node, cold)")


if __name__ == "__main__":
    main()
