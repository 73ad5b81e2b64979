"""Import-only stand-in for ``torchvision.transforms.v2`` (see the package docstring)."""

from . import functional  # noqa: F401
