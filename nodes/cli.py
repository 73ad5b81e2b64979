"""Console script ``latent-ops``: the generic CLI with our nodes plus the headless core nodes.

Everything heavy (torch, the node modules) is imported inside :func:`main` after its Ctrl-C
handler is installed, so Ctrl-C at any moment, start-up included, exits with 130 and no
traceback. The handler also remembers the press: torch's import swallows a KeyboardInterrupt
raised while it imports numpy (and may then fail on a half-imported numpy), so a press during
the imports counts even when the exception never reaches us. SIGTERM ends the process with exit
code 143 through ``SystemExit``, so a file being written is removed, not left behind as ``.tmp-*``.
"""

from __future__ import annotations

import signal
import sys
from typing import Any


def main() -> None:
    """Entry point installed by pip (``latent-ops = latent_ops_nodes.cli:main``)."""
    pressed: list[int] = []

    def on_ctrl_c(signum: int, frame: Any) -> None:  # noqa: ANN401
        pressed.append(signum)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, on_ctrl_c)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        from . import NODE_DISPLAY_NAME_MAPPINGS, headless_registry
        from ._library import cli
        from .headless import HEADLESS_NODE_DISPLAY_NAME_MAPPINGS

        registry = headless_registry()
        if pressed:  # a library swallowed the KeyboardInterrupt
            raise KeyboardInterrupt
        signal.signal(signal.SIGINT, previous)  # from here the CLI's own Ctrl-C handling applies
        code = cli.main(sys.argv[1:], registry, {**HEADLESS_NODE_DISPLAY_NAME_MAPPINGS, **NODE_DISPLAY_NAME_MAPPINGS})
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # done: a late Ctrl-C must not interrupt the exit
    except BaseException as err:  # noqa: BLE001 - only a Ctrl-C (or what it broke) is handled
        if not (pressed or isinstance(err, KeyboardInterrupt)):
            raise
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        code = 130
    sys.exit(code)
