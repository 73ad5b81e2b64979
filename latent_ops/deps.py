"""Optional dependencies, imported when first needed, with an error that says how to install them.

The maths (noise, interpolation, walks, traversal, sampling loops) needs only torch. Loading
networks needs ``diffusers`` (and ``transformers`` for CLIP text encoders); inside ComfyUI the
plugin's only extra requirement is ``diffusers``. A missing package must not surface as a bare
``No module named 'diffusers'`` deep inside a node: :func:`require` names what needed it and the
exact command that installs it into the running interpreter.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType

from .errors import LatentOpsError


class MissingDependencyError(LatentOpsError, ImportError):
    """An optional package that a loader needs is not installed."""


def require(module: str, purpose: str) -> ModuleType:
    """Import ``module`` (e.g. ``"diffusers"``) or raise :class:`MissingDependencyError`.

    Args:
        module: dotted module name; its top-level package is the one to install.
        purpose: what needed it, e.g. ``"loading a VAE"`` (starts the error message).

    Returns:
        The imported module.
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        package = module.split(".")[0]
        missing = getattr(err, "name", None) or package
        if "." in missing:  # the package is there but lacks a submodule: too old
            raise MissingDependencyError(
                f"{purpose} needs {module!r}, which the installed {package!r} lacks ({err}); it is probably too old. "
                f"Upgrade it: {sys.executable} -m pip install -U {package}") from err
        raise MissingDependencyError(
            f"{purpose} needs the Python package {missing!r}, which this Python ({sys.executable}) cannot import "
            f"({err}). Install it into that environment: {sys.executable} -m pip install {missing}") from err
