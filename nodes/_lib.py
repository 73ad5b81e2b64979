"""The one place where node modules find the ``latent_ops`` library.

Inside ComfyUI (and in the import test) the repository root is imported as one package under a
mangled name, so the library is the sibling package ``<root>.latent_ops``. Installed with pip,
the node classes are the top-level package ``latent_ops_nodes`` beside the top-level
``latent_ops``. Either way exactly one copy of the library is imported.
"""

from __future__ import annotations

import importlib
from types import ModuleType

_PARENT = __package__.rpartition(".")[0] if __package__ else ""
LIBRARY = f"{_PARENT}.latent_ops" if _PARENT else "latent_ops"


def lib(module: str) -> ModuleType:
    """Import ``latent_ops.<module>`` from the copy that sits beside this package."""
    return importlib.import_module(f"{LIBRARY}.{module}")
