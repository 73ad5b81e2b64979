"""Confined file access for workflow nodes: input/output folders, safe names, atomic writes.

Nodes that read or write files (LoadImage, SaveImage, SaveLatent, ...) go through this module:
names are relative to the configured input or output folder and a name that escapes it (``..``,
an absolute path, a symlink pointing out) is refused. Output files are written to a temporary
file and linked into place, so no partial file is ever left and an existing file is never
overwritten. The folders live in a context variable set with :func:`using`.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import os
import re
import struct
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

import numpy as np
import torch

from ..errors import FileAccessError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
_MAX_TEXT = 64 * 1024 * 1024


@dataclass(frozen=True)
class Folders:
    """Where nodes read inputs and write outputs. ``temp_dir`` None = a folder in the system temp."""

    input_dir: Path
    output_dir: Path
    temp_dir: Path | None = None


_folders: contextvars.ContextVar[Folders | None] = contextvars.ContextVar("latent_ops_folders", default=None)


def current() -> Folders:
    """The active folders (defaults: ``./input`` and ``./output`` of the working directory)."""
    folders = _folders.get()
    return folders if folders is not None else Folders(Path("input").absolute(), Path("output").absolute())


@contextlib.contextmanager
def using(input_dir: str | Path | None = None, output_dir: str | Path | None = None,
          temp_dir: str | Path | None = None) -> Iterator[Folders]:
    """Set the input/output/temp folders for the ``with`` block (unset ones keep their value)."""
    base = current()
    folders = Folders(
        Path(input_dir).absolute() if input_dir is not None else base.input_dir,
        Path(output_dir).absolute() if output_dir is not None else base.output_dir,
        Path(temp_dir).absolute() if temp_dir is not None else base.temp_dir,
    )
    token = _folders.set(folders)
    try:
        yield folders
    finally:
        _folders.reset(token)


def temp_dir() -> Path:
    """The temp folder for previews."""
    folder = current().temp_dir
    return folder if folder is not None else Path(tempfile.gettempdir()) / "latent_ops_temp"


def safe_name(name: str, what: str = "file name") -> PurePosixPath:
    """Check that ``name`` is a relative path that stays inside its folder.

    Raises:
        FileAccessError: empty, absolute, containing ``..`` or NUL, or not a string.
    """
    if not isinstance(name, str) or not name.strip():
        raise FileAccessError(f"{what} must be a non-empty string, got {name!r:.80}")
    if "\0" in name:
        raise FileAccessError(f"{what} {name!r:.80} contains a NUL character")
    posix = name.replace("\\", "/")
    rel = PurePosixPath(posix)
    if rel.is_absolute() or re.match(r"^[A-Za-z]:", posix):
        raise FileAccessError(f"{what} {name!r:.80} is an absolute path; give a name relative to the folder")
    if ".." in rel.parts:
        raise FileAccessError(f"{what} {name!r:.80} contains '..'; names must stay inside the folder")
    return rel


def _inside(path: Path, root: Path, name: str, what: str) -> Path:
    real, real_root = path.resolve(), root.resolve()
    if real != real_root and real_root not in real.parents:
        raise FileAccessError(f"{what} {name!r:.80} resolves to {real}, outside {real_root} (a symlink pointing out?)")
    return real


def resolve_input(name: str) -> Path:
    """The real path of input file ``name`` inside the input folder.

    Raises:
        FileAccessError: if the name escapes the folder or the file does not exist.
    """
    root = current().input_dir
    real = _inside(root / safe_name(name, "input name"), root, name, "input name")
    if not real.is_file():
        raise FileAccessError(f"input file {name!r:.80} not found in the input folder {root}")
    return real


def list_inputs(suffixes: frozenset[str] | None = None) -> list[str]:
    """Sorted names of the files directly in the input folder (optionally by suffix)."""
    root = current().input_dir
    try:
        entries = sorted(p for p in root.iterdir() if p.is_file())
    except OSError:
        return []
    return [p.name for p in entries if suffixes is None or p.suffix.lower() in suffixes]


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file (LoadImage's ``IS_CHANGED``)."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class OutputFile:
    """A reserved output name: ``path`` plus ComfyUI's ``{"filename", "subfolder", "type"}``."""

    path: Path
    filename: str
    subfolder: str
    type: str

    def ui(self) -> dict[str, str]:
        """The entry ComfyUI puts in a node's ``ui`` lists."""
        return {"filename": self.filename, "subfolder": self.subfolder, "type": self.type}


def _expand(prefix: str, width: int | None, height: int | None) -> str:
    now = time.localtime()
    table = {"%year%": f"{now.tm_year}", "%month%": f"{now.tm_mon:02}", "%day%": f"{now.tm_mday:02}",
             "%hour%": f"{now.tm_hour:02}", "%minute%": f"{now.tm_min:02}", "%second%": f"{now.tm_sec:02}"}
    if width is not None and height is not None:
        table.update({"%width%": str(width), "%height%": str(height)})
    for key, value in table.items():
        prefix = prefix.replace(key, value)
    return prefix


def next_counter(folder: Path, filename: str) -> int:
    """ComfyUI's counter: 1 + the largest ``N`` of files named ``{filename}_{N}...`` in ``folder``."""
    best = 0
    try:
        names = os.listdir(folder)
    except OSError:
        return 1
    for name in names:
        if name.startswith(filename + "_"):
            digits = name[len(filename) + 1:].split("_")[0]
            if digits.isdigit():
                best = max(best, int(digits))
    return best + 1


def output_path(prefix: str, ext: str, *, width: int | None = None, height: int | None = None,
                temp: bool = False) -> OutputFile:
    """The next free ``{prefix}_{counter:05}_.{ext}`` in the output (or temp) folder.

    ``prefix`` may contain subfolders (``"latents/run"``) and ``%width%``/``%height%``/date
    fields, as ComfyUI's ``filename_prefix``. The folder is created.

    Raises:
        FileAccessError: if the prefix escapes the folder.
    """
    root = temp_dir() if temp else current().output_dir
    expanded = _expand(prefix, width, height).replace("\\", "/")
    rel = safe_name(expanded, "filename_prefix")
    # "sub/" means files named "_00001_..." inside "sub", as in ComfyUI
    folder_rel, name = (rel, "") if expanded.endswith("/") else (rel.parent, rel.name)
    folder = root / folder_rel
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise FileAccessError(f"cannot create output folder {folder}: {err.strerror or err}") from None
    real = _inside(folder, root, prefix, "filename_prefix")
    counter = next_counter(real, name)
    while (real / f"{name}_{counter:05}_.{ext}").exists():
        counter += 1
    subfolder = "" if str(folder_rel) == "." else str(folder_rel)
    filename = f"{name}_{counter:05}_.{ext}"
    return OutputFile(real / filename, filename, subfolder, "temp" if temp else "output")


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


def read_png_text(data: bytes) -> dict[str, str]:
    """Text chunks (tEXt, zTXt, iTXt) of a PNG, as ``{keyword: text}``.

    Raises:
        FileAccessError: if ``data`` is not a well-formed PNG.
    """
    if not data.startswith(PNG_SIGNATURE):
        raise FileAccessError("not a PNG file")
    out: dict[str, str] = {}
    pos = len(PNG_SIGNATURE)
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if len(body) != length:
            raise FileAccessError("truncated PNG chunk")
        pos += 12 + length
        if kind == b"IEND":
            break
        if kind not in (b"tEXt", b"zTXt", b"iTXt") or b"\0" not in body:
            continue
        key, rest = body.split(b"\0", 1)
        try:
            if kind == b"tEXt":
                text = rest.decode("latin-1")
            elif kind == b"zTXt":
                text = _inflate(rest[1:]).decode("latin-1")
            else:
                compressed, rest = rest[0], rest[2:]
                _lang, _translated, payload = rest.split(b"\0", 2)
                text = (_inflate(payload) if compressed else payload).decode("utf-8")
        except (ValueError, zlib.error) as err:
            raise FileAccessError(f"PNG text chunk {key[:40]!r} is corrupt: {err}") from None
        out[key.decode("latin-1")] = text
    return out


def _inflate(payload: bytes) -> bytes:
    inflater = zlib.decompressobj()
    text = inflater.decompress(payload, _MAX_TEXT)
    if inflater.unconsumed_tail:
        raise ValueError(f"text larger than {_MAX_TEXT} bytes")
    return text


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
