"""Console script ``latent-ops``: the generic CLI with our nodes plus the headless core nodes."""

from __future__ import annotations

import sys

from . import NODE_DISPLAY_NAME_MAPPINGS, headless_registry
from ._library import cli


def main() -> None:
    """Entry point installed by pip (``latent-ops = latent_ops_nodes.cli:main``)."""
    from .headless import HEADLESS_NODE_DISPLAY_NAME_MAPPINGS

    names = {**HEADLESS_NODE_DISPLAY_NAME_MAPPINGS, **NODE_DISPLAY_NAME_MAPPINGS}
    sys.exit(cli.main(sys.argv[1:], headless_registry(), names))
