"""The node registry: thin ComfyUI V1 node classes, one ``latent_ops`` call each.

Node IDs are public API (they are stored in workflow files): they are written out in each
module's ``NODE_CLASS_MAPPINGS`` and never derived. :func:`headless_registry` adds the headless
stand-ins for ComfyUI core nodes, which exist only outside ComfyUI.
"""

from __future__ import annotations

from . import comfy_sampling, image, interp, latent, noise, sampling, space, traverse, vae

_MODULES = (interp, noise, traverse, vae, sampling, comfy_sampling, space, latent, image)


def _merge(attr: str) -> dict:
    merged: dict = {}
    for module in _MODULES:
        table = getattr(module, attr)
        clash = merged.keys() & table.keys()
        if clash:
            raise RuntimeError(f"duplicate node ids in nodes.{module.__name__}: {sorted(clash)}")
        merged.update(table)
    return merged


NODE_CLASS_MAPPINGS: dict[str, type] = _merge("NODE_CLASS_MAPPINGS")
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = _merge("NODE_DISPLAY_NAME_MAPPINGS")


def headless_registry() -> dict[str, type]:
    """Our nodes plus headless versions of the ComfyUI core nodes workflows put around them."""
    from .headless import HEADLESS_NODE_CLASS_MAPPINGS

    return {**HEADLESS_NODE_CLASS_MAPPINGS, **NODE_CLASS_MAPPINGS}
