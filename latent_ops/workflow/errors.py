"""Error types of the workflow engine.

Validation problems use ComfyUI's error ``type`` names (``required_input_missing``,
``value_not_in_list``, ...) plus a few of our own for what ComfyUI reports less precisely
(``missing_node_type``, ``dangling_link``, ``dependency_cycle``).
"""

from __future__ import annotations

import reprlib
from dataclasses import dataclass
from typing import Any

from ..errors import LatentOpsError

_MAX_REPR = 120
MAX_MESSAGE = 2000
"""Characters of one problem or error message (a node id, a node's error or its VALIDATE_INPUTS
answer can be any size)."""


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxdict, _REPR.maxtuple = 3, 6, 6, 6
_REPR.maxstring, _REPR.maxlong, _REPR.maxother = _MAX_REPR, 40, _MAX_REPR


def short_repr(value: Any) -> str:  # noqa: ANN401 - any JSON value
    """``repr(value)`` cut to a readable length (hostile files can hold huge or deep values)."""
    try:
        text = _REPR.repr(value)
    except Exception:  # noqa: BLE001 - a broken __repr__ must not hide the real error
        text = f"<{type(value).__name__}>"
    return text if len(text) <= _MAX_REPR else text[: _MAX_REPR - 3] + "..."


def cut(text: str, limit: int = MAX_MESSAGE) -> str:
    """``text`` cut to ``limit`` characters, saying how long it was (messages quote node ids and errors)."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


@dataclass(frozen=True)
class Problem:
    """One validation problem, naming where it is and what was received.

    Attributes:
        type: ComfyUI-style error type (``value_bigger_than_max``, ``missing_node_type``, ...).
        message: a sentence for people, naming node, class, input and value.
        node_id: the API node id, or ``None`` for whole-prompt problems.
        class_type: the node's class, if known.
        input_name: the offending input, if any.
        received_value: the offending value (JSON-safe, shortened), if any.
    """

    type: str
    message: str
    node_id: str | None = None
    class_type: str | None = None
    input_name: str | None = None
    received_value: Any = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "message", cut(self.message))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (the received value is kept only if it is a small JSON scalar; names are cut)."""
        named = (cut(v, _MAX_REPR) if isinstance(v, str) else v for v in (self.node_id, self.class_type, self.input_name))
        node_id, class_type, input_name = named
        out = {"type": self.type, "message": self.message, "node_id": node_id, "class_type": class_type,
               "input_name": input_name, "received_value": self.received_value}
        value = out["received_value"]
        if not (value is None or isinstance(value, (bool, int, float)) and len(str(value)) <= 40
                or isinstance(value, str) and len(value) <= _MAX_REPR):
            out["received_value"] = short_repr(value)
        return out

    def __str__(self) -> str:
        return self.message


class WorkflowError(LatentOpsError):
    """A workflow file could not be read or converted (not JSON, wrong structure, no workflow)."""


class ValidationFailed(WorkflowError):
    """The workflow failed validation; ``problems`` lists every problem found."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        lines = "\n".join(f"  - {p.message}" for p in self.problems)
        super().__init__(f"workflow failed validation with {len(self.problems)} problem(s):\n{lines}")


class ExecutionError(RuntimeError):
    """A node raised while running; the original exception is ``__cause__``."""

    def __init__(self, node_id: str, class_type: str, error: BaseException) -> None:
        self.node_id = node_id
        self.class_type = class_type
        self.error_type = type(error).__name__
        self.error_message = cut(str(error))
        super().__init__(f"node {cut(node_id, _MAX_REPR)} ({class_type}) failed: {self.error_type}: {self.error_message}")


class RunInterrupted(RuntimeError):
    """The run was interrupted cooperatively; ``node_id`` is the node that was running or next."""

    def __init__(self, node_id: str | None, class_type: str | None) -> None:
        self.node_id = node_id
        self.class_type = class_type
        where = f" at node {node_id} ({class_type})" if node_id is not None else ""
        super().__init__(f"run interrupted{where}")
