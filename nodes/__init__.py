"""The node registry: thin ComfyUI V1 node classes, one ``latent_ops`` call each.

Node IDs are public API (they are stored in workflow files): they are written out in each
module's ``NODE_CLASS_MAPPINGS`` and never derived. :func:`headless_registry` adds the headless
stand-ins for ComfyUI core nodes, which exist only outside ComfyUI. The merged tables are built on
first access (importing the package itself is cheap).
"""

from __future__ import annotations

from typing import Any

_TABLES = ("NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS")


def _merge(attr: str) -> dict:
    from . import comfy_sampling, image, interp, latent, noise, sampling, space, traverse, vae

    merged: dict = {}
    for module in (interp, noise, traverse, vae, sampling, comfy_sampling, space, latent, image):
        table = getattr(module, attr)
        clash = merged.keys() & table.keys()
        if clash:
            raise RuntimeError(f"duplicate node ids in nodes.{module.__name__}: {sorted(clash)}")
        merged.update(table)
    return merged


def __getattr__(name: str) -> Any:  # noqa: ANN401
    """``NODE_CLASS_MAPPINGS`` / ``NODE_DISPLAY_NAME_MAPPINGS``, built (importing torch) on first use,
    so that the ``latent-ops`` script can catch Ctrl-C before the heavy imports start."""
    if name not in _TABLES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    for table in _TABLES:
        globals()[table] = _merge(table)
    return globals()[name]


def headless_registry() -> dict[str, type]:
    """Our nodes plus headless versions of the ComfyUI core nodes workflows put around them."""
    from .headless import HEADLESS_NODE_CLASS_MAPPINGS

    return {**HEADLESS_NODE_CLASS_MAPPINGS, **__getattr__("NODE_CLASS_MAPPINGS")}
