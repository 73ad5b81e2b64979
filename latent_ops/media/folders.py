"""Confined folders for workflow nodes: input/output/temp folders, safe names, output names.

Names are relative to the configured input or output folder; a name that escapes it (``..``, an
absolute path, a symlink pointing out) is refused with :class:`FileAccessError`; for output
folders every existing component is resolved and checked before any folder is created. The folders
live in a context variable set with :func:`using`. Output names follow ComfyUI's
``{prefix}_{counter:05}_.{ext}`` counter, and a prefix may use ComfyUI's ``%...%`` fields
(:func:`text_replacements`). Error messages quote names cut to a few dozen characters.
"""

from __future__ import annotations

import atexit
import contextlib
import contextvars
import hashlib
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..errors import FileAccessError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
MAX_PREFIX_CHARS = 1024
"""Characters of a ``filename_prefix`` (after its ``%...%`` fields are filled in)."""
MAX_NAME_BYTES = 200
"""UTF-8 bytes of one folder or file name in a prefix (file systems allow 255; the counter,
extension and temporary-file prefix need the rest)."""


@dataclass(frozen=True)
class Folders:
    """Where nodes read inputs and write outputs. ``temp_dir`` None = a private folder of this
    process in the system temp (see :func:`temp_dir`)."""

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


_private: dict[int, Path] = {}


def temp_dir() -> Path:
    """The temp folder for previews: the configured one, else a private folder of this process.

    The private folder is made on first use with :func:`tempfile.mkdtemp` (mode 0700, a fresh
    random name, so nothing planted in the shared temp folder can redirect it) and removed with
    its previews when the process exits, as ComfyUI empties its temp folder.
    """
    folder = current().temp_dir
    if folder is not None:
        return folder
    pid = os.getpid()
    if pid not in _private or not _private[pid].is_dir():
        _private[pid] = Path(tempfile.mkdtemp(prefix="latent_ops_temp-"))
        atexit.register(_remove_private, _private[pid], pid)
    return _private[pid]


def _remove_private(path: Path, pid: int) -> None:
    if os.getpid() == pid:  # not in a forked child, which inherits the parent's handlers
        shutil.rmtree(path, ignore_errors=True)


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
        raise FileAccessError(f"{what} {name!r:.80} resolves to {str(real)!r:.120}, outside {real_root} "
                              "(a symlink pointing out?)")
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


_DATE_FIELDS = re.compile(r"dd?|MM?|hh?|mm?|ss?|yyy?y?")
_UNSAFE = re.compile(r'[/?<>\\:*|"\x00-\x1f\x7f]')


def format_date(pattern: str, now: time.struct_time) -> str:
    """The graph editor's ``formatDate``: ``yyyy``, ``yy``, ``MM``/``M``, ``dd``/``d``, ``hh``/``h``
    (24-hour), ``mm``/``m``, ``ss``/``s`` replaced (doubled letters zero-padded), the rest kept.

    Example: ``format_date("yyyy-MM-dd hh.mm", now)`` -> ``"2024-03-07 09.05"``.
    """
    parts = {"d": now.tm_mday, "M": now.tm_mon, "h": now.tm_hour, "m": now.tm_min, "s": now.tm_sec}

    def field(match: re.Match[str]) -> str:
        text = match[0]
        if text == "yy":
            return str(now.tm_year)[2:]
        if text == "yyyy":
            return str(now.tm_year)
        return str(parts[text[0]]).zfill(len(text)) if text[0] in parts else text

    return _DATE_FIELDS.sub(field, pattern)


def text_replacements(value: str, widget: Callable[[str, str], object] | None = None,
                      now: time.struct_time | None = None) -> str:
    """The editor's ``applyTextReplacements`` for a save node's ``filename_prefix``.

    ``%date:PATTERN%`` becomes :func:`format_date` of the local time; ``%Node.widget%`` becomes
    ``widget("Node", "widget")`` with ``/ ? < > \\ : * | "`` and control characters replaced by
    ``_`` (kept as written when ``widget`` is None or returns None); other fields are kept.
    """
    stamp = time.localtime() if now is None else now

    def field(match: re.Match[str]) -> str:
        split = match[1].split(".")
        if len(split) != 2:
            return format_date(split[0][5:], stamp) if split[0].startswith("date:") else match[0]
        found = widget(split[0], split[1]) if widget is not None else None
        return match[0] if found is None else _UNSAFE.sub("_", str(found))

    return re.sub(r"%([^%]+)%", field, value)


def _expand(prefix: str, width: int | None, height: int | None) -> str:
    now = time.localtime()
    table = {"%year%": f"{now.tm_year}", "%month%": f"{now.tm_mon:02}", "%day%": f"{now.tm_mday:02}",
             "%hour%": f"{now.tm_hour:02}", "%minute%": f"{now.tm_min:02}", "%second%": f"{now.tm_sec:02}"}
    if width is not None and height is not None:
        table.update({"%width%": str(width), "%height%": str(height)})
    for key, value in table.items():
        prefix = prefix.replace(key, value)
    return text_replacements(prefix, now=now) if "%date:" in prefix else prefix


COUNTED = re.compile(r"^(?P<stem>.*)_(?P<counter>\d+)_\.(?P<ext>[A-Za-z0-9]+)$")
"""A counted output name, :func:`counted_name` (ComfyUI's), parsed back: stem, counter, extension."""


def counted_name(name: str, counter: int, ext: str) -> str:
    """ComfyUI's output file name ``{name}_{counter:05}_.{ext}``."""
    return f"{name}_{counter:05}_.{ext}"


def next_counter(folder: Path, filename: str) -> int:
    """ComfyUI's counter: 1 + the largest ``N`` of files named ``{filename}_{N}...`` in ``folder``.

    Only ASCII digits count (``_²_`` or ``_٣_`` are not counters).
    """
    best = 0
    try:
        names = os.listdir(folder)
    except OSError:
        return 1
    for name in names:
        if name.startswith(filename + "_"):
            digits = name[len(filename) + 1:].split("_")[0]
            if digits.isascii() and digits.isdigit():
                best = max(best, int(digits))
    return best + 1


def _check_prefix(prefix: str) -> None:
    if len(prefix) > MAX_PREFIX_CHARS:
        raise FileAccessError(f"filename_prefix {prefix!r:.60}... is {len(prefix)} characters long; "
                              f"at most {MAX_PREFIX_CHARS} are allowed")
    for part in prefix.replace("\\", "/").split("/"):
        size = len(part.encode("utf-8", "surrogatepass"))
        if size > MAX_NAME_BYTES:
            raise FileAccessError(f"filename_prefix: the name {part!r:.60}... is {size} bytes long; at most "
                                  f"{MAX_NAME_BYTES} are allowed per folder or file name")


def _confined_mkdir(root: Path, rel: PurePosixPath, prefix: str) -> Path:
    """Create ``root / rel`` one component at a time, resolving each one and refusing any that
    lands outside ``root`` before the next is created; returns the real folder."""
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise FileAccessError(f"cannot create output folder {str(root)!r:.200}: {err.strerror or err}") from None
    real_root = root.resolve()
    folder = real_root
    for part in rel.parts:
        step = folder / part
        if not os.path.lexists(step):
            try:
                step.mkdir()
            except FileExistsError:
                pass  # made meanwhile (another run); checked below like any existing one
            except OSError as err:
                raise FileAccessError(f"cannot create output folder {part!r:.80} for filename_prefix {prefix!r:.80}: "
                                      f"{err.strerror or err}") from None
        folder = _inside(step, real_root, prefix, "filename_prefix")
        if not folder.is_dir():
            raise FileAccessError(f"filename_prefix {prefix!r:.80}: {part!r:.80} exists and is not a folder")
    return folder


def output_folder(prefix: str, *, width: int | None = None, height: int | None = None,
                  temp: bool = False) -> tuple[Path, str, str]:
    """Where a ``filename_prefix`` saves: ``(real folder, name, subfolder)``; the folder is created.

    ``prefix`` may contain subfolders (``"latents/run"``), ``%width%``/``%height%``, ComfyUI's
    date fields (``%year%``, ``%date:yyyy-MM-dd%``, ...). ``"sub/"`` means files named
    ``_00001_...`` inside ``sub``, as in ComfyUI.

    Raises:
        FileAccessError: the prefix escapes the folder (``..``, absolute, through a symlink: checked
            before any folder is created), is too long, or the folder cannot be created.
    """
    safe_name(prefix, "filename_prefix")  # a string, no NUL (checked again once expanded)
    _check_prefix(prefix)
    expanded = _expand(prefix, width, height).replace("\\", "/")
    _check_prefix(expanded)
    rel = safe_name(expanded, "filename_prefix")
    root = temp_dir() if temp else current().output_dir
    folder_rel, name = (rel, "") if expanded.endswith("/") else (rel.parent, rel.name)
    real = _confined_mkdir(root, folder_rel, prefix)
    return real, name, "" if str(folder_rel) == "." else str(folder_rel)


def output_path(prefix: str, ext: str, *, width: int | None = None, height: int | None = None,
                temp: bool = False) -> OutputFile:
    """The next free ``{prefix}_{counter:05}_.{ext}`` in the output (or temp) folder (see
    :func:`output_folder`). The name is only looked up: to write a file under it without a race
    with other processes, use :func:`latent_ops.media.files.save_output`.

    Raises:
        FileAccessError: if the prefix escapes the folder.
    """
    real, name, subfolder = output_folder(prefix, width=width, height=height, temp=temp)
    counter = next_counter(real, name)
    while (real / counted_name(name, counter, ext)).exists():
        counter += 1
    filename = counted_name(name, counter, ext)
    return OutputFile(real / filename, filename, subfolder, "temp" if temp else "output")
