"""Workflow files: API format, UI format (what the graph editor saves) and PNGs that carry either.

UI → API follows the editor's ``graphToPrompt``: widget values are positional in input order
(required, then optional; widget types only), the seed widget's extra ``control_after_generate``
value and upload buttons' values are skipped, links override widgets, reroutes are followed,
primitive nodes are inlined, muted nodes (mode 2) are dropped, bypassed nodes (mode 4) pass the
first input of the same type through, and links that end at a dropped node are removed. A save
node's ``filename_prefix`` gets the editor's ``%date:...%`` and ``%Node.widget%`` replacements.

Reading is bounded: only regular files of at most :data:`MAX_FILE_BYTES`, PNG text within one
budget (:mod:`latent_ops.media.png`), and JSON nested at most :data:`MAX_DEPTH` levels (checked
before anything walks it recursively). A UI graph with duplicate node ids, or a required input
fed by a link that is not in the graph, is refused naming the node and the link.
"""

from __future__ import annotations

import copy
import json
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import FileAccessError
from ..media.folders import text_replacements
from ..media.png import PNG_SIGNATURE, read_png_text
from .errors import WorkflowError, short_repr
from .schema import CONTROL_VALUES, NodeDef, node_def

MAX_FILE_BYTES = 64 * 1024 * 1024
MAX_DEPTH = 64
"""Levels of nested lists/objects a workflow may have (real ones have fewer than 10)."""
SAVE_NODES = frozenset({"SaveImage", "SaveAnimatedWEBP", "SaveWEBM", "SaveAudio", "SaveGLB", "SaveAnimatedPNG",
                        "CLIPSave", "VAESave", "ModelSave", "LoraSave", "SaveLatent"})
"""Nodes whose ``filename_prefix`` the editor fills in (its ``saveImageExtraOutput`` extension)."""
MODE_MUTED, MODE_BYPASS = 2, 4
REROUTE, PRIMITIVE = "Reroute", "PrimitiveNode"
FRONTEND_ONLY = frozenset({REROUTE, PRIMITIVE, "Note", "MarkdownNote"})


@dataclass
class Workflow:
    """A loaded workflow: the API prompt to run and, when known, the UI graph it came from."""

    prompt: dict[str, dict[str, Any]]
    ui: dict[str, Any] | None
    source: str


def is_link(value: Any) -> bool:  # noqa: ANN401
    """``[node_id, output_slot]``: ComfyUI treats every length-2 list as a link."""
    return isinstance(value, list) and len(value) == 2


def _reject_constant(name: str) -> Any:  # noqa: ANN401
    raise WorkflowError(f"JSON contains {name}, which is not valid JSON")


def parse_json(text: str | bytes, what: str = "workflow") -> Any:  # noqa: ANN401
    """Parse JSON strictly (no NaN/Infinity) with errors fit for people.

    Raises:
        WorkflowError: for invalid JSON, undecodable bytes or nesting deeper than :data:`MAX_DEPTH`.
    """
    try:
        if isinstance(text, bytes):
            text = text.decode("utf-8-sig")
        value = json.loads(text, parse_constant=_reject_constant)
    except UnicodeDecodeError as err:
        raise WorkflowError(f"{what} is not UTF-8 text (neither JSON nor PNG): {err}") from None
    except json.JSONDecodeError as err:
        raise WorkflowError(f"{what} is not valid JSON: {err}") from None
    except ValueError as err:  # e.g. an integer with more digits than Python parses
        raise WorkflowError(f"{what} cannot be read: {err}") from None
    except RecursionError:
        raise WorkflowError(f"{what} is nested too deeply to be a workflow") from None
    check_depth(value, what)
    return value


def _where(path: list[Any], data: Any) -> str:  # noqa: ANN401
    """Words for a position in a workflow: ``node 5 input 'seed'`` or ``nodes[3] (node 7)``, else its path."""
    if len(path) >= 3 and path[1] == "inputs" and isinstance(data, dict) and "nodes" not in data:
        return f"node {str(path[0])[:40]} input {short_repr(path[2])}"
    text = "".join(f"[{short_repr(k)}]" for k in path[:8]) + ("..." if len(path) > 8 else "")
    if len(path) >= 2 and path[0] == "nodes" and isinstance(path[1], int):
        node = data["nodes"][path[1]]
        widget = f" {str(path[2])[:40]}" if len(path) > 2 else ""
        return f"{text} (UI node {short_repr(node.get('id'))}{widget})" if isinstance(node, dict) else text
    return text


def check_depth(data: Any, what: str = "workflow", limit: int = MAX_DEPTH) -> None:  # noqa: ANN401
    """Refuse JSON nested more than ``limit`` levels, naming where (walked without recursion).

    Raises:
        WorkflowError: naming ``what``, the node and input (or the path) and the limit.
    """
    stack: list[tuple[Any, int, tuple | None]] = [(data, 0, None)]
    while stack:
        value, depth, trail = stack.pop()
        if isinstance(value, dict):
            items = value.items()
        elif isinstance(value, list):
            items = enumerate(value)
        else:
            continue
        if depth >= limit:
            path: list[Any] = []
            while trail is not None:
                trail, key = trail
                path.append(key)
            raise WorkflowError(f"{what}: {_where(path[::-1], data)} is nested more than {limit} levels deep")
        stack.extend((item, depth + 1, (trail, key)) for key, item in items)


def load(path: str | Path, registry: Mapping[str, type], display_names: Mapping[str, str] | None = None) -> Workflow:
    """Read a workflow file: API JSON, UI JSON, a ``POST /prompt`` body, or a PNG with text chunks.

    Raises:
        WorkflowError: unreadable file, not a workflow, or a PNG without workflow chunks.
    """
    path = Path(path)
    data = _read_file(path)
    if data.startswith(PNG_SIGNATURE):
        try:
            chunks = read_png_text(data, keys=("prompt", "workflow"))
        except FileAccessError as err:
            raise WorkflowError(f"{path}: {err}") from None
        ui = parse_json(chunks["workflow"], f"{path} 'workflow' chunk") if "workflow" in chunks else None
        if "prompt" in chunks:
            prompt = parse_json(chunks["prompt"], f"{path} 'prompt' chunk")
            return Workflow(_check_api(prompt), ui if isinstance(ui, dict) else None, "png")
        if ui is not None:
            return Workflow(ui_to_api(ui, registry, display_names), ui, "png")
        raise WorkflowError(f"{path}: PNG has no 'prompt' or 'workflow' text chunk (was it saved with metadata?)")
    return from_data(parse_json(data, str(path)), registry, display_names)


def _read_file(path: Path) -> bytes:
    """The bytes of a workflow file: a regular file (not a device, pipe or folder) of at most MAX_FILE_BYTES."""
    blocks: list[bytes] = []
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # a FIFO must not block the open
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise WorkflowError(f"{path}: not a regular file (a device, pipe or folder); "
                                    "give a workflow .json or .png")
            left = MAX_FILE_BYTES + 1
            while left > 0 and (block := os.read(fd, min(left, 1 << 20))):
                blocks.append(block)
                left -= len(block)
        finally:
            os.close(fd)
    except OSError as err:
        raise WorkflowError(f"cannot read workflow {path}: {err.strerror or err}") from None
    if left <= 0:
        raise WorkflowError(f"{path}: more than {MAX_FILE_BYTES} bytes is too big for a workflow file")
    return b"".join(blocks)


def from_data(data: Any, registry: Mapping[str, type], display_names: Mapping[str, str] | None = None) -> Workflow:  # noqa: ANN401
    """Recognise parsed JSON as UI format, API format or a ``POST /prompt`` body.

    Raises:
        WorkflowError: not a workflow, nested deeper than :data:`MAX_DEPTH`, or a malformed UI graph.
    """
    check_depth(data)
    if not isinstance(data, dict):
        raise WorkflowError(f"a workflow must be a JSON object, got {type(data).__name__}")
    if "nodes" in data and "links" in data:
        return Workflow(ui_to_api(data, registry, display_names), data, "ui")
    if isinstance(data.get("prompt"), dict):
        extra = data.get("extra_data")
        ui = extra.get("extra_pnginfo", {}).get("workflow") if isinstance(extra, dict) else None
        return Workflow(_check_api(data["prompt"]), ui if isinstance(ui, dict) else None, "api")
    return Workflow(_check_api(data), None, "api")


def _check_api(prompt: Any) -> dict[str, dict[str, Any]]:  # noqa: ANN401
    if not isinstance(prompt, dict) or not prompt:
        raise WorkflowError("an API-format workflow must be a non-empty JSON object of nodes")
    bad = [k for k, v in prompt.items() if not isinstance(v, dict) or "class_type" not in v]
    if len(bad) == len(prompt):
        raise WorkflowError("not a workflow: no entry has a 'class_type' (expected API or UI format)")
    return prompt


# ----------------------------------------------------------------------------- UI -> API
def widget_slots(values: Any, nd: NodeDef) -> dict[str, int | str]:  # noqa: ANN401
    """Map each widget input to its position in ``widgets_values`` (or its key if a dict)."""
    if isinstance(values, Mapping):
        return {w.name: w.name for w in nd.widgets if w.name in values}
    if values is None:
        values = []
    if not isinstance(values, list):
        raise WorkflowError(f"{nd.class_type}: widgets_values must be a list, got {type(values).__name__}")
    slots: dict[str, int | str] = {}
    pos = 0
    for w in nd.widgets:
        if pos >= len(values):
            break
        slots[w.name] = pos
        pos += 1
        if w.control and pos < len(values) and isinstance(values[pos], str) and values[pos] in CONTROL_VALUES:
            pos += 1
        if w.upload and pos < len(values):
            pos += 1
    return slots


def widget_default(w: Any) -> Any:  # noqa: ANN401 - an InputDef
    """The value the editor gives a widget that ``widgets_values`` does not cover."""
    if "default" in w.options:
        return w.options["default"]
    if w.choices:
        return w.choices[0]
    return {"INT": w.options.get("min", 0), "FLOAT": w.options.get("min", 0.0), "BOOLEAN": False}.get(w.type, "")


def _ui_links(ui: Mapping[str, Any]) -> dict[int, tuple[str, int, str | None]]:
    raw = ui.get("links") or []
    if not isinstance(raw, list):
        raise WorkflowError("UI workflow: 'links' must be a list")
    links: dict[int, tuple[str, int, str | None]] = {}
    for entry in raw:
        if isinstance(entry, list) and len(entry) >= 5:
            lid, origin, slot, ltype = entry[0], entry[1], entry[2], entry[5] if len(entry) > 5 else None
        elif isinstance(entry, dict):
            lid, origin, slot, ltype = entry.get("id"), entry.get("origin_id"), entry.get("origin_slot"), entry.get("type")
        else:
            raise WorkflowError(f"UI workflow: malformed link {entry!r:.80}")
        if not isinstance(lid, int) or not isinstance(slot, int) or not isinstance(origin, (int, str)):
            raise WorkflowError(f"UI workflow: malformed link {entry!r:.80}")
        links[lid] = (str(origin), slot, ltype if isinstance(ltype, str) else None)
    return links


def _ui_nodes(ui: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    raw = ui.get("nodes")
    if not isinstance(raw, list):
        raise WorkflowError("UI workflow: 'nodes' must be a list")
    listed = ui["definitions"].get("subgraphs") if isinstance(ui.get("definitions"), dict) else None
    subgraphs = {s["id"] for s in listed if isinstance(s, dict) and isinstance(s.get("id"), str)} if isinstance(listed, list) else set()
    nodes: dict[str, dict[str, Any]] = {}
    for node in raw:
        if not isinstance(node, dict) or not isinstance(node.get("id"), (int, str)) or not isinstance(node.get("type"), str):
            raise WorkflowError(f"UI workflow: malformed node {node!r:.80} (needs an 'id' and a 'type')")
        if node["type"] in subgraphs:
            raise WorkflowError(f"UI workflow: node {node['id']} is a subgraph; subgraphs are not supported, unpack it")
        if node["type"].startswith(("workflow>", "workflow/")):
            raise WorkflowError(f"UI workflow: node {node['id']} is a group node ({node['type'][:60]!r}); "
                                "group nodes are not supported, convert it back to nodes")
        if not isinstance(node.get("inputs") or [], list) or not isinstance(node.get("outputs") or [], list):
            raise WorkflowError(f"UI workflow: node {node['id']}: 'inputs'/'outputs' must be lists")
        nid = str(node["id"])
        if nid in nodes:
            raise WorkflowError(f"UI workflow: node id {short_repr(node['id'])} is used by two nodes "
                                f"({short_repr(nodes[nid]['type'])} and {short_repr(node['type'])}); ids must be unique")
        nodes[nid] = node
    return nodes


def _input_link(node: Mapping[str, Any], index: int) -> Any:  # noqa: ANN401
    inputs = node.get("inputs") or []
    if 0 <= index < len(inputs) and isinstance(inputs[index], dict):
        return inputs[index].get("link")
    return None


def _resolve(link_id: Any, want: str | None, nodes: Mapping[str, dict], links: Mapping[int, tuple]) -> Any:  # noqa: ANN401
    """Follow reroutes/bypasses from a link; ``("link", [id, slot])``, ``("value", v)``, ``None`` (nothing
    connected) or ``("broken", why)`` (a link id not in ``links``, or one from a node that does not exist)."""
    seen: set[int] = set()
    while link_id is not None:
        if isinstance(link_id, bool) or not isinstance(link_id, int) or link_id not in links:
            return ("broken", f"link {short_repr(link_id)}, which is not in the workflow's links")
        if link_id in seen:
            return None
        seen.add(link_id)
        origin_id, slot, _ = links[link_id]
        origin = nodes.get(origin_id)
        if origin is None:
            return ("broken", f"link {link_id} from node {short_repr(origin_id)}, which does not exist")
        kind = origin["type"]
        if kind == REROUTE:
            link_id = _input_link(origin, 0)
            continue
        if kind == PRIMITIVE:
            values = origin.get("widgets_values")
            return ("value", values[0]) if isinstance(values, list) and values else None
        mode = origin.get("mode", 0)
        if mode == MODE_MUTED or kind in FRONTEND_ONLY:
            return None
        if mode == MODE_BYPASS:
            inputs = origin.get("inputs") or []
            order = [slot, *range(len(inputs))]
            match = next((i for i in order if 0 <= i < len(inputs) and isinstance(inputs[i], dict)
                          and inputs[i].get("type") == want), None)
            if match is None:
                return None
            link_id = inputs[match].get("link")
            continue
        return ("link", [origin_id, slot])
    return None


def ui_to_api(ui: Mapping[str, Any], registry: Mapping[str, type],
              display_names: Mapping[str, str] | None = None) -> dict[str, dict[str, Any]]:
    """Convert a UI-format graph to the API prompt the editor would send.

    Nodes whose class is not in ``registry`` are kept with their linked inputs only, so that
    validation reports them (``missing_node_type``) together with every other problem.

    Raises:
        WorkflowError: if the graph's structure is malformed or uses subgraphs.
    """
    nodes, links = _ui_nodes(ui), _ui_links(ui)
    names = display_names or {}
    prompt: dict[str, dict[str, Any]] = {}
    defs: dict[str, NodeDef] = {}
    broken: list[str] = []
    for nid, node in nodes.items():
        kind = node["type"]
        if kind in FRONTEND_ONLY or node.get("mode", 0) in (MODE_MUTED, MODE_BYPASS):
            continue
        inputs: dict[str, Any] = {}
        if kind in registry:
            nd = defs.get(kind) or defs.setdefault(kind, node_def(kind, registry[kind]))
            values = node.get("widgets_values")
            slots = widget_slots(values, nd)
            for w in nd.widgets:
                inputs[w.name] = values[slots[w.name]] if w.name in slots else widget_default(w)
        for entry in node.get("inputs") or []:
            if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or entry.get("link") is None:
                continue
            resolved = _resolve(entry["link"], entry.get("type"), nodes, links)
            declared = defs[kind].by_name.get(entry["name"]) if kind in defs else None
            if resolved is not None and resolved[0] == "broken" and declared is not None and declared.required:
                broken.append(f"node {nid} ({kind}) input {short_repr(entry['name'])} uses {resolved[1]}")
            if resolved is None or resolved[0] == "broken":
                inputs.pop(entry["name"], None)
            else:
                inputs[entry["name"]] = resolved[1]
        if kind in SAVE_NODES and isinstance(inputs.get("filename_prefix"), str) and "%" in inputs["filename_prefix"]:
            inputs["filename_prefix"] = text_replacements(inputs["filename_prefix"], _widget_finder(nodes, registry, names))
        title = node.get("title") or names.get(kind) or kind
        prompt[nid] = {"inputs": inputs, "class_type": kind, "_meta": {"title": title}}
    if broken:
        more = f" (and {len(broken) - 5} more)" if len(broken) > 5 else ""
        raise WorkflowError("UI workflow: broken link: " + "; ".join(broken[:5]) + more)
    # The editor removes links to nodes that are not in the prompt (muted, bypassed, missing).
    for spec in prompt.values():
        for name, value in list(spec["inputs"].items()):
            if is_link(value) and str(value[0]) not in prompt:
                del spec["inputs"][name]
    return prompt


def _widget_finder(nodes: Mapping[str, dict], registry: Mapping[str, type],
                   names: Mapping[str, str]) -> Any:  # noqa: ANN401 - a (node, widget) -> value function
    """The editor's lookup for ``%Node.widget%``: the node whose "Node name for S&R" property is
    ``Node``, else the first whose title is; its widget's value (None if there is none)."""

    def find(node_name: str, widget: str) -> Any:  # noqa: ANN401
        matches = [n for n in nodes.values() if isinstance(n.get("properties"), dict)
                   and n["properties"].get("Node name for S&R") == node_name]
        matches = matches or [n for n in nodes.values() if (n.get("title") or names.get(n["type"]) or n["type"]) == node_name]
        if not matches or matches[0]["type"] not in registry:
            return None
        values = matches[0].get("widgets_values")
        slot = widget_slots(values, node_def(matches[0]["type"], registry[matches[0]["type"]])).get(widget)
        return None if slot is None else values[slot]

    return find


def set_ui_widget(ui: dict[str, Any], node_id: str, name: str, value: Any, registry: Mapping[str, type]) -> bool:  # noqa: ANN401
    """Write ``value`` into a UI node's widget (in place); False if it has no such widget."""
    node = _ui_nodes(ui).get(str(node_id))
    if node is None or node["type"] not in registry:
        return False
    nd = node_def(node["type"], registry[node["type"]])
    values = node.get("widgets_values")
    slot = widget_slots(values, nd).get(name)
    if slot is None:
        return False
    values[slot] = copy.deepcopy(value)
    return True
