"""One long-lived sweep worker: runs prompts with one cached :class:`Engine` and returns the files.

A worker never writes into the user's output folder. Each prompt runs with a fresh private output
(and preview) folder; the files the prompt wrote there come back as bytes in an :class:`Outcome`,
and the driver (:mod:`latent_ops.workflow.outputs`) gives them their final names. So no shared
filesystem is assumed, and the same class runs in-process or as a Ray actor
(:mod:`latent_ops.workflow.ray_pool`).

Which output nodes a prompt runs is decided by the driver (:func:`local_outputs`): exactly those a
single-process run of the same sweep would execute, so both write the same files.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
import traceback
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import devices
from ..media import files
from ..media.folders import COUNTED
from .engine import Engine, RunResult, order
from .errors import ExecutionError, RunInterrupted, ValidationFailed
from .validate import analyse


@dataclass(frozen=True)
class Task:
    """One prompt of a sweep as sent to a worker.

    Attributes:
        index: position in the sweep (from 0). prompt / ui: API prompt and UI workflow (or None).
        outputs: the output node ids to run (see :func:`local_outputs`); ancestors run as needed.
        attempt: 0 the first time, +1 each time a worker died while running it.
        keys: the driver's cache keys of ``outputs``, so the worker need not compute them.
    """

    index: int
    prompt: dict[str, Any]
    ui: dict[str, Any] | None
    outputs: tuple[str, ...]
    attempt: int = 0
    keys: tuple[bytes, ...] = ()


@dataclass(frozen=True)
class ProducedFile:
    """A file a prompt wrote: ``type`` "output" or "temp", ``name`` relative POSIX path, ``data`` its bytes."""

    type: str
    name: str
    data: bytes


@dataclass(frozen=True)
class Outcome:
    """What a worker returns for one :class:`Task` (``error`` set = the prompt failed on its own).

    ``error`` keys: ``type`` ("execution", "validation", "error", or "worker": its worker kept
    dying), ``message``, and for a node error ``node_id``, ``class_type``, ``exception_type``,
    ``exception_message``, ``traceback``. ``attempt`` is the task's.
    """

    index: int
    files: tuple[ProducedFile, ...] = ()
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    executed: tuple[str, ...] = ()
    cached: tuple[str, ...] = ()
    worker: dict[str, Any] = field(default_factory=dict)
    error: dict[str, Any] | None = None
    attempt: int = 0
    cpu: float = 0.0


class SweepEngine(Engine):
    """An :class:`Engine` that can name each node's cache key and re-run chosen nodes."""

    def plan(self, prompt: Mapping[str, Any], outputs: Iterable[str] | None = None) -> tuple[dict[str, bytes], list[str]]:
        """Cache key of every node a run of ``prompt`` needs, in execution order, and the output nodes.

        Nothing runs; ``IS_CHANGED`` is called as in a run.

        Raises:
            ValidationFailed: an invalid prompt.
        """
        checked = analyse(prompt, self.registry, outputs)
        if checked.problems:
            raise ValidationFailed(checked.problems)
        sigs: dict[str, bytes] = {}
        for nid in order(prompt, checked.needed, checked.deps):
            sigs[nid] = self._signature(nid, checked.defs[nid], prompt[nid].get("inputs", {}), sigs)
        return sigs, checked.targets

    def run_fresh(self, prompt: Mapping[str, Any], outputs: Iterable[str], extra_pnginfo: Mapping[str, Any] | None = None,
                  keys: Iterable[bytes] = ()) -> RunResult:
        """Run only ``outputs`` (and their ancestors), executing those nodes even if they are cached.

        ``keys`` (their cache keys, if the caller knows them) are forgotten first; an output that
        still came from the cache is found by its own key and run again.
        """
        outputs = list(outputs)
        for key in keys:
            self._cache.pop(key, None)
        result = self.run(prompt, extra_pnginfo=extra_pnginfo, outputs=outputs)
        missed = [nid for nid in outputs if nid not in result.executed]
        if missed and self.use_cache:
            sigs = self.plan(prompt, missed)[0]
            for nid in missed:
                self._cache.pop(sigs[nid], None)
            again = self.run(prompt, extra_pnginfo=extra_pnginfo, outputs=missed)
            result.executed += again.executed
            result.timings.update(again.timings)
            result.ui.update(again.ui)
        return result


def local_outputs(sigs: Mapping[str, bytes], outputs: Iterable[str], previous: Iterable[bytes]) -> tuple[str, ...]:
    """The output nodes a single-process run executes, given the previous prompt's cache keys.

    The engine keeps the latest run's entries, and identical nodes of one prompt run once; so an
    output node runs unless its key was needed by the previous prompt or by a node before it.

    Args:
        sigs: node id -> cache key of this prompt, in execution order (:meth:`SweepEngine.plan`).
        outputs: this prompt's output node ids. previous: the keys of the prompt run before it.
    """
    wanted, seen, chosen = set(outputs), set(previous), []
    for nid, sig in sigs.items():
        if nid in wanted and sig not in seen:
            chosen.append(nid)
        seen.add(sig)
    return tuple(chosen)


def _counter_key(name: str) -> tuple[str, str, int, str]:
    folder, _, base = name.rpartition("/")
    match = COUNTED.match(base)
    return (folder, match["stem"], int(match["counter"]), match["ext"]) if match else (folder, base, 0, "")


def collect(root: Path, kind: str) -> list[ProducedFile]:
    """Every file under ``root`` (hidden temporaries skipped), in the order a counter gave them out."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for filename in filenames:
            if not filename.startswith(".tmp-"):
                path = Path(dirpath) / filename
                found.append(ProducedFile(kind, path.relative_to(root).as_posix(), path.read_bytes()))
    return sorted(found, key=lambda f: _counter_key(f.name))


def error_of(err: BaseException) -> dict[str, Any]:
    """The JSON-ready ``error`` of an :class:`Outcome` for an exception raised by a prompt."""
    if isinstance(err, ExecutionError):
        cause = err.__cause__
        trace = "".join(traceback.format_exception(cause)) if cause is not None else ""
        return {"type": "execution", "message": str(err), "node_id": err.node_id, "class_type": err.class_type,
                "exception_type": err.error_type, "exception_message": err.error_message, "traceback": trace}
    kind = "validation" if isinstance(err, ValidationFailed) else "error"
    return {"type": kind, "message": f"{type(err).__name__}: {err}" if kind == "error" else str(err)}


def _scratch_root() -> str | None:
    """Where a worker's private folders go: RAM (``/dev/shm``) when it has 1 GiB free, else the temp folder.

    A prompt's files are written there, read back and deleted at once; on a disk, the ``fsync`` of
    each atomic write alone costs milliseconds per file for nothing.
    """
    try:
        stats = os.statvfs("/dev/shm")
        if os.access("/dev/shm", os.W_OK) and stats.f_bavail * stats.f_frsize >= 1 << 30:
            return "/dev/shm"
    except (OSError, AttributeError):  # no /dev/shm (macOS), or no statvfs (Windows)
        pass
    return None


class SweepWorker:
    """Runs :class:`Task` objects with one engine whose cache lives as long as the worker.

    Args:
        registry: class_type -> node class (or a function returning it, for pickling by reference).
        input_dir: the input folder; or ``inputs`` ({relative name: bytes}) copied to a private one.
        models_dir / extra_model_paths: model lookup, as ``latent-ops run --models-dir`` (paths on
            the worker's machine). device / dtype: names as ``--device``/``--dtype`` take them
            (None: ``$LATENT_OPS_DEVICE``/``$LATENT_OPS_DTYPE`` here, else auto). threads: torch
            CPU threads for this worker (None: unchanged).
        identity: what the worker reports about itself (node id, process id, ...).

    Raises:
        DeviceError: the device is not available where the worker runs.
    """

    def __init__(self, registry: Any, *, input_dir: str | Path | None = None,  # noqa: ANN401
                 inputs: Mapping[str, bytes] | None = None, models_dir: str | None = None,
                 extra_model_paths: str | None = None, device: str | None = None, dtype: str | None = None,
                 threads: int | None = None, identity: Mapping[str, Any] | None = None) -> None:
        import torch

        if threads is not None:
            torch.set_num_threads(int(threads))
        self.registry = registry() if callable(registry) and not isinstance(registry, Mapping) else registry
        self.engine = SweepEngine(self.registry)
        self.models = (models_dir, extra_model_paths)
        self.placement = (device, dtype)
        with devices.using(device, dtype):  # an unavailable device fails here, before any prompt
            where = devices.describe(devices.compute_device())
        self.scratch = Path(tempfile.mkdtemp(prefix="latent-ops-worker-", dir=_scratch_root()))
        self.input_dir = Path(input_dir) if input_dir is not None else self.scratch / "input"
        self.identity = {"pid": os.getpid(), **dict(identity or {}), "device": where,
                         "threads": torch.get_num_threads()}
        self.setup(inputs or {})

    def setup(self, inputs: Mapping[str, bytes]) -> dict[str, Any]:
        """Copy input files (``{relative name: bytes}``) into the input folder; returns :meth:`info`."""
        for name, data in inputs.items():
            target = self.input_dir / files.safe_name(name, "input name")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        return self.info()

    def info(self) -> dict[str, Any]:
        """What this worker reports about itself (also a cheap liveness check)."""
        return dict(self.identity)

    def interrupt(self) -> None:
        """Stop the running prompt at its next node or progress report."""
        self.engine.interrupt()

    @contextlib.contextmanager
    def _folders(self) -> Iterator[tuple[Path, Path]]:
        """A fresh private output and preview folder, with the worker's models and device chosen."""
        out, temp = Path(tempfile.mkdtemp(dir=self.scratch)), Path(tempfile.mkdtemp(dir=self.scratch))
        models_dir, extra = self.models
        try:
            with contextlib.ExitStack() as stack:
                stack.enter_context(files.using(input_dir=self.input_dir, output_dir=out, temp_dir=temp))
                stack.enter_context(devices.using(*self.placement))
                if models_dir is not None or extra is not None:
                    from ..weights import folders

                    stack.enter_context(folders.using(models_dir, extra))
                yield out, temp
        finally:
            shutil.rmtree(out, ignore_errors=True)
            shutil.rmtree(temp, ignore_errors=True)

    def run(self, task: Task) -> Outcome:
        """Run one prompt; a failure of the prompt itself comes back as ``Outcome.error``.

        Raises:
            RunInterrupted: :meth:`interrupt` was called.
        """
        start, cpu = time.perf_counter(), time.process_time()
        extra = {"workflow": task.ui} if task.ui is not None else None
        try:
            with self._folders() as (out, temp):
                result = self.engine.run_fresh(task.prompt, task.outputs, extra_pnginfo=extra, keys=task.keys)
                produced = collect(out, "output") + collect(temp, "temp")
        except RunInterrupted:
            raise
        except Exception as err:  # noqa: BLE001 - any failure of this prompt is reported, the worker lives on
            return Outcome(task.index, seconds=time.perf_counter() - start, worker=self.info(), error=error_of(err),
                           attempt=task.attempt, cpu=time.process_time() - cpu)
        return Outcome(task.index, tuple(produced), time.perf_counter() - start, dict(result.timings),
                       tuple(result.executed), tuple(result.cached), self.info(), attempt=task.attempt,
                       cpu=time.process_time() - cpu)

    def close(self) -> None:
        """Delete the worker's scratch folder."""
        shutil.rmtree(self.scratch, ignore_errors=True)
