"""Headless model lookup in ComfyUI's folder layout (``<models root>/<kind>/...``).

Sources, in order of precedence:

1. the configuration installed by :func:`using` (``--models-dir`` and ``--extra-model-paths`` of
   the CLI): ``models_dir/<kind>`` and the folders an ``extra_model_paths.yaml`` lists for ``kind``;
2. the environment variable ``LATENT_OPS_MODELS``: one or more models roots separated by
   ``os.pathsep``, each used as ``root/<kind>``.

Only existing directories are returned. Names are always relative to one of those folders and
:func:`resolve` refuses anything that would leave them (``..``, absolute paths, symlinks that
point outside). Inside ComfyUI the node adapter uses ``folder_paths`` instead of this module.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelPathError

ENV_VAR = "LATENT_OPS_MODELS"
KINDS: tuple[str, ...] = ("vae", "checkpoints", "vae_approx", "diffusers")


@dataclass(frozen=True)
class _Config:
    models_dir: Path | None
    extra: dict[str, tuple[Path, ...]]


_config: contextvars.ContextVar[_Config | None] = contextvars.ContextVar("latent_ops_model_paths", default=None)


def _strip_comment(line: str) -> str:
    quote = ""
    for i, ch in enumerate(line):
        if ch in "\"'":
            quote = "" if quote == ch else (quote or ch)
        elif ch == "#" and not quote and (i == 0 or line[i - 1].isspace()):
            return line[:i]
    return line


def _unquote(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1]
    return text


def parse_extra_model_paths(text: str) -> dict[str, dict[str, str]]:
    """Parse the subset of YAML that ComfyUI's ``extra_model_paths.yaml`` uses.

    Supported: top-level section names (``comfyui:``), indented ``key: value`` pairs, ``key: |``
    literal blocks whose lines are paths, ``#`` comments and quoted scalars. Anything else (lists,
    flow mappings, deeper nesting) raises, so a file is never half understood.

    Args:
        text: file contents.

    Returns:
        ``{section: {key: value}}``; a block value keeps its lines joined with ``"\\n"``.

    Raises:
        ValueError: naming the line number of unsupported syntax.
    """
    sections: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    block_key: str | None = None
    key_indent: int | None = None
    for lineno, raw in enumerate(text.splitlines(), start=1):
        raw_indent = len(raw) - len(raw.lstrip(" "))
        if block_key is not None and current is not None and key_indent is not None and raw.strip():
            if raw_indent > key_indent:  # literal block content: YAML keeps '#' text here
                current[block_key] = (current[block_key] + "\n" + raw.strip()).strip("\n")
                continue
        line = _strip_comment(raw).rstrip()
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip(" "))
        if "\t" in line[: indent + 1]:
            raise ValueError(f"extra_model_paths line {lineno}: tabs are not allowed for indentation")
        body = line.strip()
        block_key = None
        if indent == 0:
            if not body.endswith(":") or body.startswith("-"):
                raise ValueError(f"extra_model_paths line {lineno}: expected 'section:' but got {body!r}")
            current = sections.setdefault(_unquote(body[:-1]), {})
            key_indent = None
            continue
        if current is None:
            raise ValueError(f"extra_model_paths line {lineno}: indented line before any section")
        if key_indent is None:
            key_indent = indent
        if indent != key_indent or ":" not in body or body.startswith(("-", "{", "[")):
            raise ValueError(f"extra_model_paths line {lineno}: unsupported syntax {body!r}")
        key, _, value = body.partition(":")
        value = value.strip()
        if value in ("|", "|-", "|+", ">", ">-"):
            current[_unquote(key)] = ""
            block_key = _unquote(key)
        else:
            current[_unquote(key)] = _unquote(value)
    return sections


def read_extra_model_paths(path: Path) -> dict[str, tuple[Path, ...]]:
    """Folders per model kind listed by a ComfyUI ``extra_model_paths.yaml``.

    Relative paths are joined to the section's ``base_path``, which is itself relative to the
    YAML file's folder (ComfyUI's rule); ``~`` is expanded. ``base_path`` and ``is_default`` are
    not kinds.

    Raises:
        ValueError: if the file cannot be read or parsed (message names the file).
    """
    path = Path(path)
    try:
        sections = parse_extra_model_paths(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"cannot read extra model paths file {str(path)!r}: {exc}") from exc
    out: dict[str, list[Path]] = {}
    for entries in sections.values():
        base = Path(os.path.expanduser(entries.get("base_path", "") or "."))
        if not base.is_absolute():
            base = path.parent / base
        for kind, value in entries.items():
            if kind in ("base_path", "is_default"):
                continue
            for item in value.split("\n"):
                item = item.strip()
                if item:
                    p = Path(os.path.expanduser(item))
                    out.setdefault(kind, []).append(p if p.is_absolute() else base / p)
    return {k: tuple(v) for k, v in out.items()}


@contextlib.contextmanager
def using(models_dir: Path | None = None, extra_paths_yaml: Path | None = None) -> Iterator[None]:
    """Use ``models_dir`` and/or an ``extra_model_paths.yaml`` for lookups inside the block.

    Raises:
        ValueError: if the YAML file cannot be parsed.
    """
    extra = read_extra_model_paths(Path(extra_paths_yaml)) if extra_paths_yaml is not None else {}
    token = _config.set(_Config(Path(models_dir) if models_dir is not None else None, extra))
    try:
        yield
    finally:
        _config.reset(token)


def folders(kind: str) -> list[Path]:
    """Existing folders that hold models of ``kind`` (``"vae"``, ``"checkpoints"``, ...), in order."""
    candidates: list[Path] = []
    cfg = _config.get()
    if cfg is not None:
        if cfg.models_dir is not None:
            candidates.append(cfg.models_dir / kind)
        candidates.extend(cfg.extra.get(kind, ()))
    for root in os.environ.get(ENV_VAR, "").split(os.pathsep):
        if root.strip():
            candidates.append(Path(os.path.expanduser(root.strip())) / kind)
    seen: set[Path] = set()
    out: list[Path] = []
    for c in candidates:
        key = c.resolve()
        if c.is_dir() and key not in seen:
            seen.add(key)
            out.append(c)
    return out


def _walk(folder: Path) -> Iterator[tuple[Path, Path]]:
    root = folder.resolve()
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        dirnames.sort()
        for name in sorted(filenames) + list(dirnames):
            p = Path(dirpath) / name
            if p.resolve().is_relative_to(root):
                yield p, p.relative_to(folder)


def list_models(kind: str, extensions: Iterable[str], folders_: list[Path] | None = None) -> list[str]:
    """Relative (posix) names of files ending in one of ``extensions`` under the ``kind`` folders.

    Args:
        kind: model kind (used when ``folders_`` is None).
        extensions: e.g. ``(".safetensors",)``; matched case-insensitively.
        folders_: explicit folders (ComfyUI's); defaults to :func:`folders`.

    Returns:
        Sorted unique names; a name found in several folders is listed once (the first wins).
    """
    exts = tuple(e.lower() for e in extensions)
    names: set[str] = set()
    for folder in folders(kind) if folders_ is None else folders_:
        for path, rel in _walk(folder):
            if path.is_file() and path.name.lower().endswith(exts):
                names.add(rel.as_posix())
    return sorted(names)


def list_model_dirs(kind: str, marker: str = "config.json", folders_: list[Path] | None = None) -> list[str]:
    """Relative names of sub-folders that contain ``marker`` (diffusers model folders)."""
    names: set[str] = set()
    for folder in folders(kind) if folders_ is None else folders_:
        for path, rel in _walk(folder):
            if path.is_dir() and (path / marker).is_file():
                names.add(rel.as_posix())
    return sorted(names)


def resolve_in(folders_: list[Path], name: str) -> Path:
    """Find ``name`` inside one of ``folders_``, refusing anything that escapes them.

    Raises:
        ModelPathError: for absolute names, ``..`` components, symlinks leading outside, or a name
            found in none of the folders (the message lists the folders searched).
    """
    rel = Path(name)
    if not name or rel.is_absolute() or name.startswith(("/", "\\")) or ".." in rel.parts or ".." in name.split("\\"):
        raise ModelPathError(f"model name {name!r} must be a relative path inside the model folders")
    for folder in folders_:
        root = folder.resolve()
        candidate = folder / rel
        if not candidate.exists():
            continue
        real = candidate.resolve()
        if not real.is_relative_to(root):
            raise ModelPathError(f"model name {name!r} resolves to {str(real)!r}, outside {str(root)!r}")
        return real
    searched = ", ".join(repr(str(f)) for f in folders_) or "(no folders configured)"
    raise ModelPathError(f"model {name!r} not found; searched {searched}")


def resolve(kind: str, name: str) -> Path:
    """Resolve a model name of ``kind`` against :func:`folders` (see :func:`resolve_in`)."""
    return resolve_in(folders(kind), name)
