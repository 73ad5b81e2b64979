"""Run the prompts of a sweep on a pool of workers (Ray, or this process) and write their files.

    from latent_ops.workflow import load, run_sweep
    from latent_ops.workflow.sweep import Sweep
    runs = Sweep(load("txt2img.json", registry), ["Sampler A.seed=1..64"], registry)
    report = run_sweep(runs, registry, address="local", workers=2, out_dir="output")
    log.info("%d written, %d failed", report.succeeded, report.failed)  # report.prompts says why

Workers are long-lived (a model is loaded once per worker and the node cache lives across
prompts) and send each prompt's files back; this process writes them, prompt by prompt in sweep
order, through the same counter as a local run, so a sweep run here and one run with
``latent-ops run`` write the same files under the same names (byte-identical when the workers
use the same number of torch threads as the local run: CPU kernels sum in a thread-dependent
order). A prompt that fails is reported with its node error and the others go on; a worker that
dies has its prompts run again elsewhere; a manifest in the output folder lets ``resume`` skip
what an earlier, interrupted run already wrote.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import FileAccessError
from ..media import files
from . import outputs as placing
from .errors import RunInterrupted
from .ray_pool import RayPool, RayUnavailable, WorkerSpec, cluster_workers, connect, shutdown
from .sweep_worker import Outcome, SweepEngine, SweepWorker, Task, error_of, local_outputs

__all__ = ["PromptReport", "RayUnavailable", "SweepReport", "WorkerSpec", "run_sweep"]

REORDER = 4
"""Results held for in-order writing, as a multiple of the prompts in flight (bounds memory)."""


@dataclass
class PromptReport:
    """What happened to one prompt.

    Attributes:
        index: position in the sweep. status: "ok", "failed" or "skipped" (``resume``: already written).
        chosen: the swept values (``{"node.input": value}``). files: ``{"type", "path"}`` written
            (output paths relative to the output folder, previews absolute).
        seconds / cpu: the worker's wall and CPU time for the prompt. latency: from handing it out to
            its files written.
        timings / executed / cached: per node, as :class:`~latent_ops.workflow.RunResult`.
        worker: which worker ran it (``worker``, ``pid``, and on Ray ``node_id``, ``actor_id``, ``host``).
        attempts: times it was started (> 1 after a worker died). error: why it failed.
    """

    index: int
    status: str
    chosen: dict[str, Any] = field(default_factory=dict)
    files: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    cpu: float = 0.0
    latency: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    executed: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    worker: dict[str, Any] = field(default_factory=dict)
    attempts: int = 0
    error: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


@dataclass
class SweepReport:
    """The whole sweep: every prompt handled (in order), time taken, whether it was interrupted, and
    what each worker reported when it (last) started (``worker``, ``pid``; on Ray ``node_id``, ...)."""

    prompts: list[PromptReport]
    total: int
    seconds: float
    first_result: float | None
    interrupted: bool = False
    workers: list[dict[str, Any]] = field(default_factory=list)

    def count(self, status: str) -> int:
        """How many prompts ended with ``status``."""
        return sum(p.status == status for p in self.prompts)

    @property
    def succeeded(self) -> int:
        return self.count("ok")

    @property
    def failed(self) -> int:
        return self.count("failed")

    @property
    def skipped(self) -> int:
        return self.count("skipped")

    @property
    def ok(self) -> bool:
        """Every prompt succeeded (or was already done) and nothing was interrupted."""
        return not self.interrupted and self.failed == 0 and len(self.prompts) == self.total

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"ok": self.ok, "total": self.total, "succeeded": self.succeeded, "failed": self.failed,
                "skipped": self.skipped, "interrupted": self.interrupted, "seconds": self.seconds,
                "first_result": self.first_result, "workers": self.workers,
                "runs": [p.to_dict() for p in self.prompts]}


@dataclass
class _Item:
    index: int
    key: str
    chosen: dict[str, Any]
    prompt: dict[str, Any]
    ui: dict[str, Any] | None
    sigs: dict[str, bytes] = field(default_factory=dict)
    targets: list[str] = field(default_factory=list)
    task: Task | None = None
    outcome: Outcome | None = None
    status: str = "ok"
    submitted: float = 0.0


class _LocalPool:
    """The pool interface run in this process, one prompt at a time; ``stop`` interrupts the prompt."""

    capacity = 1
    started: dict[int, dict[str, Any]]

    def __init__(self, registry: Mapping[str, type], options: Mapping[str, Any], stop: threading.Event) -> None:
        self.worker = SweepWorker(registry, input_dir=files.current().input_dir, **options)
        self.started = {0: {"worker": 0, **self.worker.info()}}
        self.todo: deque[Task] = deque()
        self.closed = threading.Event()
        threading.Thread(target=self._watch, args=(stop,), daemon=True).start()

    def _watch(self, stop: threading.Event) -> None:
        while not self.closed.is_set():
            if stop.wait(0.1):
                self.worker.interrupt()
                return

    def submit(self, task: Task) -> None:
        self.todo.append(task)

    def poll(self, timeout: float) -> list[Outcome]:
        return [self.worker.run(self.todo.popleft())] if self.todo else []

    def interrupt(self) -> None:
        self.worker.interrupt()

    def close(self) -> None:
        self.closed.set()
        self.worker.close()


def _entries(items: Iterable[Any]) -> Iterator[tuple[int, dict[str, Any], dict[str, Any] | None, dict[str, Any]]]:
    for index, item in enumerate(items):
        if hasattr(item, "prompt"):  # a latent_ops.workflow.sweep.Run
            yield index, item.prompt, getattr(item, "ui", None), dict(getattr(item, "chosen", {}) or {})
        elif isinstance(item, Mapping):
            yield index, dict(item), None, {}
        else:
            prompt, ui = item
            yield index, prompt, ui, {}


def input_files(items: Iterable[Any]) -> dict[str, bytes]:
    """The input-folder files the prompts name (any constant text input that is such a file)."""
    names: set[str] = set()
    template, sets = getattr(items, "prompt", None), getattr(items, "sets", None)
    if isinstance(template, dict) and isinstance(sets, list):  # a Sweep: its template and its values
        prompts: Iterable[Mapping[str, Any]] = [template]
        names.update(v for _, _, values in sets for v in values if isinstance(v, str))
    else:
        prompts = (prompt for _, prompt, _, _ in _entries(items))
    for prompt in prompts:
        for spec in prompt.values():
            inputs = spec.get("inputs", {}) if isinstance(spec, dict) else {}
            names.update(v for v in inputs.values() if isinstance(v, str))
    names = {name for name in names if 0 < len(name) < 4096}
    found = {}
    for name in sorted(names):
        with contextlib.suppress(FileAccessError, OSError):
            found[name] = files.resolve_input(name).read_bytes()
    return found


class _Driver:
    """Plans each prompt, keeps the pool busy, writes results in sweep order."""

    def __init__(self, registry: Mapping[str, type], pool: Any, resume: bool,  # noqa: ANN401
                 on_result: Callable[[PromptReport], None] | None, stop: threading.Event) -> None:
        self.registry, self.pool, self.on_result, self.stop = registry, pool, on_result, stop
        self.planner = SweepEngine(registry)
        self.manifest = placing.Manifest(files.current().output_dir)
        self.records = self.manifest.read() if resume else {}
        self.resume = resume
        self.previous: set[bytes] = set()  # cache keys of the prompt planned last
        self.written: set[bytes] = set()  # ... and of the prompt written (or skipped as done) last
        self.queue: deque[_Item] = deque()
        self.by_index: dict[int, _Item] = {}
        self.reports: list[PromptReport] = []
        self.first: float | None = None

    def _plan(self, index: int, prompt: dict[str, Any], ui: dict[str, Any] | None, chosen: dict[str, Any]) -> _Item:
        item = _Item(index, placing.prompt_key(prompt, ui), chosen, prompt, ui)
        try:
            item.sigs, item.targets = self.planner.plan(prompt)
        except Exception as err:  # noqa: BLE001 - e.g. an IS_CHANGED that raises: this prompt fails
            item.outcome = Outcome(index, error=error_of(err))
            return item
        if self.resume and self.manifest.finished(self.records, index, item.key):
            item.status, item.outcome = "skipped", Outcome(index)
        else:
            self._hand_out(item, local_outputs(item.sigs, item.targets, self.previous))
        self.previous = set(item.sigs.values())
        return item

    def _hand_out(self, item: _Item, wanted: tuple[str, ...]) -> None:
        """Run the output nodes ``wanted`` of ``item`` (none: it writes nothing, like a fully cached local run)."""
        if not wanted:
            item.task, item.outcome = None, Outcome(item.index)
            return
        attempt = item.task.attempt if item.task is not None else 0
        keys = tuple(item.sigs[nid] for nid in wanted)
        item.task, item.outcome = Task(item.index, item.prompt, item.ui, wanted, attempt, keys), None
        item.submitted = time.perf_counter()
        self.pool.submit(item.task)

    def _settle(self, item: _Item) -> bool:
        """Whether ``item`` ran the outputs a local run would; if not (the prompt before it failed), run it again.

        Outputs are planned against the prompt before; when that one failed, a local run's cache
        would hold the last prompt that succeeded instead, so the plan is redone against that.
        """
        if item.status == "skipped" or item.outcome.error is not None or not item.sigs:
            return True
        wanted = local_outputs(item.sigs, item.targets, self.written)
        if wanted == (item.task.outputs if item.task is not None else ()):
            return True
        self._hand_out(item, wanted)
        return item.outcome is not None

    def _in_flight(self) -> int:
        return sum(1 for item in self.queue if item.task is not None and item.outcome is None and item.submitted)

    def _fill(self, source: Iterator[tuple[int, dict[str, Any], dict[str, Any] | None, dict[str, Any]]]) -> bool:
        """Plan and hand out prompts while the pool has room; False once the source is exhausted."""
        while not self.stop.is_set() and len(self.queue) < REORDER * self.pool.capacity:
            if self._in_flight() >= self.pool.capacity:
                return True
            entry = next(source, None)
            if entry is None:
                return False
            item = self._plan(*entry)
            self.queue.append(item)
            self.by_index[item.index] = item
        return True

    def _write(self, item: _Item, started: float) -> None:
        outcome = item.outcome
        report = PromptReport(item.index, item.status, item.chosen, seconds=outcome.seconds, cpu=outcome.cpu,
                              timings=outcome.timings,
                              executed=list(outcome.executed), cached=list(outcome.cached), worker=outcome.worker,
                              attempts=outcome.attempt + 1 if item.task is not None else 0, error=outcome.error)
        if outcome.error is not None:
            report.status = "failed"
        elif item.status == "skipped":
            self.written = set(item.sigs.values())
        else:
            try:
                placed = placing.place(outcome.files)
                self.manifest.append(item.index, item.key, placed)
            except (OSError, FileAccessError) as err:
                report.status, report.error = "failed", {"type": "write", "message": f"{type(err).__name__}: {err}"}
            else:
                report.files = [{"type": t.type, "path": placing.relative(t) if t.type == "output" else str(t.path)}
                                for t in placed]
                self.written = set(item.sigs.values())
                if self.first is None and item.task is not None:
                    self.first = time.perf_counter() - started
        report.latency = time.perf_counter() - item.submitted if item.submitted else 0.0
        self.by_index.pop(item.index, None)
        self.reports.append(report)
        if self.on_result is not None:
            self.on_result(report)

    def run(self, items: Iterable[Any], started: float) -> bool:
        """Drive the sweep; returns whether it was interrupted."""
        source, more = _entries(items), True
        try:
            while True:
                more = self._fill(source) if more else False
                if self.stop.is_set():
                    break
                if not self.queue:
                    return False
                for outcome in self.pool.poll(0.05):
                    item = self.by_index.get(outcome.index)
                    if item is not None and item.outcome is None:
                        item.outcome = outcome
                while self.queue and self.queue[0].outcome is not None and not self.stop.is_set():
                    if self._settle(self.queue[0]):
                        self._write(self.queue.popleft(), started)
        except (KeyboardInterrupt, RunInterrupted):
            self.stop.set()
        self.pool.interrupt()
        return True


def run_sweep(prompts: Iterable[Any], registry: Mapping[str, type], *, address: str | None = "local",
              workers: int | None = None, spec: WorkerSpec | None = None, out_dir: str | Path | None = None,
              input_dir: str | Path | None = None, temp_dir: str | Path | None = None,
              models_dir: str | Path | None = None, extra_model_paths: str | Path | None = None,
              device: str | None = None, dtype: str | None = None, resume: bool = False, on_result: Callable[[PromptReport], None] | None = None,
              stop: threading.Event | None = None) -> SweepReport:
    """Run ``prompts`` on Ray workers (or in this process) and write their files like a local run.

    Args:
        prompts: :class:`~latent_ops.workflow.sweep.Run` objects (``Sweep`` yields them), API
            prompt dicts, or ``(prompt, ui)`` pairs; already validated.
        registry: class_type -> node class; on Ray its classes must be importable on every node.
        address: ``"local"`` (a private cluster on 127.0.0.1), ``"auto"`` (the cluster ``ray start``
            made here), ``"HOST:PORT"``, ``"ray://HOST:PORT"``, or ``None`` to run in this process.
            An existing Ray connection of this process is used as it is.
        workers: Ray workers to start (default: as many as the cluster holds, at most one per prompt).
        spec: resources per worker (default 1 CPU, which is also its torch thread count; no GPU).
        out_dir / input_dir / temp_dir: folders (default: the active ``files.using`` ones).
        models_dir / extra_model_paths: model lookup; on Ray these paths must exist on each node.
        device / dtype: as ``--device``/``--dtype`` name them, applied on each worker (None: the
            worker's ``$LATENT_OPS_DEVICE``/``$LATENT_OPS_DTYPE``, else auto: on Ray, the GPU it was given).
        resume: skip prompts the output folder's manifest lists as written (files still there).
        on_result: called with each :class:`PromptReport`, in sweep order, as its files are written.
        stop: set it (e.g. from a signal handler) to cancel the outstanding prompts.

    Raises:
        RayUnavailable: Ray missing, a malformed address, an unreachable cluster, or no worker started.
    """
    started = time.perf_counter()
    spec = spec or WorkerSpec()
    stop = stop or threading.Event()
    if address is not None and iter(prompts) is prompts:
        prompts = list(prompts)  # walked twice: for the input files, then to run
    total = len(prompts) if hasattr(prompts, "__len__") else 0
    options = {"models_dir": str(models_dir) if models_dir is not None else None,
               "extra_model_paths": str(extra_model_paths) if extra_model_paths is not None else None,
               "device": device, "dtype": dtype}
    with files.using(input_dir=input_dir, output_dir=out_dir, temp_dir=temp_dir):
        owned = False
        try:
            if address is None:
                pool: Any = _LocalPool(registry, options, stop)
            else:
                owned = connect(address, min_cpus=(workers or 1) * spec.cpus)
                fits = cluster_workers(spec)
                if fits == 0 and address == "local":  # a private cluster cannot grow
                    raise RayUnavailable(f"this machine has no room for a worker asking for {spec.cpus:g} CPU "
                                         f"and {spec.gpus:g} GPU")
                count = workers or max(1, min(fits, total or fits))
                options["inputs"] = input_files(prompts)
                pool = RayPool(count, spec, registry, options)
            try:
                driver = _Driver(registry, pool, resume, on_result, stop)
                interrupted = driver.run(prompts, started)
            finally:
                workers_seen = [pool.started[n] for n in sorted(pool.started)]
                pool.close()
        finally:
            if owned:
                shutdown()
    return SweepReport(driver.reports, total or len(driver.reports), time.perf_counter() - started, driver.first,
                       interrupted, workers_seen)
