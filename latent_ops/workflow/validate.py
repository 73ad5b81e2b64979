"""Validate an API prompt against a node registry before running, the way ComfyUI does.

Every problem is collected (nothing stops at the first one). Like ComfyUI, every node must have a
known class (and an id of at most :data:`MAX_ID_CHARS` characters), at least one output node must exist, and only output nodes and their ancestors are
checked input by input: required inputs, link shape and target, link types, constants coerced to
INT/FLOAT/STRING/BOOLEAN, min/max, combo values, custom ``VALIDATE_INPUTS`` and cycles.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import Problem, cut, short_repr
from .schema import InputDef, NodeDef, node_def, types_match

PRIMITIVES = {"INT": int, "FLOAT": float, "STRING": str, "BOOLEAN": bool}
MAX_ID_CHARS = 200
"""Characters of a node id (ComfyUI's own ids, subgraph paths included, are far shorter)."""


def sort_key(node_id: str) -> tuple[int, int, str]:
    """Numeric ids (ASCII digits) in numeric order, then the others alphabetically."""
    return (0, int(node_id), "") if node_id.isascii() and node_id.isdigit() and len(node_id) < 19 else (1, 0, node_id)


def coerce(inp: InputDef, value: Any) -> Any:  # noqa: ANN401
    """Convert a constant to its widget type like ComfyUI (``int()``, ``float()``, ...).

    Raises:
        ValueError / TypeError: if it cannot be converted or is not finite.
    """
    kind = PRIMITIVES.get(inp.type)
    if kind is None or type(value) is kind:
        if kind is float and not math.isfinite(value):
            raise ValueError("not a finite number")
        return value
    if isinstance(value, (dict, list)):
        raise TypeError(f"a {type(value).__name__} is not a {inp.type}")
    if kind is int and isinstance(value, float) and not math.isfinite(value):
        raise ValueError("not a finite number")
    out = kind(value)
    if kind is float and not math.isfinite(out):
        raise ValueError("not a finite number")
    return out


def _link_problem(nid: str, nd: NodeDef, inp: InputDef, value: list, prompt: Mapping[str, Any],
                  defs: Mapping[str, NodeDef]) -> Problem | None:
    where = f"node {nid} ({nd.class_type}) input {inp.name!r}"
    src, slot = value
    if isinstance(src, bool) or not isinstance(src, (str, int)) or isinstance(slot, bool) or not isinstance(slot, int):
        return Problem("bad_linked_input", f"{where}: bad link {short_repr(value)}, must be [node_id, output_slot]",
                       nid, nd.class_type, inp.name, value)
    src = str(src)
    if src not in prompt:
        return Problem("dangling_link", f"{where}: links to node {cut(src, 60)}, which does not exist",
                       nid, nd.class_type, inp.name, value)
    source = defs.get(src)
    if source is None:
        return None  # the source node's own problem is reported already
    if not 0 <= slot < len(source.output_types):
        return Problem("dangling_link", f"{where}: links to output {slot} of node {src} ({source.class_type}), "
                       f"which has {len(source.output_types)} output(s)", nid, nd.class_type, inp.name, value)
    received = source.output_types[slot]
    if not types_match(received, inp.type):
        return Problem("return_type_mismatch", f"{where}: expects {inp.type} but node {src} ({source.class_type}) "
                       f"output {slot} is {received}", nid, nd.class_type, inp.name, value)
    return None


def _value_problem(nid: str, nd: NodeDef, inp: InputDef, value: Any) -> Problem | None:  # noqa: ANN401
    where = f"node {nid} ({nd.class_type}) input {inp.name!r}"
    if inp.type == "*":
        return None
    if inp.type == "COMBO":
        if inp.choices is not None and value not in inp.choices:
            listed = ", ".join(short_repr(c) for c in inp.choices[:12]) + (", ..." if len(inp.choices) > 12 else "")
            return Problem("value_not_in_list", f"{where}: {short_repr(value)} is not one of [{listed}]",
                           nid, nd.class_type, inp.name, value)
        return None
    if inp.type not in PRIMITIVES:
        return Problem("invalid_input_type", f"{where}: expects a link to a {inp.type} output, got the constant "
                       f"{short_repr(value)}", nid, nd.class_type, inp.name, value)
    try:
        value = coerce(inp, value)
    except (TypeError, ValueError, OverflowError) as err:
        return Problem("invalid_input_type", f"{where}: cannot read {short_repr(value)} as {inp.type} ({err})",
                       nid, nd.class_type, inp.name, value)
    lo, hi = inp.options.get("min"), inp.options.get("max")
    if inp.type in ("INT", "FLOAT") and lo is not None and value < lo:
        return Problem("value_smaller_than_min", f"{where}: {short_repr(value)} is smaller than the minimum {lo}",
                       nid, nd.class_type, inp.name, value)
    if inp.type in ("INT", "FLOAT") and hi is not None and value > hi:
        return Problem("value_bigger_than_max", f"{where}: {short_repr(value)} is bigger than the maximum {hi}",
                       nid, nd.class_type, inp.name, value)
    return None


def _custom(nid: str, nd: NodeDef, inputs: Mapping[str, Any]) -> tuple[set[str], Problem | None]:
    if nd.validate_inputs is None:
        return set(), None
    try:
        params = inspect.signature(nd.validate_inputs).parameters
    except (TypeError, ValueError):
        params = {}
    names = {n for n in params if n in nd.by_name}
    try:
        given = {n: inputs[n] for n in names if n in inputs and not isinstance(inputs[n], list)}
        if any(p.kind is p.VAR_KEYWORD for p in params.values()):
            given = {n: v for n, v in inputs.items() if not isinstance(v, list)}
        result = nd.validate_inputs(**given)
    except Exception as err:  # noqa: BLE001 - report, never crash validation
        return names, Problem("exception_during_validation", f"node {nid} ({nd.class_type}): VALIDATE_INPUTS "
                              f"raised {type(err).__name__}: {err}", nid, nd.class_type)
    if result is not True:
        return names, Problem("custom_validation_failed", f"node {nid} ({nd.class_type}): {result}", nid, nd.class_type)
    return names, None


def _check_node(nid: str, nd: NodeDef, inputs: Mapping[str, Any], prompt: Mapping[str, Any],
                defs: Mapping[str, NodeDef]) -> list[Problem]:
    problems: list[Problem] = []
    custom, problem = _custom(nid, nd, inputs)
    if problem is not None:
        problems.append(problem)
    for inp in nd.inputs:
        if inp.name not in inputs:
            if inp.required:
                problems.append(Problem("required_input_missing", f"node {nid} ({nd.class_type}): required input "
                                        f"{inp.name!r} is missing", nid, nd.class_type, inp.name))
            continue
        value = inputs[inp.name]
        if isinstance(value, list):
            problem = (_link_problem(nid, nd, inp, value, prompt, defs) if len(value) == 2 else
                       Problem("bad_linked_input", f"node {nid} ({nd.class_type}) input {inp.name!r}: bad link "
                               f"{short_repr(value)}, must be [node_id, output_slot]", nid, nd.class_type, inp.name, value))
        elif inp.name in custom:
            problem = None
        else:
            if isinstance(value, dict) and "__value__" in value:
                value = value["__value__"]
            problem = _value_problem(nid, nd, inp, value)
        if problem is not None:
            problems.append(problem)
    return problems


def parents(inputs: Mapping[str, Any]) -> list[str]:
    """Ids of the nodes that ``inputs`` link to."""
    return [str(v[0]) for v in inputs.values()
            if isinstance(v, list) and len(v) == 2 and isinstance(v[0], (str, int)) and not isinstance(v[0], bool)]


def _cycles(nodes: Iterable[str], prompt: Mapping[str, Any], deps: Mapping[str, list[str]]) -> list[Problem]:
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    problems: list[Problem] = []
    for start in nodes:
        if start in state:
            continue
        path = [start]
        stack = [iter(deps[start])]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif nxt in deps and state.get(nxt) != 2:
                if state.get(nxt) == 1:
                    loop = path[path.index(nxt):]
                    first = loop.index(min(loop, key=sort_key))  # same message whatever the visiting order
                    cycle = loop[first:] + loop[:first] + [loop[first]]
                    nxt = cycle[0]
                    problems.append(Problem("dependency_cycle", "dependency cycle: " + " -> ".join(
                        f"{n} ({prompt[n].get('class_type')})" for n in cycle), nxt, prompt[nxt].get("class_type")))
                    continue
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(deps[nxt]))
    return problems


def validate(prompt: Any, registry: Mapping[str, type], outputs: Iterable[str] | None = None) -> list[Problem]:  # noqa: ANN401
    """Check ``prompt`` (API format) against ``registry``; return every problem (empty = valid).

    Args:
        prompt: ``{node_id: {"class_type", "inputs"}}``. registry: class_type -> V1 node class.
        outputs: node ids to run instead of every output node.
    """
    return analyse(prompt, registry, outputs).problems


@dataclass
class Analysis:
    """Validation result plus what the engine reuses: node declarations and the nodes to run."""

    problems: list[Problem]
    defs: dict[str, NodeDef]
    targets: list[str]
    needed: set[str]
    deps: dict[str, list[str]]


def analyse(prompt: Any, registry: Mapping[str, type], outputs: Iterable[str] | None = None) -> Analysis:  # noqa: ANN401
    """:func:`validate`, also returning each node's :class:`NodeDef` and the output nodes' ancestry."""
    if not isinstance(prompt, dict) or not prompt:
        return Analysis([Problem("invalid_prompt", "the workflow must be a non-empty object of nodes")], {}, [], set(), {})
    problems: list[Problem] = []
    defs: dict[str, NodeDef] = {}
    by_class: dict[str, NodeDef] = {}
    for nid in sorted(prompt, key=sort_key):
        spec = prompt[nid]
        kind = spec.get("class_type") if isinstance(spec, dict) else None
        if len(nid) > MAX_ID_CHARS:
            problems.append(Problem("invalid_prompt", f"node {short_repr(nid)}: its id is {len(nid)} characters long; "
                                    f"at most {MAX_ID_CHARS} are allowed", nid))
        elif not isinstance(kind, str) or not isinstance(spec.get("inputs", {}), dict):
            problems.append(Problem("invalid_prompt", f"node {nid}: must be an object with a 'class_type' string and "
                                    f"an 'inputs' object, got {short_repr(spec)}", nid, None, None, spec))
        elif kind not in registry:
            problems.append(Problem("missing_node_type", f"node {nid}: unknown node type {short_repr(kind)} "
                                    "(not in this registry; is a custom-node pack missing?)", nid, kind))
        else:
            try:
                defs[nid] = by_class.get(kind) or by_class.setdefault(kind, node_def(kind, registry[kind]))
            except Exception as err:  # noqa: BLE001 - a broken node class is reported, not raised
                problems.append(Problem("exception_during_validation", f"node {nid} ({kind}): reading its "
                                        f"declarations failed: {type(err).__name__}: {err}", nid, kind))
    if outputs is None:
        targets = [nid for nid, nd in defs.items() if nd.output_node]
        if not targets:
            problems.append(Problem("prompt_no_outputs", "the workflow has no output node (such as SaveImage or "
                                    "SaveLatent), so nothing would run"))
    else:
        targets = [str(t) for t in outputs]
        problems += [Problem("invalid_prompt", f"requested output node {t} does not exist", t)
                     for t in targets if t not in prompt]
    seen: set[str] = set()
    deps: dict[str, list[str]] = {}
    stack = [t for t in targets if t in defs]
    while stack:
        nid = stack.pop()
        if nid in seen:
            continue
        seen.add(nid)
        deps[nid] = [p for p in parents(prompt[nid].get("inputs", {})) if p in defs]
        stack.extend(p for p in deps[nid] if p not in seen)
    checked: list[Problem] = []
    for nid in seen:
        checked += _check_node(nid, defs[nid], prompt[nid].get("inputs", {}), prompt, defs)
    problems += sorted(checked, key=lambda p: sort_key(p.node_id or ""))
    problems += _cycles(seen, prompt, deps)
    return Analysis(problems, defs, targets, seen, deps)
