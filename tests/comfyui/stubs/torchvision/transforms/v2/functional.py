"""Import-only stand-in for ``torchvision.transforms.v2.functional`` (see the package docstring)."""
