"""Latent Ops: latent-space operations for image generative models (torch only, no ComfyUI).

Submodules are imported on use (``from latent_ops import interp``); importing the package itself
is cheap and never imports diffusers or transformers.
"""

__version__ = "0.1.0"
