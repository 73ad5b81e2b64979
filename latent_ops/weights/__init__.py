"""Weights on disk: safe file loading (no pickles), LDM ↔ diffusers key conversion, model folders.

- :mod:`.files`: safetensors loading with header checks; pickles refused.
- :mod:`.ldm_convert`: original LDM key layout ↔ diffusers for VAEs and TAESD.
- :mod:`.folders`: where models live (``--models-dir``, ``LATENT_OPS_MODELS``, ``extra_model_paths.yaml``).
"""
