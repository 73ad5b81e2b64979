"""Where the real-ComfyUI tests find ComfyUI: the vendored 0.3.64 snapshot, unpacked at test time.

The snapshot is GPL-3 software used as a test fixture only: it is unpacked into a cache folder
under the system temp directory, never copied into this repository. ``LATENT_OPS_COMFYUI`` may
point at a ``.tar.gz`` of it or at an unpacked ComfyUI folder; by default the tests look for
``<repo>/../shared/vendor/comfyui-0.3.64.tar.gz``.

Used by ``tests/comfyui/conftest.py`` (in the child pytest process) and by
``tests/test_real_comfyui.py`` (the main suite, which only checks that the snapshot exists).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tarfile
import tempfile
from pathlib import Path

ENV = "LATENT_OPS_COMFYUI"
ROOT = Path(__file__).resolve().parents[2]
DEFAULT = ROOT.parent / "shared" / "vendor" / "comfyui-0.3.64.tar.gz"
STUBS = Path(__file__).resolve().parent / "stubs"


def source() -> Path:
    """The snapshot the tests use: ``$LATENT_OPS_COMFYUI`` or :data:`DEFAULT` (it may not exist)."""
    value = os.environ.get(ENV, "").strip()
    return Path(value).expanduser() if value else DEFAULT


def missing_reason() -> str | None:
    """``None`` when the snapshot exists, else the one-line reason the tests are skipped."""
    src = source()
    if src.exists():
        return None
    if os.environ.get(ENV, "").strip():
        return f"real-ComfyUI tests skipped: ${ENV}={src} does not exist (a ComfyUI folder or its .tar.gz)"
    return f"real-ComfyUI tests skipped: no ComfyUI snapshot at {src} (or set ${ENV} to a ComfyUI folder or .tar.gz)"


def _find_main(folder: Path) -> Path:
    """The ComfyUI folder (the one holding ``main.py`` and ``comfy/``) at or one level below ``folder``."""
    for cand in (folder, *sorted(p for p in folder.iterdir() if p.is_dir())):
        if (cand / "main.py").is_file() and (cand / "comfy").is_dir():
            return cand
    raise FileNotFoundError(f"{folder}: no ComfyUI folder (main.py and comfy/) here or one level below")


def comfyui_dir() -> Path:
    """An unpacked ComfyUI folder: :func:`source` itself, or the tarball unpacked into a cache.

    The cache folder is named after the tarball's SHA-256, unpacked once (atomically, so parallel
    runs do not see a half-written tree) and reused.
    """
    src = source()
    if src.is_dir():
        return _find_main(src)
    digest = hashlib.sha256(src.read_bytes()).hexdigest()[:16]
    cache = Path(tempfile.gettempdir()) / f"latent_ops_comfyui_{digest}"
    if not cache.is_dir():
        staging = Path(tempfile.mkdtemp(prefix=cache.name + ".", dir=cache.parent))
        try:
            with tarfile.open(src) as tar:
                safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
                tar.extractall(staging, **safe)
            os.replace(staging, cache)
        except OSError:
            if not cache.is_dir():  # a parallel run may have won the rename
                raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return _find_main(cache)


def extra_path() -> list[str]:
    """Folders to put on ``sys.path``/``PYTHONPATH`` before ComfyUI: the torchvision stub if needed."""
    spec = importlib.util.find_spec("torchvision")
    real = spec is not None and STUBS not in Path(spec.origin or "").resolve().parents
    return [] if real else [str(STUBS)]
