"""``latent-ops``: run, validate and convert ComfyUI workflows without ComfyUI.

Generic over the node registry it is given (the console script passes the headless registry).
Exit codes: 0 success, 1 a node failed, 2 bad command line (or ``--set``), 3 the workflow cannot
be read or fails validation, 130 interrupted. ``--json`` prints one JSON document on stdout.
With ``--ray`` or ``--resume`` the prompts run on workers (:mod:`.distributed`): every prompt is
tried, and 1 means that some failed while the others were written.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from .. import devices
from ..media import files
from . import (
    Engine,
    Event,
    ExecutionError,
    RunInterrupted,
    ValidationFailed,
    WorkflowError,
    api_to_ui,
    load,
    object_info,
    ray_pool,
)
from .sweep import MAX_SWEEP, Sweep, UsageError, parse_sets, parse_values, problems, sweep
from .validate import analyse

__all__ = ["EXIT_EXECUTION", "EXIT_INTERRUPTED", "EXIT_INVALID", "EXIT_OK", "EXIT_USAGE", "MAX_SWEEP", "UsageError",
           "main", "parse_sets", "parse_values", "sweep"]

EXIT_OK, EXIT_EXECUTION, EXIT_USAGE, EXIT_INVALID, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="latent-ops", description="Run ComfyUI workflows headless (API or UI "
                                     "format JSON, or a PNG that carries one).")
    sub = parser.add_subparsers(dest="command", required=True)
    run, check = devices.add_arguments(sub.add_parser("run", help="validate and run a workflow")), sub.add_parser("validate", help="validate a workflow without running it")
    for p in (run, check):
        p.add_argument("workflow", type=Path, help="workflow .json (API or UI format) or .png")
        p.add_argument("--input-dir", type=Path, default=Path("input"), help="folder LoadImage/LoadLatent read from (default ./input)")
        p.add_argument("--set", action="append", default=[], metavar="NODE.INPUT=VALUE",
                       help="override an input; NODE is an id, a title or a unique class; VALUE is JSON, text, "
                            "a JSON list or a range A..B (lists make a sweep: the product of all --set lists)")
        p.add_argument("--models-dir", type=Path, help="models folder (default: $LATENT_OPS_MODELS)")
        p.add_argument("--extra-model-paths", type=Path, help="ComfyUI extra_model_paths.yaml")
        p.add_argument("--json", action="store_true", help="print a JSON document for scripts")
    run.add_argument("--out", type=Path, default=Path("output"), help="output folder (default ./output)")
    run.add_argument("--temp-dir", type=Path, help="folder for PreviewImage files (default: system temp)")
    run.add_argument("--no-progress", action="store_true", help="no progress bars")
    run.add_argument("--traceback", action="store_true", help="print the failing node's traceback")
    run.add_argument("--timings", action="store_true", help="print the seconds spent in each node")
    run.add_argument("--resume", action="store_true", help="skip the prompts an earlier run of this sweep wrote "
                     "(listed in the output folder's .latent-ops-sweep.jsonl, files still there)")
    ray_pool.add_arguments(run)
    nodes = sub.add_parser("nodes", help="list the node registry (--json: ComfyUI's /object_info shape)")
    nodes.add_argument("--json", action="store_true")
    nodes.add_argument("--input-dir", type=Path, default=Path("input"), help="folder listed by LoadImage's combo")
    sub.add_parser("train-default", add_help=False,
                   help="rebuild the embedded default model (options: python -m latent_ops.embedded.train --help)")
    conv = sub.add_parser("convert", help="convert between UI and API format")
    conv.add_argument("workflow", type=Path)
    conv.add_argument("--to", choices=("api", "ui"), required=True)
    conv.add_argument("-o", "--output", type=Path, help="write here instead of stdout")
    return parser


# ----------------------------------------------------------------------------- output helpers
def _emit(args: argparse.Namespace, doc: dict[str, Any], text: str, err: bool = False) -> None:
    if getattr(args, "json", False):
        print(json.dumps(doc, indent=2, default=str))
    elif text:
        print(text, file=sys.stderr if err else sys.stdout)


def _files_of(ui: Mapping[str, Any], out_dir: Path) -> list[str]:
    paths = []
    for entries in ui.values():
        for entry in entries if isinstance(entries, list) else []:
            if isinstance(entry, dict) and "filename" in entry:
                root = files.temp_dir() if entry.get("type") == "temp" else out_dir
                paths.append(str(root / entry.get("subfolder", "") / entry["filename"]))
    return paths


class _Bars:
    """tqdm bars driven by engine events (nodes, and steps inside a node)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.nodes = self.steps = None

    def start(self, total: int, label: str) -> None:
        if self.enabled:
            from tqdm import tqdm

            self.close()
            self.nodes = tqdm(total=total, desc=label, unit="node", leave=False, file=sys.stderr, disable=None)

    def __call__(self, event: Event) -> None:
        if self.nodes is None:
            return
        if event.kind == "start":
            self.nodes.set_postfix_str(f"{event.node_id} {event.class_type}")
        elif event.kind in ("end", "cached"):
            self.nodes.update(1)
            if self.steps is not None:
                self.steps.close()
                self.steps = None
        elif event.kind == "progress":
            from tqdm import tqdm

            if self.steps is None or self.steps.total != event.total:
                if self.steps is not None:
                    self.steps.close()
                self.steps = tqdm(total=event.total, desc=event.class_type, leave=False, file=sys.stderr, disable=None)
            self.steps.n = event.value
            self.steps.refresh()

    def close(self) -> None:
        for bar in (self.steps, self.nodes):
            if bar is not None:
                bar.close()
        self.nodes = self.steps = None


@contextlib.contextmanager
def _sigint(interrupt: Callable[[], None]) -> Iterator[None]:
    """First Ctrl-C calls ``interrupt`` (a cooperative stop); a second one stops at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pressed = []

    def handler(signum: int, frame: Any) -> None:  # noqa: ANN401
        if pressed:
            raise KeyboardInterrupt
        pressed.append(signum)
        interrupt()

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def _model_paths(args: argparse.Namespace) -> Iterator[None]:
    if args.models_dir is None and args.extra_model_paths is None:
        yield
        return
    from ..weights import folders as model_paths

    with model_paths.using(args.models_dir, args.extra_model_paths):
        yield


# ----------------------------------------------------------------------------- commands
def _runs(args: argparse.Namespace, registry: Mapping[str, type], names: Mapping[str, str] | None) -> Sweep:
    return Sweep(load(args.workflow, registry, names), args.set, registry)


def _invalid(args: argparse.Namespace, found: list[dict[str, Any]]) -> int:
    """Report validation problems (text on stderr, or the JSON document); the exit code."""
    _emit(args, {"ok": False, "error": {"type": "validation", "problems": found}}, _problem_text(found), err=True)
    return EXIT_INVALID


def _problem_text(found: list[dict[str, Any]]) -> str:
    seen, lines = set(), []
    for p in found:
        if p["message"] not in seen:
            seen.add(p["message"])
            lines.append(f"  - [{p['type']}] {p['message']}")
    more = [f"  ... and {len(lines) - 100} more (--json lists them all)"] if len(lines) > 100 else []
    return f"workflow is invalid ({len(lines)} problem(s)):\n" + "\n".join(lines[:100] + more)


def _cmd_validate(args: argparse.Namespace, registry: Mapping[str, type], names: Mapping[str, str] | None) -> int:
    runs = _runs(args, registry, names)
    if found := problems(runs, registry):
        return _invalid(args, found)
    _emit(args, {"ok": True, "prompts": len(runs), "nodes": len(runs.prompt)},
          f"{args.workflow}: valid ({len(runs.prompt)} nodes" + (f", {len(runs)} prompts)" if len(runs) > 1 else ")"))
    return EXIT_OK


def _cmd_run(args: argparse.Namespace, registry: Mapping[str, type], names: Mapping[str, str] | None) -> int:
    runs = _runs(args, registry, names)
    if found := problems(runs, registry):
        return _invalid(args, found)
    if args.ray is not None or args.resume:
        return _run_pool(args, runs, registry)
    bars = _Bars(enabled=not args.no_progress and not args.json)
    engine = Engine(registry, callback=bars)
    report: list[dict[str, Any]] = []
    started = time.perf_counter()
    try:
        with _sigint(engine.interrupt):
            for run in runs:
                prompt, index = run.prompt, run.index
                bars.start(len(analyse(prompt, registry).needed), f"prompt {index + 1}/{len(runs)}")
                result = engine.run(prompt, extra_pnginfo={"workflow": run.ui} if run.ui is not None else None)
                written = [path for nid in result.executed if nid in result.ui for path in _files_of(result.ui[nid], args.out)]
                report.append({"index": index, "set": run.chosen, "files": written, "executed": result.executed,
                               "cached": result.cached, "timings": result.timings})
                if not args.json:
                    label = " ".join([f"[{index + 1}/{len(runs)}]"] * (len(runs) > 1) + [f"{k}={v}" for k, v in run.chosen.items()])
                    print(f"{label or 'done'}: {len(result.executed)} node(s) run, {len(result.cached)} cached, "
                          f"{sum(result.timings.values()):.2f} s")
                    for path in written:
                        print(f"  wrote {path}")
                    for nid, seconds in sorted(result.timings.items(), key=lambda item: -item[1]) if args.timings else ():
                        print(f"  {1e3 * seconds:9.2f} ms  node {nid} ({prompt[nid]['class_type']})")
    except RunInterrupted as err:
        bars.close()
        _emit(args, {"ok": False, "runs": report, "error": {"type": "interrupted", "message": str(err),
                                                            "node_id": err.node_id}}, f"interrupted: {err}", err=True)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        bars.close()
        _emit(args, {"ok": False, "runs": report, "error": {"type": "interrupted", "message": "KeyboardInterrupt"}},
              "interrupted", err=True)
        return EXIT_INTERRUPTED
    except ExecutionError as err:
        bars.close()
        trace = "".join(traceback.format_exception(err.__cause__)) if err.__cause__ is not None else ""
        text = f"error: {err}" + (f"\n{trace}" if args.traceback else "\n(run with --traceback for details)")
        _emit(args, {"ok": False, "runs": report, "error": {
            "type": "execution", "message": str(err), "node_id": err.node_id, "class_type": err.class_type,
            "exception_type": err.error_type, "exception_message": err.error_message, "traceback": trace}}, text, err=True)
        return EXIT_EXECUTION
    bars.close()
    seconds = time.perf_counter() - started
    if args.json:
        _emit(args, {"ok": True, "runs": report, "seconds": seconds}, "")
    elif len(runs) > 1:
        print(f"{len(runs)} prompts in {seconds:.2f} s")
    return EXIT_OK


def _run_pool(args: argparse.Namespace, runs: Sweep, registry: Mapping[str, type]) -> int:
    """``--ray`` / ``--resume``: prompts on workers (:func:`~latent_ops.workflow.distributed.run_sweep`)."""
    from .distributed import PromptReport, RayUnavailable, WorkerSpec, run_sweep

    bar = None
    if not args.no_progress and not args.json:
        from tqdm import tqdm

        bar = tqdm(total=len(runs), desc="prompts", unit="prompt", file=sys.stderr, disable=None)
    stdout = sys.stdout  # Ray prints its own messages (a worker died, ...) on stdout: they go to stderr

    def say(text: str) -> None:
        return bar.write(text, file=stdout) if bar is not None else print(text, file=stdout)

    failed = 0

    def shown(report: PromptReport) -> None:
        nonlocal failed
        failed += report.status == "failed"
        if bar is not None:
            bar.set_postfix(failed=failed, refresh=False)
            bar.update(1)
        if not args.json:
            label = " ".join([f"[{report.index + 1}/{len(runs)}]"] + [f"{k}={v}" for k, v in report.chosen.items()])
            if report.status == "failed":
                trace = report.error.get("traceback") if args.traceback else None
                say(f"{label}: failed: {report.error['message']}" + (f"\n{trace.rstrip()}" if trace else ""))
            elif report.status == "skipped":
                say(f"{label}: written by an earlier run")
            else:
                say(f"{label}: {len(report.executed)} node(s) run, {len(report.cached)} cached, {report.seconds:.2f} s"
                    f" (worker {report.worker.get('worker', 0)})" + "".join(f"\n  wrote {f}" for f in _paths(args, report)))

    address = None if args.ray is None else (args.ray or os.environ.get("RAY_ADDRESS") or "local")
    stop = threading.Event()
    try:
        with _sigint(stop.set), contextlib.redirect_stdout(sys.stderr):
            done = run_sweep(runs, registry, address=address, workers=args.ray_workers, resume=args.resume,
                             spec=WorkerSpec(args.ray_cpus_per_worker, args.ray_gpus_per_worker),
                             models_dir=args.models_dir and args.models_dir.absolute(), on_result=shown, stop=stop,
                             device=args.device, dtype=args.dtype,
                             extra_model_paths=args.extra_model_paths and args.extra_model_paths.absolute())
    except RayUnavailable as err:
        raise UsageError(str(err)) from None
    finally:
        if bar is not None:
            bar.close()
    doc = done.to_dict()
    for entry, report in zip(doc["runs"], done.prompts, strict=True):
        entry["set"], entry["files"] = entry.pop("chosen"), _paths(args, report)
    summary = (f"{done.total} prompt(s): {done.succeeded} succeeded, {done.failed} failed, {done.skipped} written "
               f"before; {done.seconds:.2f} s on {len(done.workers)} worker(s)")
    if done.interrupted:
        _emit(args, doc, f"interrupted; {summary} (run again with --resume to finish)", err=True)
        return EXIT_INTERRUPTED
    _emit(args, doc, summary, err=not done.ok)
    return EXIT_OK if done.ok else EXIT_EXECUTION


def _paths(args: argparse.Namespace, report: Any) -> list[str]:  # noqa: ANN401 - a PromptReport
    return [str(args.out / f["path"]) if f["type"] == "output" else f["path"] for f in report.files]


def _cmd_nodes(args: argparse.Namespace, registry: Mapping[str, type], names: Mapping[str, str] | None) -> int:
    names = names or {}
    info = {kind: object_info(kind, cls, names.get(kind)) for kind, cls in sorted(registry.items())}
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return EXIT_OK
    width = max((len(k) for k in info), default=0)
    for kind, entry in info.items():
        flag = " (output)" if entry["output_node"] else ""
        print(f"{kind:<{width}}  {entry['display_name']}  [{entry['category']}]{flag}")
    return EXIT_OK


def _cmd_convert(args: argparse.Namespace, registry: Mapping[str, type], names: Mapping[str, str] | None) -> int:
    if args.output is not None and args.output.resolve() == args.workflow.resolve():  # never overwrite the input
        raise UsageError(f"convert: -o {args.output} is the input workflow; write the conversion to another file")
    workflow = load(args.workflow, registry, names)
    if args.to == "api":
        doc = workflow.prompt
    else:
        doc = workflow.ui if workflow.ui is not None else api_to_ui(workflow.prompt, registry, names)
    text = json.dumps(doc, indent=2) + "\n"
    if args.output is None:
        sys.stdout.write(text)
    else:
        files.write_atomic(args.output, text.encode(), overwrite=True)
    return EXIT_OK


_COMMANDS = {"run": _cmd_run, "validate": _cmd_validate, "nodes": _cmd_nodes, "convert": _cmd_convert}


def main(argv: Sequence[str] | None, registry: Mapping[str, type], display_names: Mapping[str, str] | None = None) -> int:
    """Run the ``latent-ops`` command line with ``registry``; returns the exit code."""
    words = list(sys.argv[1:] if argv is None else argv)
    if words[:1] == ["train-default"]:
        from ..embedded import train

        train.main(words[1:])
        return EXIT_OK
    parser = _parser()
    try:
        args = parser.parse_args(words)
    except SystemExit as stop:
        return int(stop.code or 0)
    in_dir = getattr(args, "input_dir", None)
    try:
        with files.using(input_dir=in_dir, output_dir=getattr(args, "out", None), temp_dir=getattr(args, "temp_dir", None)):
            with _model_paths(args) if hasattr(args, "models_dir") else contextlib.nullcontext(), devices.using(getattr(args, "device", None), getattr(args, "dtype", None)):
                return _COMMANDS[args.command](args, registry, display_names)
    except UsageError as err:
        _emit(args, {"ok": False, "error": {"type": "usage", "message": str(err)}}, f"latent-ops: {err}", err=True)
        return EXIT_USAGE
    except ValidationFailed as err:
        return _invalid(args, [p.to_dict() for p in err.problems])
    except (WorkflowError, files.FileAccessError) as err:
        _emit(args, {"ok": False, "error": {"type": "workflow", "message": str(err)}}, f"latent-ops: {err}", err=True)
        return EXIT_INVALID
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except (OSError, ValueError) as err:  # e.g. an unreadable extra_model_paths.yaml
        _emit(args, {"ok": False, "error": {"type": "usage", "message": str(err)}}, f"latent-ops: {err}", err=True)
        return EXIT_USAGE
