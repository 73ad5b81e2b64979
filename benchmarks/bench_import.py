"""Import cost of the plugin beyond ``import torch``, loaded the way ComfyUI loads it.

Runs N fresh interpreters (``python -I``); each imports torch, then the repository root as a
package under ComfyUI's mangled name, and reports both times. Goal: plugin < 0.3 s beyond torch.
Usage: python benchmarks/bench_import.py [N]
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROBE = r"""
import importlib.util, json, sys, time
root = sys.argv[1]
t0 = time.perf_counter(); import torch; t1 = time.perf_counter()
name = root.replace(".", "_x_")
spec = importlib.util.spec_from_file_location(name, root + "/__init__.py")
module = importlib.util.module_from_spec(spec); sys.modules[name] = module
spec.loader.exec_module(module)
t2 = time.perf_counter()
print(json.dumps({"torch": t1 - t0, "plugin": t2 - t1, "nodes": len(module.NODE_CLASS_MAPPINGS),
                  "diffusers": "diffusers" in sys.modules}))
"""


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 7
    runs = []
    for _ in range(n):
        out = subprocess.run([sys.executable, "-I", "-c", PROBE, str(ROOT)], capture_output=True, text=True, check=True)
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    torch_s = statistics.median(r["torch"] for r in runs)
    plugin_s = statistics.median(r["plugin"] for r in runs)
    print(f"nodes registered: {runs[0]['nodes']}, diffusers imported: {runs[0]['diffusers']}")
    print(f"import torch: median {torch_s * 1000:.0f} ms over {n} fresh interpreters")
    print(f"plugin beyond torch: median {plugin_s * 1000:.1f} ms (min {min(r['plugin'] for r in runs) * 1000:.1f})")
    print(f"ratio plugin/torch: {plugin_s / torch_s:.3f}; goal < 300 ms -> {'OK' if plugin_s < 0.3 else 'MISSED'}")


if __name__ == "__main__":
    main()
