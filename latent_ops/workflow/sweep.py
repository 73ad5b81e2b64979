"""Sweeps: one workflow and ``NODE.INPUT=VALUE`` overrides expanded into the prompts to run.

A value is JSON, plain text, a JSON list or an integer range ``A..B``; lists make a sweep, the
product of all of them (first override outermost). Expanding is separate from running, so any
runner (the CLI's engine loop, a pool of workers) can take the prompts::

    wf = load("workflow.json", registry)
    for run in expand(wf, ["KSampler.seed=1..4", "KSampler.cfg=[4, 7]"], registry):
        Engine(registry).run(run.prompt, extra_pnginfo={"workflow": run.ui} if run.ui else None)
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import LatentOpsError
from .errors import WorkflowError
from .formats import Workflow, check_depth, set_ui_widget
from .schema import node_def
from .validate import analyse

MAX_SWEEP = 10_000
"""The most prompts one sweep (and one ``A..B`` range) may make."""

Override = tuple[str, str, list[Any]]
"""``(node_id, input_name, values)``: one parsed ``--set``."""


class UsageError(LatentOpsError):
    """A bad ``--set`` item or a sweep that is too large (the CLI's exit code 2)."""


@dataclass(frozen=True)
class Run:
    """One prompt of a sweep.

    Attributes:
        index: position in the sweep, from 0.
        prompt: the API-format prompt (a fresh copy).
        ui: the UI-format workflow with the same values set, or ``None`` (API-format input).
        chosen: ``{"node_id.input": value}`` for every override of this run.
    """

    index: int
    prompt: dict[str, Any]
    ui: dict[str, Any] | None
    chosen: dict[str, Any]


def parse_values(text: str) -> list[Any]:
    """``A..B`` (inclusive integer range), a JSON list, a JSON scalar, or else the text itself.

    Raises:
        UsageError: a range of more than :data:`MAX_SWEEP` values, an empty JSON list, or JSON nested
            deeper than :data:`~latent_ops.workflow.formats.MAX_DEPTH`.
    """
    match = re.fullmatch(r"\s*(-?\d+)\s*\.\.\s*(-?\d+)\s*", text)
    if match:
        start, stop = int(match[1]), int(match[2])
        if abs(stop - start) >= MAX_SWEEP:
            raise UsageError(f"range {text!r} has more than {MAX_SWEEP} values")
        step = 1 if stop >= start else -1
        return list(range(start, stop + step, step))
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return [text]
    try:
        check_depth(value, "--set value")
    except WorkflowError as err:
        raise UsageError(str(err)) from None
    if isinstance(value, list):
        if not value:
            raise UsageError(f"--set value {text!r} is an empty list")
        return value
    return [value]


def find_node(prompt: Mapping[str, Any], ref: str) -> str:
    """The id of the node ``ref`` names: an id, else a unique ``_meta.title``, else a unique class.

    Raises:
        UsageError: no node matches, or several match by title (or by class).
    """
    if ref in prompt:
        return ref
    for key in ("title", "class"):
        hits = [nid for nid, spec in prompt.items() if isinstance(spec, dict) and (
            (spec.get("_meta") or {}).get("title") == ref if key == "title" else spec.get("class_type") == ref)]
        if len(hits) > 1:
            raise UsageError(f"--set: {ref!r} matches several nodes by {key} ({', '.join(hits)}); use a node id")
        if hits:
            return hits[0]
    raise UsageError(f"--set: no node with id, title or class {ref!r}")


def parse_sets(items: Sequence[str], prompt: Mapping[str, Any], registry: Mapping[str, type]) -> list[Override]:
    """Parse ``NODE.INPUT=VALUE`` overrides into ``(node_id, input, values)``.

    Raises:
        UsageError: a malformed item, an unknown node or input, or more than :data:`MAX_SWEEP`
            combinations.
    """
    sets = []
    for item in items:
        left, sep, right = item.partition("=")
        ref, dot, name = left.rpartition(".")
        if not sep or not dot or not ref or not name:
            raise UsageError(f"--set {item!r}: expected NODE.INPUT=VALUE")
        nid = find_node(prompt, ref)
        kind = prompt[nid].get("class_type")
        if kind in registry:
            declared = node_def(kind, registry[kind]).by_name
            if name not in declared:
                raise UsageError(f"--set {item!r}: node {nid} ({kind}) has no input {name!r}; "
                                 f"inputs: {', '.join(declared) or 'none'}")
        sets.append((nid, name, parse_values(right)))
    total = 1
    for _, _, values in sets:
        total *= len(values)
    if total > MAX_SWEEP:
        raise UsageError(f"the --set sweep has {total} combinations (limit {MAX_SWEEP})")
    return sets


def sweep(prompt: dict[str, Any], ui: dict[str, Any] | None, sets: list[Override],
          registry: Mapping[str, type]) -> Iterator[tuple[dict[str, Any], dict[str, Any] | None, dict[str, Any]]]:
    """Yield ``(prompt, ui, {"node.input": value})`` for each combination (first --set outermost)."""
    for combo in itertools.product(*(values for _, _, values in sets)):
        p, u = copy.deepcopy(prompt), copy.deepcopy(ui)
        chosen = {}
        for (nid, name, _), value in zip(sets, combo, strict=True):
            p[nid].setdefault("inputs", {})[name] = value
            if u is not None:
                set_ui_widget(u, nid, name, value, registry)
            chosen[f"{nid}.{name}"] = value
        yield p, u, chosen


class Sweep:
    """The prompts of one workflow and its overrides; iterating makes fresh copies each time.

    Nothing but the overrides is kept, so a sweep of 10,000 prompts can be walked twice (validate
    all, then run) without holding 10,000 copies.
    """

    def __init__(self, workflow: Workflow, items: Sequence[str], registry: Mapping[str, type]) -> None:
        self.prompt, self.ui, self.registry = workflow.prompt, workflow.ui, registry
        self.sets = parse_sets(items, workflow.prompt, registry)

    def __len__(self) -> int:
        return math.prod(len(values) for _, _, values in self.sets)

    def __iter__(self) -> Iterator[Run]:
        for index, (prompt, ui, chosen) in enumerate(sweep(self.prompt, self.ui, self.sets, self.registry)):
            yield Run(index, prompt, ui, chosen)


def expand(workflow: Workflow, items: Sequence[str], registry: Mapping[str, type]) -> list[Run]:
    """Every prompt of the sweep ``items`` makes of ``workflow``, in order (one if ``items`` is empty).

    Args:
        workflow: a loaded workflow (:func:`latent_ops.workflow.load`).
        items: ``NODE.INPUT=VALUE`` overrides, as given to ``--set``.
        registry: ``{class_type: node class}``, to check input names and to set UI widgets.

    Returns:
        One :class:`Run` per combination, first override outermost.

    Raises:
        UsageError: as :func:`parse_sets`.
    """
    return list(Sweep(workflow, items, registry))


def problems(runs: Iterable[Run], registry: Mapping[str, type]) -> list[dict[str, Any]]:
    """Validation problems of every prompt in ``runs``, as dicts with the ``run`` index and ``set`` values."""
    found = []
    for run in runs:
        for problem in analyse(run.prompt, registry).problems:
            found.append({**problem.to_dict(), "run": run.index, "set": run.chosen})
    return found
