"""Progress reporting and cooperative interrupts for long loops, without any UI dependency.

Library loops call :func:`report` (or a callback passed to them); the headless engine installs a
hook with :func:`reporting` that draws a bar and raises :class:`Interrupted` when asked to stop.
Inner loops that have no progress of their own to show call :func:`check`, which hands the hook
the last reported position again (so a bar does not move) and so stops there too.
The hook lives in a context variable, so nothing global is mutated and threads stay separate.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator

Callback = Callable[[int, int], None]
"""``report(done, total)``: the one progress callback type of the library; may raise :class:`Interrupted`."""

_hook: contextvars.ContextVar[Callback | None] = contextvars.ContextVar("latent_ops_progress", default=None)
_position: contextvars.ContextVar[tuple[int, int]] = contextvars.ContextVar("latent_ops_position", default=(0, 1))


class Interrupted(Exception):
    """Raised inside a running loop when the user asked to stop."""


def report(done: int, total: int) -> None:
    """Tell the current hook (if any) that ``done`` of ``total`` steps are finished."""
    hook = _hook.get()
    if hook is not None:
        _position.set((done, total))
        hook(done, total)


def hooked() -> bool:
    """Whether a hook is installed here (the headless engine's, or a ComfyUI node call's)."""
    return _hook.get() is not None


def check() -> None:
    """An interrupt point: call the current hook (if any) with the last reported position.

    Raises:
        Interrupted: (from the hook) the user asked to stop.
    """
    hook = _hook.get()
    if hook is not None:
        hook(*_position.get())


@contextlib.contextmanager
def reporting(hook: Callback | None) -> Iterator[None]:
    """Install ``hook`` for the duration of the ``with`` block."""
    token = _hook.set(hook)
    position = _position.set((0, 1))
    try:
        yield
    finally:
        _position.reset(position)
        _hook.reset(token)
