"""Editor layout of the generated workflows: node boxes sized as ComfyUI's editor draws them.

Used by ``scripts/make_workflows.py`` (loaded by path: ``scripts/`` is no package).
"""

from __future__ import annotations

from typing import Any

# What ComfyUI's editor (frontend 1.27) makes of a node: on load every node grows to at least its
# computeSize() (slot rows of 20 px, widgets of 20 px + 4, 8 + 6 px padding), the title bar (30 px) is
# drawn above ``pos``, LoadImage shows a 220 px image preview and so do output nodes after a run, and
# a multiline text box is at least 50 px. Sizes are written at least that big, so no node hides another.
TITLE_H, SLOT_H, WIDGET_H, PREVIEW_H, TEXTBOX_H = 30, 20, 20, 220, 60
MIN_W, GAP_X, GAP_Y, LEFT, TOP = 270, 60, 30, 100, 100
PREVIEW_NODES = ("LoadImage",)


def _text_w(text: str) -> float:
    return 14 * 0.6 * len(text)  # the editor's fallback text measure: NODE_TEXT_SIZE * 0.6 per character


def editor_size(nd: Any, title: str) -> tuple[int, int]:  # noqa: ANN401 - a workflow.schema.NodeDef
    """``[width, height]`` of node ``nd`` as the editor draws it (body only; the title bar is above)."""
    rows = max(sum(not i.widget for i in nd.inputs), len(nd.output_types), 1)
    heights = []
    for w in nd.widgets:
        heights.append(TEXTBOX_H if w.options.get("multiline") else WIDGET_H)
        heights += [WIDGET_H] * (int(w.adds_control) + int(w.upload))
    if nd.output_node or nd.class_type in PREVIEW_NODES:
        heights.append(PREVIEW_H)
    height = rows * SLOT_H + (sum(h + 4 for h in heights) + 8 if heights else 0) + 6
    widget_w = max((_text_w(w.name) + 42 + 2 * (15 + 6 + 10) for w in nd.widgets), default=0)
    slot_w = max((_text_w(i.name) for i in nd.inputs if not i.widget), default=0) + max(
        (_text_w(n) for n in getattr(nd.cls, "RETURN_NAMES", nd.output_types)), default=0) + 2 * SLOT_H + 5
    width = max(MIN_W, widget_w, slot_w, TITLE_H * 1.33 + _text_w(title))
    return int(-(-width // 10) * 10), int(-(-height // 10) * 10)


def layout(ui: dict[str, Any], registry: dict[str, type], names: dict[str, str]) -> dict[str, Any]:
    """Re-place the nodes of ``api_to_ui``'s columns with editor-sized boxes: a column is as wide as its
    widest node, nodes stack with their title bars and a gap between them (in place; returns ``ui``)."""
    from latent_ops.workflow.schema import node_def

    columns: dict[float, list[dict[str, Any]]] = {}
    for node in ui["nodes"]:
        columns.setdefault(node["pos"][0], []).append(node)
    x = LEFT
    for key in sorted(columns):
        column = sorted(columns[key], key=lambda n: n["pos"][1])
        sizes = [editor_size(node_def(n["type"], registry[n["type"]]), n.get("title") or names.get(n["type"], n["type"]))
                 for n in column]
        y = TOP
        for node, size in zip(column, sizes, strict=True):
            node["pos"], node["size"] = [x, y], list(size)
            y += size[1] + TITLE_H + GAP_Y
        x += max(w for w, _ in sizes) + GAP_X
    return ui
