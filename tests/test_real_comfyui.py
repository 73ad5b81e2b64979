"""Runs the real-ComfyUI suite (``tests/comfyui``) in a child process and requires it to pass.

The suite imports ComfyUI 0.3.64 in-process (tiny-model sampling checks) and starts its server
(the plugin loads, every workflow runs; the ComfyUI-loader examples of ``workflows/comfyui/`` run on
a tiny SD1.5-layout checkpoint file and give the core KSampler's images where they are meant to).
It runs in a child so that ComfyUI's modules never enter this process, where
``nodes/comfy_adapter.py`` would find them. Without the snapshot (``$LATENT_OPS_COMFYUI`` or
``../shared/vendor/comfyui-0.3.64.tar.gz``) it is skipped with one line.
"""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SUITE = ROOT / "tests" / "comfyui"

_spec = importlib.util.spec_from_file_location("latent_ops_comfyui_harness", SUITE / "harness.py")
harness = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(harness)

if harness.missing_reason():
    pytest.skip(harness.missing_reason(), allow_module_level=True)


def _run_suite(timeout: float) -> tuple[int, str]:
    """Run the suite in its own process group, so a timeout also stops the ComfyUI server it started."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", "-rfE", "--durations=5", str(SUITE)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        pytest.fail(f"real-ComfyUI suite did not finish within {timeout:.0f} s:\n{output}")
    finally:  # also on KeyboardInterrupt: the child's session does not get the terminal's SIGINT
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode, output


def test_real_comfyui_suite() -> None:
    returncode, output = _run_suite(timeout=1800)
    summary = output.strip().splitlines()[-1] if output.strip() else ""
    if returncode != 0 or re.search(r"\b(failed|error|errors|skipped)\b", summary):
        print(output)
        pytest.fail(f"real-ComfyUI suite: exit code {returncode}, {summary!r} (its output is printed above)")
    assert re.search(r"\b\d+ passed\b", summary), output
