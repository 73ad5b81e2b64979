"""ComfyUI nodes for latent_ops.noise (placeholder: filled in by its issue)."""

NODE_CLASS_MAPPINGS: dict[str, type] = {}
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {}
