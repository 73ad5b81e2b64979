"""Console script ``latent-ops``: the generic CLI with our nodes plus the headless core nodes.

Everything heavy (torch, the node modules) is imported inside :func:`main` after its signal
handlers are installed. Until those imports finish nothing has been written, so Ctrl-C (exit 130)
or SIGTERM (exit 143) then ends the process at once with ``os._exit``: raising an exception into
them is unsafe, since torch's import runs Python inside C++ initialisers, where a
KeyboardInterrupt aborts the process (SIGABRT) or is swallowed. Once running, the CLI's own Ctrl-C
handling applies, and SIGTERM ends the process through ``SystemExit``, so a file being written is
removed, not left behind as ``.tmp-*``.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any


def main() -> None:
    """Entry point installed by pip (``latent-ops = latent_ops_nodes.cli:main``)."""
    def exit_now(signum: int, frame: Any) -> None:  # noqa: ANN401
        os._exit(128 + signum)

    previous = signal.signal(signal.SIGINT, exit_now)
    signal.signal(signal.SIGTERM, exit_now)
    from . import NODE_DISPLAY_NAME_MAPPINGS, headless_registry
    from ._library import cli
    from .headless import HEADLESS_NODE_DISPLAY_NAME_MAPPINGS

    registry = headless_registry()
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    signal.signal(signal.SIGINT, previous)  # from here the CLI's own Ctrl-C handling applies
    try:
        code = cli.main(sys.argv[1:], registry, {**HEADLESS_NODE_DISPLAY_NAME_MAPPINGS, **NODE_DISPLAY_NAME_MAPPINGS})
    except KeyboardInterrupt:  # pressed between the handlers: nothing was started yet
        code = 130
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # done: a late Ctrl-C must not interrupt the exit
    sys.exit(code)
