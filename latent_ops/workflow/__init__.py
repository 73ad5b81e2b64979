"""The generic workflow engine: read API/UI/PNG workflows, validate them and run them.

It never imports a node pack: the caller passes the registry (``{class_type: V1 node class}``).
Standard library only (PNG workflows are read by :mod:`latent_ops.media.png`, itself standard library).

    from latent_ops.workflow import Engine, load
    wf = load("workflow.json", registry)
    result = Engine(registry).run(wf.prompt, extra_pnginfo={"workflow": wf.ui} if wf.ui else None)
"""

from __future__ import annotations

from .authoring import api_to_ui
from .engine import Engine, Event, RunResult
from .errors import ExecutionError, Problem, RunInterrupted, ValidationFailed, WorkflowError
from .formats import Workflow, from_data, is_link, load, parse_json, set_ui_widget, ui_to_api
from .schema import object_info
from .validate import validate

__all__ = [
    "Engine", "Event", "ExecutionError", "Problem", "RunInterrupted", "RunResult", "ValidationFailed", "Workflow",
    "WorkflowError", "api_to_ui", "from_data", "is_link", "load", "object_info", "parse_json", "set_ui_widget",
    "ui_to_api", "validate",
]
