"""Files of workflow nodes: PNG and ``.latent`` files, images in and out.

Output files are written atomically and take their counted names race-free (:mod:`.writes`), so no
partial file is ever left, an existing file is never overwritten and concurrent runs never lose a
file. ``.latent`` files are written streaming (:func:`write_safetensors`) and images are measured
before they are decoded (:func:`load_image`). Names and folders are confined by :mod:`.folders`;
PNG text chunks are read by :mod:`.png`. Their public names are importable from here too
(``files.using``, ``files.resolve_input``, ``files.write_atomic``, ``files.read_png_text``, ...),
as is :class:`FileAccessError`.
"""

from __future__ import annotations

import json
import struct
import sys
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

from .. import progress
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
    output_folder,
    output_path,
    resolve_input,
    safe_name,
    sha256,
    temp_dir,
    using,
)
from .png import PNG_SIGNATURE, read_png_text
from .writes import MAX_COUNTER_TRIES, new_file_mode, remove_stale_temp, save_output, write_atomic

__all__ = [
    "IMAGE_SUFFIXES", "MAX_COUNTER_TRIES", "MAX_FRAME_PIXELS", "MAX_IMAGE_BYTES", "PNG_SIGNATURE", "FileAccessError",
    "Folders", "OutputFile", "current", "image_to_uint8", "input_fingerprint", "input_problem", "latent_bytes", "list_inputs",
    "load_image", "load_latent", "new_file_mode", "next_counter", "output_folder", "output_path", "read_png_text",
    "remove_stale_temp", "resolve_input", "safe_name", "save_images", "save_latent", "save_output", "save_png",
    "sha256", "temp_dir", "using", "write_atomic", "write_safetensors",
]

MAX_FRAME_PIXELS = 89_478_485
"""Pixels of one image frame LoadImage decodes (Pillow's default ``MAX_IMAGE_PIXELS``, about 9459²:
1 GiB as a float32 RGB frame)."""
MAX_IMAGE_BYTES = 4 * 2**30
"""Bytes of float32 frames and masks one image file may decode to (frames × pixels × 16)."""


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


def _png_writer(image: Any, prompt: Mapping[str, Any] | None, extra_pnginfo: Mapping[str, Any] | None,  # noqa: ANN401
                compress_level: int) -> Callable[[IO[bytes]], None]:
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
    return lambda fh: image.save(fh, format="PNG", pnginfo=info, compress_level=compress_level)


def save_png(image: Any, path: Path, prompt: Mapping[str, Any] | None = None,  # noqa: ANN401
             extra_pnginfo: Mapping[str, Any] | None = None, compress_level: int = 4) -> Path:
    """Write a PNG with ComfyUI's ``prompt`` and per-key ``extra_pnginfo`` (``workflow``) text chunks.

    Args:
        image: a PIL image, a uint8 ``[H,W,C]`` array, or a float ``[H,W,3]`` tensor in [0, 1].
    """
    return write_atomic(path, _png_writer(image, prompt, extra_pnginfo, compress_level))


def _measure(img: Any, name: str) -> int:  # noqa: ANN401 - an open PIL image
    """Frames to decode, after checking that they fit :data:`MAX_FRAME_PIXELS` and :data:`MAX_IMAGE_BYTES`."""
    width, height = img.size
    pixels = width * height
    if pixels > MAX_FRAME_PIXELS:
        raise FileAccessError(f"image {name!r:.80} is {width}x{height} = {pixels} pixels; at most "
                              f"{MAX_FRAME_PIXELS} pixels per frame are loaded")
    frames = 1 if img.format == "MPO" else int(getattr(img, "n_frames", 1))
    need = frames * pixels * 16  # float32 RGB (12 bytes) and mask (4 bytes) per pixel
    if need > MAX_IMAGE_BYTES:
        raise FileAccessError(f"image {name!r:.80} has {frames} frame(s) of {width}x{height}: {need / 2**30:.1f} GiB "
                              f"as float32 images and masks; at most {MAX_IMAGE_BYTES / 2**30:.0f} GiB are loaded")
    return frames


def load_image(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """ComfyUI's LoadImage: frames of one size as ``[B,H,W,3]`` and masks ``[B,H,W]`` (1 - alpha).

    Without alpha the mask is ``[B, 64, 64]`` zeros, as in ComfyUI. The size and frame count
    are read from the header and checked before anything is decoded (:data:`MAX_FRAME_PIXELS`,
    :data:`MAX_IMAGE_BYTES`; Pillow's own decompression-bomb check is a refusal too, never a raw
    warning). Each frame is a progress step (an interrupt point).

    Raises:
        FileAccessError: if the file is not a readable image or is too large, naming the file and sizes.
    """
    from PIL import Image, ImageOps, ImageSequence, UnidentifiedImageError

    try:
        with warnings.catch_warnings():  # the pixel count is checked below, with a clearer message
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path)
        with img:
            frames = _measure(img, path.name)
            images: torch.Tensor | None = None
            masks, size, count = [], None, 0
            for frame in ImageSequence.Iterator(img):
                frame = ImageOps.exif_transpose(frame)
                if frame.mode == "I":
                    frame = frame.point(lambda v: v * (1 / 255))
                rgb = frame.convert("RGB")
                if size is None:
                    size = rgb.size
                    images = torch.empty((frames, size[1], size[0], 3), dtype=torch.float32)
                elif rgb.size != size:
                    continue
                np.divide(np.asarray(rgb), np.float32(255.0), out=images[count].numpy(), dtype=np.float32)
                count += 1
                if "A" in frame.getbands():
                    alpha = np.asarray(frame.getchannel("A"), dtype=np.float32) / 255.0
                    masks.append(1.0 - torch.from_numpy(alpha))
                elif frame.mode == "P" and "transparency" in frame.info:
                    alpha = np.asarray(frame.convert("RGBA").getchannel("A"), dtype=np.float32) / 255.0
                    masks.append(1.0 - torch.from_numpy(alpha))
                else:
                    masks.append(torch.zeros((64, 64), dtype=torch.float32))
                progress.report(count, frames)
                if img.format == "MPO" or count == frames:
                    break
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError, SyntaxError, ValueError) as err:
        if isinstance(err, FileAccessError):
            raise
        raise FileAccessError(f"cannot read image {path.name!r:.80}: {str(err):.200}") from None
    if images is None or not count:
        raise FileAccessError(f"image {path.name!r:.80} has no frames")
    return (images if count == frames else images[:count].clone()), torch.stack(masks)


# ----------------------------------------------------------------------------- latents
_SAFETENSORS_DTYPES = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.int64: "I64",
    torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8", torch.bool: "BOOL",
}
_CHUNK = 16 * 2**20


def _latent_tensors(samples: torch.Tensor) -> dict[str, torch.Tensor]:
    return {"latent_tensor": samples.detach(), "latent_format_version_0": torch.tensor([])}


def latent_bytes(samples: torch.Tensor, metadata: Mapping[str, str] | None = None) -> bytes:
    """ComfyUI's ``.latent`` file: safetensors with ``latent_tensor`` and ``latent_format_version_0``."""
    from safetensors.torch import save

    tensors = {name: t.to("cpu").contiguous() for name, t in _latent_tensors(samples).items()}
    return save(tensors, metadata=dict(metadata) if metadata else None)


def write_safetensors(fh: IO[bytes], tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None,
                      chunk: int = _CHUNK) -> None:
    """Write ``tensors`` in the safetensors format, ``chunk`` bytes at a time (no copy of the whole file).

    The layout is safetensors' own: an 8-byte little-endian header size, the JSON header
    (``__metadata__`` first, then each tensor's ``dtype``, ``shape`` and ``data_offsets``) padded with
    spaces to a multiple of 8, then the raw little-endian tensor bytes in safetensors' order
    (larger element size first, then by name). ``safetensors.safe_open`` reads it back with the
    same tensors and metadata; with at most one metadata key the bytes equal ``safetensors.torch.save``'s.

    Args:
        fh: a binary file. tensors: ``{name: tensor}`` of the dtypes safetensors stores (any device).
        metadata: ``{str: str}`` or None.

    Raises:
        ValueError: a dtype safetensors has no name for, or a big-endian machine.
    """
    bad = [f"{name}: {t.dtype}" for name, t in tensors.items() if t.dtype not in _SAFETENSORS_DTYPES]
    if bad or sys.byteorder != "little":
        raise ValueError(f"write_safetensors: cannot stream {', '.join(bad) or 'on a big-endian machine'}")
    order = sorted(tensors, key=lambda name: (-tensors[name].element_size(), name))
    header: dict[str, Any] = {"__metadata__": dict(metadata)} if metadata else {}
    offset = 0
    for name in order:
        t = tensors[name]
        size = t.numel() * t.element_size()
        header[name] = {"dtype": _SAFETENSORS_DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    text += b" " * (-len(text) % 8)
    fh.write(struct.pack("<Q", len(text)) + text)
    for name in order:
        flat = tensors[name].detach().contiguous().reshape(-1).view(torch.uint8)
        for start in range(0, flat.numel(), chunk):
            fh.write(flat[start:start + chunk].to("cpu").numpy().data)


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
        raise FileAccessError(f"cannot read latent file {path.name!r:.80}: {str(err):.200}") from None
    if "latent_tensor" not in tensors:
        raise FileAccessError(f"latent file {path.name!r:.80} has no 'latent_tensor' (keys: {sorted(tensors)[:8]!r:.200})")
    multiplier = 1.0 if "latent_format_version_0" in tensors else 1.0 / 0.18215
    return {"samples": tensors["latent_tensor"].float() * multiplier}


def save_images(images: torch.Tensor, filename_prefix: str, prompt: Mapping[str, Any] | None = None,
                extra_pnginfo: Mapping[str, Any] | None = None, temp: bool = False) -> list[dict[str, str]]:
    """ComfyUI's SaveImage/PreviewImage: one PNG per batch item with metadata; returns ``ui`` entries.

    Every image is converted (and checked) before the first file is written; each file is a
    progress step (an interrupt point) and takes its counter with :func:`save_output`.

    Args:
        images: ``[B, H, W, 3]`` float in [0, 1]. filename_prefix: ComfyUI's prefix (subfolders allowed).
    """
    if images.ndim != 4:
        raise ValueError(f"save_images: images must be [B, H, W, 3], got shape {tuple(images.shape)}")
    arrays = [image_to_uint8(image) for image in images]
    results = []
    for index, array in enumerate(arrays):
        prefix = filename_prefix.replace("%batch_num%", str(index))
        writer = _png_writer(array, prompt, extra_pnginfo, compress_level=1 if temp else 4)
        target = save_output(prefix, "png", writer, width=array.shape[1], height=array.shape[0], temp=temp)
        results.append(target.ui())
        progress.report(index + 1, len(arrays))
    return results


def save_latent(samples: torch.Tensor, filename_prefix: str, prompt: Mapping[str, Any] | None = None,
                extra_pnginfo: Mapping[str, Any] | None = None) -> dict[str, str]:
    """ComfyUI's SaveLatent: a ``.latent`` file with ``prompt``/``workflow`` metadata; returns its ``ui`` entry.

    The file is written streaming (:func:`write_safetensors`), so saving needs no second copy of
    the latent in memory.
    """
    metadata = {"prompt": json.dumps(prompt) if prompt is not None else ""}
    metadata.update({key: json.dumps(value) for key, value in (extra_pnginfo or {}).items()})
    tensors = _latent_tensors(samples)
    if any(t.dtype not in _SAFETENSORS_DTYPES for t in tensors.values()):
        payload: bytes | Callable[[IO[bytes]], None] = latent_bytes(samples, metadata)
    else:
        payload = lambda fh: write_safetensors(fh, tensors, metadata)  # noqa: E731
    return save_output(filename_prefix, "latent", payload).ui()
