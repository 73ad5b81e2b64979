"""Import-only stand-in for torchvision, for the real-ComfyUI tests (used only when torchvision is absent).

The CPU torch these tests run on has no matching torchvision wheel offline. Nothing the tests run
uses torchvision, but two packages import it at module level:

- ComfyUI 0.3.64 (``import torchvision``, ``from torchvision import transforms`` in model files);
- ``transformers``, which takes the stub for a real install (it only asks ``find_spec``) and then
  imports ``torchvision.io``, ``transforms.InterpolationMode``, ``transforms.functional.pil_to_tensor``
  and ``transforms.v2.functional``, and parses ``__version__`` (reached when diffusers loads a model).

Those names exist here; none of them works.
"""

__version__ = "0.28.0"

from . import io, transforms  # noqa: E402, F401
