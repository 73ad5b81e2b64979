"""Confined folders for workflow nodes: input/output/temp folders, safe names, output names.

Names are relative to the configured input or output folder; a name that escapes it (``..``, an
absolute path, a symlink pointing out) is refused with :class:`FileAccessError`. The folders live
in a context variable set with :func:`using`. Output names follow ComfyUI's
``{prefix}_{counter:05}_.{ext}`` counter.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import os
import re
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..errors import FileAccessError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"})


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


def input_fingerprint(name: str) -> str:
    """What LoadImage/LoadLatent's ``IS_CHANGED`` returns: the SHA-256 of input file ``name``.

    Returns:
        The hex digest, or ``"missing:<name>"`` when the file cannot be resolved or read (so the
        node re-runs, and reports the problem, once it appears).
    """
    try:
        return sha256(resolve_input(name))
    except (ValueError, OSError):
        return f"missing:{name}"


def input_problem(name: str, what: str) -> bool | str:
    """What LoadImage/LoadLatent's ``VALIDATE_INPUTS`` returns: ``True``, or why ``name`` is refused.

    Args:
        name: the input file name. what: its kind for the message (``"image"``, ``"latent"``).

    Returns:
        ``True`` when the name resolves to a file in the input folder, else
        ``"Invalid <what> file: <reason>"`` (ComfyUI's wording).
    """
    try:
        resolve_input(name)
    except ValueError as err:
        return f"Invalid {what} file: {err}"
    return True


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
