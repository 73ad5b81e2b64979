"""Atomic, race-free output writes: a temporary file in the target folder, linked into place.

No partial file ever carries a final name and an existing file is never overwritten
(:func:`write_atomic`). A counted name (``{prefix}_{counter:05}_.{ext}``) is taken by linking to
the next free counter, so concurrent runs with one prefix never lose a file (:func:`save_output`).
Temporary files that a killed process left behind are removed once stale (:func:`remove_stale_temp`).
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from ..errors import FileAccessError
from .folders import OutputFile, counted_name, next_counter, output_folder

MAX_COUNTER_TRIES = 10_000
"""Counters :func:`save_output` tries before it gives up (each one taken by another process)."""
STALE_TEMP_SECONDS = 15 * 60
"""Age after which a temporary file of :func:`write_atomic` is a leftover (a write keeps its own fresh)."""
_TEMP_NAME = re.compile(r"\.tmp-[a-z0-9_]{8}(\.[^./]{1,32})?")  # ".tmp-" + mkstemp's 8 characters + suffix
_swept: set[tuple[int, str]] = set()


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


def remove_stale_temp(folder: Path, older_than: float = STALE_TEMP_SECONDS) -> list[str]:
    """Delete the temporary files that writes killed midway (SIGKILL, power cut) left in ``folder``.

    Only names :func:`write_atomic` makes (``.tmp-`` + 8 of :func:`tempfile.mkstemp`'s characters
    + a suffix), only plain files, and only those not modified for ``older_than`` seconds (a write
    in progress keeps its file fresh). Errors are ignored (another process may remove them too).

    Returns:
        The names removed.
    """
    removed: list[str] = []
    now = time.time()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        if _TEMP_NAME.fullmatch(entry.name):
            with contextlib.suppress(OSError):
                if entry.is_file(follow_symlinks=False) and now - entry.stat(follow_symlinks=False).st_mtime > older_than:
                    os.unlink(entry.path)
                    removed.append(entry.name)
    return removed


def _write_temp(folder: Path, suffix: str, data: bytes | Callable[[IO[bytes]], None]) -> str:
    """Write ``data`` to a new ``.tmp-*`` file in ``folder`` (flushed to disk, normal permissions)."""
    key = (os.getpid(), str(folder))
    if key not in _swept:  # the first write of this process into a folder clears stale leftovers
        _swept.add(key)
        remove_stale_temp(folder)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            if isinstance(data, (bytes, bytearray, memoryview)):
                fh.write(data)
            else:
                data(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, new_file_mode())  # mkstemp makes it 0600; the user expects a normal file
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return tmp


def _link_new(tmp: str, path: Path) -> bool:
    """Give the written file ``tmp`` the name ``path`` unless that name exists (then False)."""
    try:
        os.link(tmp, path)  # fails if path exists: never overwrites
        return True
    except FileExistsError:
        return False
    except OSError:  # no hard links on this file system: reserve the name, then replace it
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return False
        os.replace(tmp, path)
        return True


def write_atomic(path: Path, data: bytes | Callable[[IO[bytes]], None], overwrite: bool = False) -> Path:
    """Write ``data`` (bytes, or a function writing to a binary file) to ``path`` atomically.

    The content goes to a temporary file in the same folder first; on any error that file is
    removed and ``path`` is untouched.

    Raises:
        FileExistsError: if ``path`` exists and ``overwrite`` is False.
    """
    path = Path(path)
    tmp = _write_temp(path.parent, path.suffix, data)
    try:
        if overwrite:
            os.replace(tmp, path)
        elif not _link_new(tmp, path):
            raise FileExistsError(f"{path} already exists; not overwriting it")
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return path


def save_output(prefix: str, ext: str, data: bytes | Callable[[IO[bytes]], None], *, width: int | None = None,
                height: int | None = None, temp: bool = False) -> OutputFile:
    """Write ``data`` as the next free ``{prefix}_{counter:05}_.{ext}`` (ComfyUI's name), race-free.

    The content is written once to a temporary file in the folder, then linked to the first free
    counter; if another process takes that name first the link fails (nothing is overwritten) and
    the next counter is tried. So concurrent runs with one prefix all keep every file, complete and
    under distinct names. The prefix is read as :func:`output_folder` reads it.

    Returns:
        The name taken, with its ``ui`` entry.

    Raises:
        FileAccessError: the prefix escapes the folder, or :data:`MAX_COUNTER_TRIES` names were taken.
        OSError: the file could not be written (nothing partial is left).
    """
    folder, name, subfolder = output_folder(prefix, width=width, height=height, temp=temp)
    tmp = _write_temp(folder, "." + ext, data)
    try:
        counter = next_counter(folder, name)
        for _ in range(MAX_COUNTER_TRIES):
            filename = counted_name(name, counter, ext)
            if _link_new(tmp, folder / filename):
                return OutputFile(folder / filename, filename, subfolder, "temp" if temp else "output")
            counter = max(counter + 1, next_counter(folder, name))
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    raise FileAccessError(f"no free output name for filename_prefix {prefix!r:.80} after {MAX_COUNTER_TRIES} tries")
