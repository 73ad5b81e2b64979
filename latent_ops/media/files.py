"""Files of workflow nodes: atomic writes, PNG and ``.latent`` files, images in and out.

Output files are written to a temporary file and linked into place, so no partial file is ever
left and an existing file is never overwritten. Names and folders are confined by
:mod:`.folders`; PNG text chunks are read by :mod:`.png`. Their public names are importable from
here too (``files.using``, ``files.resolve_input``, ``files.read_png_text``, ...), as is
:class:`FileAccessError`.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

from ..errors import FileAccessError
from .folders import (
    IMAGE_SUFFIXES,
    Folders,
    OutputFile,
    current,
    input_fingerprint,
    input_problem,
    list_inputs,
    next_counter,
    output_path,
    resolve_input,
    safe_name,
    sha256,
    temp_dir,
    using,
)
from .png import PNG_SIGNATURE, read_png_text

__all__ = [
    "IMAGE_SUFFIXES", "PNG_SIGNATURE", "FileAccessError", "Folders", "OutputFile", "current", "image_to_uint8",
    "input_fingerprint", "input_problem", "latent_bytes", "list_inputs", "load_image", "load_latent",
    "new_file_mode", "next_counter", "output_path", "read_png_text", "resolve_input", "safe_name", "save_images",
    "save_latent", "save_png", "sha256", "temp_dir", "using", "write_atomic",
]


def new_file_mode() -> int:
    """The permissions ``open(path, "w")`` would give a new file: ``0o666`` less the process umask."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # no /proc: reading the umask means setting it, so put it straight back
    os.umask(mask)
    return 0o666 & ~mask


def write_atomic(path: Path, data: bytes | Callable[[IO[bytes]], None], overwrite: bool = False) -> Path:
    """Write ``data`` (bytes, or a function writing to a binary file) to ``path`` atomically.

    The content goes to a temporary file in the same folder first; on any error that file is
    removed and ``path`` is untouched.

    Raises:
        FileExistsError: if ``path`` exists and ``overwrite`` is False.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=path.suffix, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            if isinstance(data, (bytes, bytearray, memoryview)):
                fh.write(data)
            else:
                data(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, new_file_mode())  # mkstemp makes it 0600; the user expects a normal file
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)  # fails if path exists: never overwrites
            except FileExistsError:
                raise FileExistsError(f"{path} already exists; not overwriting it") from None
            except OSError:  # no hard links on this file system: reserve the name, then replace it
                os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
                os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return path


# ----------------------------------------------------------------------------- images
def image_to_uint8(image: torch.Tensor) -> np.ndarray:
    """ComfyUI's SaveImage conversion: ``clip(255 * x, 0, 255)`` truncated to uint8, ``[H,W,C]``.

    Raises:
        ValueError: if ``image`` is not ``[H, W, 3 or 4]`` or holds NaN/Inf.
    """
    if image.ndim != 3 or image.shape[-1] not in (1, 3, 4):
        raise ValueError(f"image_to_uint8: expected an [H, W, 3] image, got shape {tuple(image.shape)}")
    array = image.detach().to("cpu", torch.float32).numpy()
    if not np.isfinite(array).all():
        raise ValueError("image_to_uint8: image contains NaN or Inf")
    return np.clip(255.0 * array, 0, 255).astype(np.uint8)


def save_png(image: Any, path: Path, prompt: Mapping[str, Any] | None = None,  # noqa: ANN401
             extra_pnginfo: Mapping[str, Any] | None = None, compress_level: int = 4) -> Path:
    """Write a PNG with ComfyUI's ``prompt`` and per-key ``extra_pnginfo`` (``workflow``) text chunks.

    Args:
        image: a PIL image, a uint8 ``[H,W,C]`` array, or a float ``[H,W,3]`` tensor in [0, 1].
    """
    from PIL import Image, PngImagePlugin

    if isinstance(image, torch.Tensor):
        image = image_to_uint8(image)
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
    info = PngImagePlugin.PngInfo()
    if prompt is not None:
        info.add_text("prompt", json.dumps(prompt))
    for key, value in (extra_pnginfo or {}).items():
        info.add_text(key, json.dumps(value))
    return write_atomic(path, lambda fh: image.save(fh, format="PNG", pnginfo=info, compress_level=compress_level))


def load_image(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """ComfyUI's LoadImage: frames of one size as ``[B,H,W,3]`` and masks ``[B,H,W]`` (1 - alpha).

    Without alpha the mask is ``[B, 64, 64]`` zeros, as in ComfyUI.

    Raises:
        FileAccessError: if the file is not a readable image.
    """
    from PIL import Image, ImageOps, ImageSequence, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            images, masks, size = [], [], None
            for frame in ImageSequence.Iterator(img):
                frame = ImageOps.exif_transpose(frame)
                if frame.mode == "I":
                    frame = frame.point(lambda v: v * (1 / 255))
                rgb = frame.convert("RGB")
                if size is None:
                    size = rgb.size
                elif rgb.size != size:
                    continue
                images.append(torch.from_numpy(np.asarray(rgb, dtype=np.float32) / 255.0))
                if "A" in frame.getbands():
                    alpha = np.asarray(frame.getchannel("A"), dtype=np.float32) / 255.0
                    masks.append(1.0 - torch.from_numpy(alpha))
                elif frame.mode == "P" and "transparency" in frame.info:
                    alpha = np.asarray(frame.convert("RGBA").getchannel("A"), dtype=np.float32) / 255.0
                    masks.append(1.0 - torch.from_numpy(alpha))
                else:
                    masks.append(torch.zeros((64, 64), dtype=torch.float32))
                if img.format == "MPO":
                    break
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError, SyntaxError) as err:
        raise FileAccessError(f"cannot read image {path.name!r}: {err}") from None
    if not images:
        raise FileAccessError(f"image {path.name!r} has no frames")
    return torch.stack(images), torch.stack(masks)


# ----------------------------------------------------------------------------- latents
def latent_bytes(samples: torch.Tensor, metadata: Mapping[str, str] | None = None) -> bytes:
    """ComfyUI's ``.latent`` file: safetensors with ``latent_tensor`` and ``latent_format_version_0``."""
    from safetensors.torch import save

    tensors = {"latent_tensor": samples.detach().to("cpu").contiguous(), "latent_format_version_0": torch.tensor([])}
    return save(tensors, metadata=dict(metadata) if metadata else None)


def load_latent(path: Path) -> dict[str, torch.Tensor]:
    """Read a ``.latent`` file as ``{"samples": float32 tensor}``.

    Files without ``latent_format_version_0`` were saved scaled by SD1.x's 0.18215 and are
    multiplied by ``1 / 0.18215``, as ComfyUI's LoadLatent does.

    Raises:
        FileAccessError: if it is not a safetensors file with a ``latent_tensor``.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        tensors = load(path.read_bytes())
    except (SafetensorError, OSError, ValueError) as err:
        raise FileAccessError(f"cannot read latent file {path.name!r}: {err}") from None
    if "latent_tensor" not in tensors:
        raise FileAccessError(f"latent file {path.name!r} has no 'latent_tensor' (keys: {sorted(tensors)[:8]})")
    multiplier = 1.0 if "latent_format_version_0" in tensors else 1.0 / 0.18215
    return {"samples": tensors["latent_tensor"].float() * multiplier}


def save_images(images: torch.Tensor, filename_prefix: str, prompt: Mapping[str, Any] | None = None,
                extra_pnginfo: Mapping[str, Any] | None = None, temp: bool = False) -> list[dict[str, str]]:
    """ComfyUI's SaveImage/PreviewImage: one PNG per batch item with metadata; returns ``ui`` entries.

    Every image is converted (and checked) before the first file is written.

    Args:
        images: ``[B, H, W, 3]`` float in [0, 1]. filename_prefix: ComfyUI's prefix (subfolders allowed).
    """
    if images.ndim != 4:
        raise ValueError(f"save_images: images must be [B, H, W, 3], got shape {tuple(images.shape)}")
    arrays = [image_to_uint8(image) for image in images]
    results = []
    for index, array in enumerate(arrays):
        prefix = filename_prefix.replace("%batch_num%", str(index))
        target = output_path(prefix, "png", width=array.shape[1], height=array.shape[0], temp=temp)
        save_png(array, target.path, prompt, extra_pnginfo, compress_level=1 if temp else 4)
        results.append(target.ui())
    return results


def save_latent(samples: torch.Tensor, filename_prefix: str, prompt: Mapping[str, Any] | None = None,
                extra_pnginfo: Mapping[str, Any] | None = None) -> dict[str, str]:
    """ComfyUI's SaveLatent: a ``.latent`` file with ``prompt``/``workflow`` metadata; returns its ``ui`` entry."""
    metadata = {"prompt": json.dumps(prompt) if prompt is not None else ""}
    metadata.update({key: json.dumps(value) for key, value in (extra_pnginfo or {}).items()})
    payload = latent_bytes(samples, metadata)
    target = output_path(filename_prefix, "latent")
    write_atomic(target.path, payload)
    return target.ui()
