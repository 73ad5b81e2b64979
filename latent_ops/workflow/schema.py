"""Read a V1 node class's declarations (``INPUT_TYPES``, ``RETURN_TYPES``, ...) into plain data.

Shared by the UI-format converter (which widgets a node has, in which order), validation (types,
bounds, combos) and ``latent-ops nodes`` (ComfyUI's ``/object_info`` shape).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

WIDGET_TYPES = frozenset({"INT", "FLOAT", "STRING", "BOOLEAN"})
"""Input types the graph editor shows as widgets (besides combos)."""

CONTROL_VALUES = frozenset({"fixed", "increment", "decrement", "randomize"})
"""Values of the editor's extra ``control_after_generate`` widget."""

SEED_NAMES = frozenset({"seed", "noise_seed"})
"""INT inputs that get the control widget unless they declare ``"control_after_generate": False`` (the
editor's rule, ComfyUI frontend 1.27: ``inputSpec.control_after_generate ?? ["seed", "noise_seed"].includes(name)``)."""

UPLOAD_OPTIONS = ("image_upload", "video_upload", "audio_upload")


@dataclass(frozen=True)
class InputDef:
    """One declared input of a node class.

    Attributes:
        name: input name. type: ``"INT"``, ``"LATENT"``, ``"COMBO"``, ``"*"`` or a comma union.
        options: the options dict (``default``, ``min``, ``max``, ...). choices: combo values.
        required: declared under ``required``. widget: the editor shows a widget for it.
        control: a ``control_after_generate`` value may follow it in ``widgets_values``: the editor
            adds the control widget (``adds_control``), or it did before the node declared
            ``"control_after_generate": False`` on a seed-named INT (files saved then carry one).
            Readers skip a following value only when it is one of :data:`CONTROL_VALUES`. (Not
            for an opted-out seed whose next widget could hold such a value: then it is that widget's.)
        upload: an upload-button value follows it in ``widgets_values``.
        adds_control: the editor adds the control widget today (what writers emit a value for).
    """

    name: str
    type: str
    options: Mapping[str, Any]
    choices: tuple[Any, ...] | None
    required: bool
    widget: bool
    control: bool
    upload: bool
    adds_control: bool = False


@dataclass(frozen=True)
class NodeDef:
    """What the engine needs to know about one node class."""

    class_type: str
    cls: type
    inputs: tuple[InputDef, ...]
    hidden: Mapping[str, str]
    output_types: tuple[str, ...]
    output_is_list: tuple[bool, ...]
    output_node: bool
    function: str
    input_is_list: bool
    not_idempotent: bool
    is_changed: Callable[..., Any] | None
    validate_inputs: Callable[..., Any] | None
    by_name: Mapping[str, InputDef] = field(default_factory=dict)
    is_changed_params: frozenset[str] | None = None
    """Inputs ``IS_CHANGED`` accepts (``None``: all of them, it takes ``**kwargs``)."""

    @property
    def widgets(self) -> tuple[InputDef, ...]:
        """Widget inputs in the editor's order (required, then optional)."""
        return tuple(i for i in self.inputs if i.widget)


def _parse_input(class_type: str, name: str, entry: Any, required: bool) -> InputDef:  # noqa: ANN401
    if not isinstance(entry, (tuple, list)) or not entry:
        raise TypeError(f"{class_type}.INPUT_TYPES: input {name!r} must be a (type, options) tuple, got {entry!r}")
    kind = entry[0]
    options = entry[1] if len(entry) > 1 and isinstance(entry[1], Mapping) else {}
    choices: tuple[Any, ...] | None = None
    if isinstance(kind, (list, tuple)):
        choices, kind = tuple(kind), "COMBO"
    elif kind == "COMBO":
        choices = tuple(options.get("options", ()))
    elif not isinstance(kind, str):
        raise TypeError(f"{class_type}.INPUT_TYPES: input {name!r} has type {kind!r}, expected a string or list")
    widget = (kind in WIDGET_TYPES or kind == "COMBO") and not options.get("forceInput", False)
    seed_named = kind == "INT" and name in SEED_NAMES
    declared = options.get("control_after_generate")
    adds_control = widget and (bool(declared) if declared is not None else seed_named)
    control = adds_control or (widget and seed_named)
    upload = widget and kind == "COMBO" and any(options.get(k) for k in UPLOAD_OPTIONS)
    return InputDef(name, kind, options, choices, required, widget, control, upload, adds_control)


def _could_hold_control_value(w: InputDef | None) -> bool:
    if w is None:
        return False
    return w.type == "STRING" or any(str(c) in CONTROL_VALUES for c in w.choices or ())


def _stale_controls(inputs: list[InputDef]) -> list[InputDef]:
    """A seed that opted out of the control widget may still be followed by a stale control value
    (files saved before it opted out), unless the next widget could hold such a value itself: then
    the value is that widget's, and old files of that node are read as the editor reads them."""
    widgets = [i for i in inputs if i.widget]
    following: list[InputDef | None] = [*widgets[1:], None]
    ambiguous = {w.name for w, nxt in zip(widgets, following, strict=False)
                 if w.control and not w.adds_control and _could_hold_control_value(nxt)}
    return [replace(i, control=False) if i.name in ambiguous else i for i in inputs]


def node_def(class_type: str, cls: type) -> NodeDef:
    """Collect ``cls``'s declarations; ``INPUT_TYPES()`` is called (it may list files).

    Raises:
        TypeError: if the class does not follow the V1 contract.
    """
    spec = cls.INPUT_TYPES()
    if not isinstance(spec, Mapping):
        raise TypeError(f"{class_type}.INPUT_TYPES() must return a dict, got {type(spec).__name__}")
    inputs = _stale_controls([
        _parse_input(class_type, name, entry, section == "required")
        for section in ("required", "optional")
        for name, entry in dict(spec.get(section) or {}).items()
    ])
    hidden = {name: (entry[0] if isinstance(entry, (tuple, list)) else entry)
              for name, entry in dict(spec.get("hidden") or {}).items()}
    outputs = tuple("COMBO" if isinstance(t, (list, tuple)) else str(t) for t in getattr(cls, "RETURN_TYPES", ()))
    is_list = tuple(bool(b) for b in getattr(cls, "OUTPUT_IS_LIST", ())) or (False,) * len(outputs)
    is_changed = getattr(cls, "IS_CHANGED", None)
    params = None
    if is_changed is not None:
        try:
            signature = inspect.signature(is_changed).parameters.values()
        except (TypeError, ValueError):
            signature = ()
        if not any(p.kind is p.VAR_KEYWORD for p in signature):
            params = frozenset(p.name for p in signature)
    function = getattr(cls, "FUNCTION", None)
    if not isinstance(function, str) or not callable(getattr(cls, function, None)):
        raise TypeError(f"{class_type}: FUNCTION {function!r} is not a method of the class")
    return NodeDef(
        class_type=class_type,
        cls=cls,
        inputs=tuple(inputs),
        hidden=hidden,
        output_types=outputs,
        output_is_list=is_list,
        output_node=getattr(cls, "OUTPUT_NODE", False) is True,
        function=function,
        input_is_list=bool(getattr(cls, "INPUT_IS_LIST", False)),
        not_idempotent=bool(getattr(cls, "NOT_IDEMPOTENT", False)) or "UNIQUE_ID" in hidden.values(),
        is_changed=is_changed,
        validate_inputs=getattr(cls, "VALIDATE_INPUTS", None),
        by_name={i.name: i for i in inputs},
        is_changed_params=params,
    )


def types_match(output_type: str, input_type: str) -> bool:
    """ComfyUI's link rule: equal, ``"*"`` on either side, or overlapping comma unions."""
    if output_type == input_type or output_type == "*" or input_type == "*":
        return True
    a, b = set(output_type.split(",")), set(input_type.split(","))
    return "*" in a or "*" in b or bool(a & b)


def object_info(class_type: str, cls: type, display_name: str | None = None) -> dict[str, Any]:
    """One entry of ComfyUI's ``GET /object_info`` for ``cls``."""
    spec = cls.INPUT_TYPES()
    outputs = list(getattr(cls, "RETURN_TYPES", ()))
    info: dict[str, Any] = {
        "input": spec,
        "input_order": {section: list(values) for section, values in spec.items()},
        "output": outputs,
        "output_is_list": list(getattr(cls, "OUTPUT_IS_LIST", [False] * len(outputs))),
        "output_name": list(getattr(cls, "RETURN_NAMES", outputs)),
        "name": class_type,
        "display_name": display_name or class_type,
        "description": getattr(cls, "DESCRIPTION", ""),
        "python_module": getattr(cls, "RELATIVE_PYTHON_MODULE", cls.__module__),
        "category": getattr(cls, "CATEGORY", "sd"),
        "output_node": getattr(cls, "OUTPUT_NODE", False) is True,
    }
    if hasattr(cls, "OUTPUT_TOOLTIPS"):
        info["output_tooltips"] = list(cls.OUTPUT_TOOLTIPS)
    for flag in ("DEPRECATED", "EXPERIMENTAL"):
        if getattr(cls, flag, False):
            info[flag.lower()] = True
    return info
