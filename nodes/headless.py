"""Headless stand-ins for ComfyUI core nodes (placeholder: filled in by the runner issue)."""

HEADLESS_NODE_CLASS_MAPPINGS: dict[str, type] = {}
