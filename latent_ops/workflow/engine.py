"""Run a validated API prompt with a node registry: dependency order, caching, progress, interrupt.

Caching follows ComfyUI's classic cache. A node's signature is its class, its constant inputs,
its ``IS_CHANGED`` result and its ancestors' signatures (plus its id for ``NOT_IDEMPOTENT`` nodes
and nodes with a hidden ``UNIQUE_ID``). When the same :class:`Engine` runs a modified prompt,
nodes whose signature is unchanged are not run again; that includes output nodes, so an
unchanged ``SaveImage`` does not write its files a second time (its cached ``ui`` is reported).
Identical nodes (same signature) in one prompt run once. Only the latest run's entries are
kept, so memory stays bounded during a sweep.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .. import progress
from .errors import ExecutionError, RunInterrupted, ValidationFailed
from .schema import NodeDef
from .validate import analyse, coerce, parents, sort_key


@dataclass(frozen=True)
class Event:
    """An engine event: ``kind`` is "start", "end", "cached" or "progress"."""

    kind: str
    node_id: str
    class_type: str
    seconds: float = 0.0
    value: int = 0
    total: int = 0


EventCallback = Callable[[Event], None]
_PROCESS_EXITS = (KeyboardInterrupt, SystemExit, GeneratorExit)
"""What a node may raise that ends the run as it is; anything else (even a BaseException such as
pyo3's ``PanicException``) becomes an :class:`ExecutionError` naming the node."""


@dataclass
class RunResult:
    """What a run produced.

    Attributes:
        outputs: node id -> output tuple (for list outputs, each item is a list).
        ui: output node id -> its ``ui`` dict (e.g. ``{"images": [{"filename", "subfolder", "type"}]}``).
        timings: node id -> seconds spent in the node this run (executed nodes only).
        executed / cached: node ids run this time / taken from the cache, in order.
    """

    outputs: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    ui: dict[str, dict[str, Any]] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    executed: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)


@dataclass
class _Entry:
    outputs: tuple[Any, ...]
    is_list: tuple[bool, ...]
    ui: dict[str, Any] | None


def order(prompt: Mapping[str, Mapping[str, Any]], needed: Iterable[str],
          deps: Mapping[str, list[str]] | None = None) -> list[str]:
    """Topological order of ``needed`` (parents first; ties broken by node id)."""
    if deps is None:
        deps = {nid: parents(prompt[nid].get("inputs", {})) for nid in prompt}
    done: set[str] = set()
    out: list[str] = []
    for start in sorted(needed, key=sort_key):
        stack = [(start, False)]
        while stack:
            nid, expanded = stack.pop()
            if nid in done:
                continue
            if expanded:
                done.add(nid)
                out.append(nid)
                continue
            stack.append((nid, True))
            stack.extend((p, False) for p in reversed(deps[nid]) if p not in done)
    return out


def _hidden_value(kind: str, nid: str, prompt: Any, extra_pnginfo: Any) -> Any:  # noqa: ANN401
    return {"PROMPT": prompt, "EXTRA_PNGINFO": extra_pnginfo, "UNIQUE_ID": nid}.get(kind)


class Engine:
    """Executes API prompts with an injected registry and keeps a cache between runs.

    Args:
        registry: class_type -> V1 node class. callback: receives :class:`Event` objects.
        cache: keep outputs between runs (``False`` re-runs everything each time).
    """

    def __init__(self, registry: Mapping[str, type], callback: EventCallback | None = None, cache: bool = True) -> None:
        self.registry = registry
        self.callback = callback
        self.use_cache = cache
        self._cache: dict[bytes, _Entry] = {}
        self._objects: dict[tuple[str, str], Any] = {}
        self._interrupt = threading.Event()
        self._current: tuple[str, str] | None = None
        self._nonce = itertools.count()

    def interrupt(self) -> None:
        """Ask the running prompt to stop at the next node or progress report (thread-safe)."""
        self._interrupt.set()

    def clear_cache(self) -> None:
        """Forget cached outputs and node instances."""
        self._cache.clear()
        self._objects.clear()

    def _check_interrupt(self, nid: str, class_type: str) -> None:
        if self._interrupt.is_set():
            self._interrupt.clear()
            raise RunInterrupted(nid, class_type)

    def _progress_hook(self, done: int, total: int) -> None:
        if self._interrupt.is_set():
            raise progress.Interrupted("interrupt requested")
        if self.callback is not None and self._current is not None:
            self.callback(Event("progress", self._current[0], self._current[1], value=done, total=total))

    def run(self, prompt: Mapping[str, Any], extra_pnginfo: Mapping[str, Any] | None = None,
            outputs: Iterable[str] | None = None) -> RunResult:
        """Validate and run ``prompt``; only output nodes (or ``outputs``) and their ancestors run.

        Raises:
            ValidationFailed: listing every problem; nothing has run.
            ExecutionError: a node raised anything but KeyboardInterrupt/SystemExit/GeneratorExit
                (``__cause__`` is its exception).
            RunInterrupted: :meth:`interrupt` was called (or a library loop raised Interrupted).
        """
        checked = analyse(prompt, self.registry, outputs)
        if checked.problems:
            raise ValidationFailed(checked.problems)
        result = RunResult()
        values: dict[str, _Entry] = {}
        signatures: dict[str, bytes] = {}
        keep: dict[bytes, _Entry] = {}
        ok = False
        try:
            with progress.reporting(self._progress_hook):
                for nid in order(prompt, checked.needed, checked.deps):
                    nd = checked.defs[nid]
                    inputs = prompt[nid].get("inputs", {})
                    self._check_interrupt(nid, nd.class_type)
                    sig = self._signature(nid, nd, inputs, signatures)
                    signatures[nid] = sig
                    entry = (keep.get(sig) or self._cache.get(sig)) if self.use_cache else None
                    if entry is not None:
                        result.cached.append(nid)
                        if self.callback is not None:
                            self.callback(Event("cached", nid, nd.class_type))
                    else:
                        entry = self._execute(nid, nd, inputs, values, prompt, extra_pnginfo, result)
                    values[nid] = keep[sig] = entry
                    result.outputs[nid] = entry.outputs
                    if entry.ui is not None:
                        result.ui[nid] = entry.ui
            ok = True
        finally:
            self._current = None
            if self.use_cache:
                self._cache = keep if ok else {**self._cache, **keep}
        return result

    def _signature(self, nid: str, nd: NodeDef, inputs: Mapping[str, Any], signatures: Mapping[str, bytes]) -> bytes:
        parts: list[Any] = [nd.class_type, nid if nd.not_idempotent else None]
        consts: dict[str, Any] = {}
        for name in sorted(inputs):
            value = inputs[name]
            if isinstance(value, list) and len(value) == 2 and name in nd.by_name:
                parts.append((name, signatures[str(value[0])], value[1]))
            elif name in nd.by_name:
                parts.append((name, value))
                consts[name] = value
        if nd.is_changed is not None:
            try:
                accepted = nd.is_changed_params
                changed = nd.is_changed(**{i.name: consts.get(i.name) for i in nd.inputs
                                           if accepted is None or i.name in accepted})
            except _PROCESS_EXITS:
                raise
            except BaseException as err:
                raise ExecutionError(nid, nd.class_type, err) from err
            if isinstance(changed, float) and math.isnan(changed):
                changed = ("NaN", next(self._nonce))  # never equal: always re-run
            parts.append(("IS_CHANGED", changed))
        return hashlib.blake2b(repr(parts).encode(), digest_size=16).digest()

    def _execute(self, nid: str, nd: NodeDef, inputs: Mapping[str, Any], values: Mapping[str, _Entry],
                 prompt: Any, extra_pnginfo: Any, result: RunResult) -> _Entry:  # noqa: ANN401
        kwargs: dict[str, Any] = {}
        listed: set[str] = set()
        for name, value in inputs.items():
            inp = nd.by_name.get(name)
            if inp is None:
                continue
            if isinstance(value, list):
                src = values[str(value[0])]
                kwargs[name] = src.outputs[value[1]]
                if src.is_list[value[1]]:
                    listed.add(name)
            else:
                if isinstance(value, dict) and "__value__" in value:
                    value = value["__value__"]
                try:
                    kwargs[name] = coerce(inp, value)
                except (TypeError, ValueError) as err:
                    raise ExecutionError(nid, nd.class_type, err) from err
        for name, kind in nd.hidden.items():
            kwargs[name] = _hidden_value(kind, nid, prompt, extra_pnginfo)
        key = (nid, nd.class_type)
        obj = self._objects.get(key)
        if obj is None:
            obj = self._objects[key] = nd.cls()
        fn = getattr(obj, nd.function)
        self._current = key
        if self.callback is not None:
            self.callback(Event("start", nid, nd.class_type))
        start = time.perf_counter()
        try:
            entry = self._call(fn, nd, kwargs, listed)
        except RunInterrupted:
            raise
        except progress.Interrupted:
            self._interrupt.clear()
            raise RunInterrupted(nid, nd.class_type) from None
        except _PROCESS_EXITS:
            raise
        except BaseException as err:  # also what Python does not call an Exception (a Rust panic)
            raise ExecutionError(nid, nd.class_type, err) from err
        seconds = time.perf_counter() - start
        result.timings[nid] = seconds
        result.executed.append(nid)
        if self.callback is not None:
            self.callback(Event("end", nid, nd.class_type, seconds=seconds))
        return entry

    @staticmethod
    def _unpack(nd: NodeDef, returned: Any) -> tuple[tuple[Any, ...], dict[str, Any] | None]:  # noqa: ANN401
        ui = None
        if isinstance(returned, dict):
            if "expand" in returned:
                raise ValueError("node expansion ('expand') is not supported by the headless engine")
            ui = returned.get("ui")
            returned = returned.get("result", ())
        if returned is not None and not isinstance(returned, (tuple, list)):
            raise ValueError(f"must return a tuple (or a dict with 'ui'/'result'), got {type(returned).__name__}")
        out = () if returned is None else tuple(returned)
        if len(out) != len(nd.output_types):
            raise ValueError(f"returned {len(out)} value(s) but RETURN_TYPES declares {len(nd.output_types)}")
        return out, ui

    def _call(self, fn: Callable[..., Any], nd: NodeDef, kwargs: dict[str, Any], listed: set[str]) -> _Entry:
        if not nd.input_is_list and not listed:
            out, ui = self._unpack(nd, fn(**kwargs))
            return _Entry(out, nd.output_is_list, ui)
        if nd.input_is_list:
            out, ui = self._unpack(nd, fn(**{k: v if k in listed else [v] for k, v in kwargs.items()}))
            return _Entry(out, nd.output_is_list, ui)
        # ComfyUI's map over lists: one call per index; shorter lists repeat their last item.
        count = max(len(kwargs[k]) for k in listed)
        count = 0 if any(len(kwargs[k]) == 0 for k in listed) else count
        columns: list[list[Any]] = [[] for _ in nd.output_types]
        merged_ui: dict[str, list[Any]] = {}
        for index in range(count):
            call = {k: (v[min(index, len(v) - 1)] if k in listed else v) for k, v in kwargs.items()}
            out, ui = self._unpack(nd, fn(**call))
            for slot, value in enumerate(out):
                if nd.output_is_list[slot]:
                    columns[slot].extend(value)
                else:
                    columns[slot].append(value)
            for k, v in (ui or {}).items():
                merged_ui.setdefault(k, []).extend(v if isinstance(v, list) else [v])
        return _Entry(tuple(columns), (True,) * len(columns), merged_ui or None)
