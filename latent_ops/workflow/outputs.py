"""The driver's side of a distributed sweep: final file names, atomic writes and the manifest.

Workers return the files a prompt wrote (names from their own private folders). The driver
writes them prompt by prompt, in sweep order, through the same counter rule as a local run
(:func:`latent_ops.media.files.save_output`), so both runs give every file the same name.

The manifest (``.latent-ops-sweep.jsonl`` in the output folder) has one line per finished prompt:
its index, a key of its prompt and workflow, and the files written. A line is appended with a
single write and flushed to disk after that prompt's files are in place, so it is either whole or
(after a power cut) a torn last line that is ignored. ``--resume`` skips the prompts whose line
matches and whose output files all still exist.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import FileAccessError
from ..media import files
from ..media.folders import COUNTED
from .sweep_worker import ProducedFile

MANIFEST = ".latent-ops-sweep.jsonl"


def prompt_key(prompt: Mapping[str, Any], ui: Mapping[str, Any] | None) -> str:
    """A short hex digest of a prompt and its workflow (what a file's metadata is made from).

    Keys are not sorted (a workflow saved again in another order only makes prompts run again).
    """
    text = json.dumps([prompt, ui], separators=(",", ":"), default=repr)
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def _place_named(item: ProducedFile) -> files.OutputFile:
    """A name without a counter keeps its name (folders confined before they are made)."""
    files.safe_name(item.name, "output name")
    folder, _, base = item.name.rpartition("/")
    temp = item.type == "temp"
    if folder:
        real, _, subfolder = files.output_folder(folder + "/", temp=temp)
    else:
        real, subfolder = files.temp_dir() if temp else files.current().output_dir, ""
        real.mkdir(parents=True, exist_ok=True)
    files.write_atomic(real / base, item.data)
    return files.OutputFile(real / base, base, subfolder, item.type)


def place(produced: Sequence[ProducedFile]) -> list[files.OutputFile]:
    """Write a prompt's files under their final names, in order (each file atomically).

    A ComfyUI-style name ``{stem}_{counter}_.{ext}`` gets the next free counter of its folder, as
    it would in a local run (:func:`latent_ops.media.files.save_output`); any other name is kept
    and never overwrites a file.

    Raises:
        FileAccessError: a name escapes the folder, or no free name was found.
        OSError: the file could not be written (nothing partial is left).
    """
    placed = []
    for item in produced:
        folder, _, base = item.name.rpartition("/")
        match = COUNTED.match(base)
        if match is None or not (folder or match["stem"]):
            placed.append(_place_named(item))
        else:  # the prefix: "folder/stem", "stem", or "folder/" for an empty stem
            prefix = f"{folder}/{match['stem']}" if folder else match["stem"]
            placed.append(files.save_output(prefix, match["ext"], item.data, temp=item.type == "temp"))
    return placed


def relative(target: files.OutputFile) -> str:
    """``subfolder/filename`` of a placed file."""
    return f"{target.subfolder}/{target.filename}" if target.subfolder else target.filename


class Manifest:
    """The record of finished prompts in an output folder (see the module docstring)."""

    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / MANIFEST

    def read(self) -> dict[int, dict[str, Any]]:
        """``{index: record}`` of every whole line (the latest line of an index wins)."""
        records: dict[int, dict[str, Any]] = {}
        try:
            text = self.path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return records
        except OSError as err:
            raise FileAccessError(f"cannot read the sweep manifest {self.path}: {err.strerror or err}") from None
        for line in text.splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a torn last line
            if isinstance(record, dict) and isinstance(record.get("index"), int) and isinstance(record.get("files"), list):
                records[record["index"]] = record
        return records

    def finished(self, records: Mapping[int, Mapping[str, Any]], index: int, key: str) -> bool:
        """Whether prompt ``index`` with ``key`` was written and its output files still exist."""
        record = records.get(index)
        if record is None or record.get("key") != key:
            return False
        root = self.path.parent
        return all((root / f["path"]).is_file() for f in record["files"]
                   if isinstance(f, dict) and f.get("type") == "output" and isinstance(f.get("path"), str))

    def append(self, index: int, key: str, written: Sequence[files.OutputFile]) -> None:
        """Record that prompt ``index`` wrote ``written`` (one line, flushed to disk)."""
        entries = [{"type": t.type, "path": relative(t) if t.type == "output" else str(t.path)} for t in written]
        line = json.dumps({"index": index, "key": key, "files": entries}, separators=(",", ":")) + "\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, files.new_file_mode())
        try:
            os.write(fd, line.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
