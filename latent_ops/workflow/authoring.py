"""API → UI conversion, so workflows can be written in API format and opened in the graph editor.

The graph is laid out in columns by dependency depth. Every widget value is written in the
editor's positional order, with ``"fixed"`` after widgets the editor gives a control-after-generate
widget (seeds, unless they opt out) and ``"image"`` after upload combos, so
:func:`latent_ops.workflow.formats.ui_to_api` gives the original prompt back.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .errors import WorkflowError
from .formats import is_link, widget_default
from .schema import node_def

_COLUMN, _ROW, _WIDTH = 330, 40, 270


def _depths(prompt: Mapping[str, Mapping[str, Any]]) -> dict[str, int]:
    depth: dict[str, int] = {}
    for start in prompt:
        stack = [(start, False)]
        path: set[str] = set()
        while stack:
            nid, done = stack.pop()
            if done:
                path.discard(nid)
                parents = [str(v[0]) for v in prompt[nid]["inputs"].values() if is_link(v) and str(v[0]) in prompt]
                depth[nid] = 1 + max((depth.get(p, 0) for p in parents), default=-1)
                continue
            if nid in depth or nid in path:
                continue
            path.add(nid)
            stack.append((nid, True))
            stack.extend((str(v[0]), False) for v in prompt[nid]["inputs"].values()
                         if is_link(v) and str(v[0]) in prompt and str(v[0]) not in depth)
    return depth


def api_to_ui(prompt: Mapping[str, Mapping[str, Any]], registry: Mapping[str, type],
              display_names: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Build a UI-format graph (editor version 0.4) from an API prompt.

    Raises:
        WorkflowError: if a node id is not an integer, a class is unknown, or a link is dangling.
    """
    names = display_names or {}
    for nid, spec in prompt.items():
        if not str(nid).isdigit():
            raise WorkflowError(f"node id {nid!r}: the UI format needs integer node ids")
        if not isinstance(spec, Mapping) or spec.get("class_type") not in registry:
            raise WorkflowError(f"node {nid}: unknown class {spec.get('class_type')!r:.60}" if isinstance(spec, Mapping)
                                else f"node {nid}: not a node object")
        if not isinstance(spec.get("inputs", {}), Mapping):
            raise WorkflowError(f"node {nid}: 'inputs' must be an object")
    defs = {spec["class_type"]: node_def(spec["class_type"], registry[spec["class_type"]]) for spec in prompt.values()}
    depth = _depths(prompt)
    order = sorted(prompt, key=lambda n: (depth[n], int(n)))
    nodes: dict[str, dict[str, Any]] = {}
    rows: dict[int, int] = {}
    for index, nid in enumerate(order):
        spec = prompt[nid]
        nd = defs[spec["class_type"]]
        values: list[Any] = []
        for w in nd.widgets:
            given = spec.get("inputs", {}).get(w.name)
            values.append(widget_default(w) if given is None or is_link(given) else given)
            if w.adds_control:
                values.append("fixed")
            if w.upload:
                values.append("image")
        col = depth[nid]
        y = rows.get(col, 100)
        height = 46 + 24 * len(nd.inputs)
        rows[col] = y + height + _ROW
        node: dict[str, Any] = {
            "id": int(nid), "type": nd.class_type, "pos": [100 + _COLUMN * col, y], "size": [_WIDTH, height],
            "flags": {}, "order": index, "mode": 0,
            "inputs": [
                {"localized_name": i.name, "name": i.name, "type": i.type, **({"widget": {"name": i.name}} if i.widget else {}),
                 "link": None}
                for i in nd.inputs
            ],
            "outputs": [
                {"localized_name": n, "name": n, "type": t, "links": []}
                for n, t in zip(getattr(nd.cls, "RETURN_NAMES", nd.output_types), nd.output_types, strict=False)
            ],
            "properties": {"Node name for S&R": nd.class_type},
            "widgets_values": values,
        }
        title = (spec.get("_meta") or {}).get("title")
        if isinstance(title, str) and title != names.get(nd.class_type, nd.class_type):
            node["title"] = title
        nodes[nid] = node
    links: list[list[Any]] = []
    for nid in order:
        node = nodes[nid]
        for slot, entry in enumerate(node["inputs"]):
            value = prompt[nid].get("inputs", {}).get(entry["name"])
            if not is_link(value):
                continue
            src, out = str(value[0]), value[1]
            if src not in nodes or not isinstance(out, int) or not 0 <= out < len(nodes[src]["outputs"]):
                raise WorkflowError(f"node {nid} input {entry['name']!r}: dangling link {value!r}")
            link_id = len(links) + 1
            out_type = nodes[src]["outputs"][out]["type"]
            links.append([link_id, int(src), out, int(nid), slot, out_type])
            entry["link"] = link_id
            nodes[src]["outputs"][out]["links"].append(link_id)
    return {
        "id": "00000000-0000-0000-0000-000000000000", "revision": 0,
        "last_node_id": max((int(n) for n in nodes), default=0), "last_link_id": len(links),
        "nodes": [nodes[n] for n in order], "links": links, "groups": [], "config": {},
        "extra": {"ds": {"scale": 1, "offset": [0, 0]}}, "version": 0.4,
    }
