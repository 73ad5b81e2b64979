"""Progress reporting and cooperative interrupts for long loops, without any UI dependency.

Library loops call :func:`report` (or a callback passed to them); the headless engine installs a
hook with :func:`reporting` that draws a bar and raises :class:`Interrupted` when asked to stop.
The hook lives in a context variable, so nothing global is mutated and threads stay separate.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator

Callback = Callable[[int, int], None]
"""``report(done, total)``: the one progress callback type of the library; may raise :class:`Interrupted`."""

_hook: contextvars.ContextVar[Callback | None] = contextvars.ContextVar("latent_ops_progress", default=None)


class Interrupted(Exception):
    """Raised inside a running loop when the user asked to stop."""


def report(done: int, total: int) -> None:
    """Tell the current hook (if any) that ``done`` of ``total`` steps are finished."""
    hook = _hook.get()
    if hook is not None:
        hook(done, total)


@contextlib.contextmanager
def reporting(hook: Callback | None) -> Iterator[None]:
    """Install ``hook`` for the duration of the ``with`` block."""
    token = _hook.set(hook)
    try:
        yield
    finally:
        _hook.reset(token)
