"""The generic workflow engine: read API/UI/PNG workflows, validate them and run them.

It never imports a node pack: the caller passes the registry (``{class_type: V1 node class}``).
Standard library only (PNG workflows are read by :mod:`latent_ops.media.png`, itself standard library).

    from latent_ops.workflow import Engine, load
    wf = load("workflow.json", registry)
    result = Engine(registry).run(wf.prompt, extra_pnginfo={"workflow": wf.ui} if wf.ui else None)

A sweep's prompts on Ray workers (or a pool in this process), files written here as a local run
writes them: :func:`run_sweep` (imported on first use, with torch; Ray only when a run asks for it)::

    from latent_ops.workflow import run_sweep
    from latent_ops.workflow.sweep import Sweep
    report = run_sweep(Sweep(wf, ["Sampler A.seed=1..64"], registry), registry, address="local", out_dir="output")
"""

from __future__ import annotations

from .authoring import api_to_ui
from .engine import Engine, Event, RunResult
from .errors import ExecutionError, Problem, RunInterrupted, ValidationFailed, WorkflowError
from .formats import Workflow, from_data, is_link, load, parse_json, set_ui_widget, ui_to_api
from .schema import object_info
from .validate import validate

__all__ = [
    "Engine", "Event", "ExecutionError", "Problem", "PromptReport", "RayUnavailable", "RunInterrupted", "RunResult",
    "SweepReport", "ValidationFailed", "WorkerSpec", "Workflow", "WorkflowError", "api_to_ui", "from_data", "is_link",
    "load", "object_info", "parse_json", "run_sweep", "set_ui_widget", "ui_to_api", "validate",
]

_DISTRIBUTED = frozenset({"PromptReport", "RayUnavailable", "SweepReport", "WorkerSpec", "run_sweep"})


def __getattr__(name: str) -> object:
    """The sweep-on-workers names, imported on first use (they need torch; this package does not)."""
    if name in _DISTRIBUTED:
        from . import distributed

        return getattr(distributed, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
