"""The one place where node modules import the library: the ``nodes → latent_ops`` arrow.

Two layouts, one copy of the library either way, and plain imports that editors, type checkers
and import-graph tools follow:

- ComfyUI (and the plugin import test) imports the repository root as one package under a
  mangled name, so the library is the sibling package ``<root>.latent_ops``;
- installed with pip, the nodes are the top-level package ``latent_ops_nodes`` beside the
  top-level ``latent_ops``.

Nothing is added to ``sys.path`` and no module is aliased.
"""

# ruff: noqa: F401 - this module re-exports the library modules the nodes use

from __future__ import annotations

if "." in (__package__ or ""):  # <root>.nodes: the repository root imported as one package
    from .. import latent_ops as _root
    from ..latent_ops import (
        checkpoints,
        devices,
        interp,
        latent_format,
        latents,
        noise,
        progress,
        seeds,
        space,
        traverse,
        walk,
    )
    from ..latent_ops.media import animation, files, images
    from ..latent_ops.noise import sources as noise_sources
    from ..latent_ops.noise import types as noise_types
    from ..latent_ops.sampling import diffusion, noising, per_image, schedules
    from ..latent_ops.sampling import registry as samplers
    from ..latent_ops.space import cluster, neighbors
    from ..latent_ops.space import plot as space_plot
    from ..latent_ops.vae import generic as vae_calls
    from ..latent_ops.vae import geometry as vae_geometry
    from ..latent_ops.vae import loading as vae_loading
    from ..latent_ops.weights import folders as model_paths
    from ..latent_ops.workflow import cli
else:  # latent_ops_nodes, installed beside the top-level latent_ops
    import latent_ops as _root
    from latent_ops import (
        checkpoints,
        devices,
        interp,
        latent_format,
        latents,
        noise,
        progress,
        seeds,
        space,
        traverse,
        walk,
    )
    from latent_ops.media import animation, files, images
    from latent_ops.noise import sources as noise_sources
    from latent_ops.noise import types as noise_types
    from latent_ops.sampling import diffusion, noising, per_image, schedules
    from latent_ops.sampling import registry as samplers
    from latent_ops.space import cluster, neighbors
    from latent_ops.space import plot as space_plot
    from latent_ops.vae import generic as vae_calls
    from latent_ops.vae import geometry as vae_geometry
    from latent_ops.vae import loading as vae_loading
    from latent_ops.weights import folders as model_paths
    from latent_ops.workflow import cli

LIBRARY: str = _root.__name__
"""The library's module name in this process (``latent_ops`` or ``<root>.latent_ops``)."""
