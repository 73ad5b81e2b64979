"""The library's error classes: one base, a few subjects.

Every error the library raises for bad input, bad files or bad models is a :class:`LatentOpsError`,
which is a :class:`ValueError`, so callers that catch ``ValueError`` keep working. The message is
one line that names the function, input or file and the offending values.

Subject-specific classes are defined here (one home) and re-exported where they are raised:
:class:`FileAccessError` (:mod:`latent_ops.media.files`), :class:`ModelLoadError`
(:mod:`latent_ops.weights.files`, VAE and checkpoint loading), :class:`ModelPathError`
(:mod:`latent_ops.weights.folders`).
"""

from __future__ import annotations


class LatentOpsError(ValueError):
    """Base class: bad input, an unreadable or unsafe file, or a model that cannot be loaded."""


class FileAccessError(LatentOpsError):
    """A file name escapes its folder, is missing, or cannot be read or written."""


class ModelLoadError(LatentOpsError):
    """A model file or folder that is missing, unsafe, corrupt, or of an unsupported layout."""


class CheckpointError(ModelLoadError):
    """A checkpoint that cannot be loaded (missing parts, unknown layout, mismatched shapes)."""


class ModelPathError(LatentOpsError):
    """A model name that cannot be resolved, or that tries to leave the model folders."""
