"""Import-only stand-in for ``torchvision.io`` (see the package docstring)."""
