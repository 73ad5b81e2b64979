"""Import-only stand-in for ``torchvision.transforms.functional`` (see the package docstring)."""


def pil_to_tensor(pic: object) -> None:
    raise NotImplementedError("torchvision stub (real-ComfyUI tests): pil_to_tensor is not available")
