"""Reading weight files without trusting them: safetensors header checks, pickles refused.

Reusable for any model (VAE, UNet): :func:`load_state_dict_safely` returns a plain CPU state dict.
Pickled files (``.ckpt``, ``.pt``, ``.pth``, ``.bin``) are refused unless ``allow_pickle=True``,
which loads them with ``torch.load(weights_only=True)`` (no arbitrary code runs) and only on torch
>= 2.6 (older ``weights_only`` can be bypassed). :func:`model_errors` is the loader boundary: every
loader turns what a malformed file makes its parsers raise into a ``ModelLoadError`` naming the file.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import torch
from torch import Tensor

from ..errors import LatentOpsError, ModelLoadError
from ..limits import excerpt

StateDict = dict[str, Tensor]
F = TypeVar("F", bound=Callable)

SAFE_EXTENSIONS = (".safetensors", ".sft")
PICKLE_EXTENSIONS = (".ckpt", ".pt", ".pth", ".bin")
_DTYPE_BYTES = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
    "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1, "U16": 2, "U32": 4, "U64": 8,
}  # fmt: skip
MAX_HEADER_BYTES = 100 * 2**20
PICKLE_TORCH = (2, 6)
"""Oldest torch whose ``torch.load(weights_only=True)`` has no known bypass (CVE-2025-32434 affects
torch < 2.6); pickles are refused on older torch even with ``allow_pickle=True``."""
MALFORMED = (OverflowError, TypeError, RecursionError, AttributeError, ValueError, IndexError, KeyError,
             ZeroDivisionError, RuntimeError, OSError, UnicodeError)
"""What malformed model files make parsers and model constructors raise (a file's own fault)."""


# --------------------------------------------------------------------------- the loader boundary
@contextlib.contextmanager
def model_errors(source: object, error: type[LatentOpsError] = ModelLoadError) -> Iterator[None]:
    """Turn an exception of :data:`MALFORMED` raised inside the block into ``error`` naming ``source``.

    A :class:`~latent_ops.errors.LatentOpsError` passes unchanged; a plain ``ValueError`` whose
    message already names ``source`` only changes class; anything else becomes
    ``"<source>: cannot load (<type>: <message excerpt>)"`` (chained to the original).
    """
    try:
        yield
    except LatentOpsError:
        raise
    except MALFORMED as exc:
        if type(exc) is ValueError and str(source) in str(exc) and "\n" not in str(exc):
            raise error(str(exc)) from exc
        raise error(f"{source}: cannot load ({type(exc).__name__}: {excerpt(str(exc))})") from exc


def model_loader(error: type[LatentOpsError] = ModelLoadError) -> Callable[[F], F]:
    """Decorate a loader whose first argument is the file or folder: its errors go through :func:`model_errors`."""
    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def load(path: object, *args: object, **kwargs: object) -> object:
            with model_errors(path, error):
                return fn(path, *args, **kwargs)
        return load  # type: ignore[return-value]
    return wrap


def check_pickle_torch(name: str, version: str | None = None) -> None:
    """Refuse to unpickle on a torch older than :data:`PICKLE_TORCH` (naming the file and the version).

    Raises:
        ModelLoadError: ``version`` (default ``torch.__version__``) is older than 2.6 or unreadable.
    """
    version = torch.__version__ if version is None else version
    m = re.match(r"(\d+)\.(\d+)", str(version))
    if m is None or (int(m[1]), int(m[2])) < PICKLE_TORCH:
        raise ModelLoadError(
            f"{name}: refusing to read a pickle with torch {version}: torch.load(weights_only=True) can be bypassed "
            f"before torch {PICKLE_TORCH[0]}.{PICKLE_TORCH[1]} (CVE-2025-32434); upgrade torch or convert the file "
            "to .safetensors"
        )


# --------------------------------------------------------------------------- files
@model_loader()
def check_safetensors_header(path: Path) -> dict:
    """Validate a ``.safetensors`` header against the file size without reading tensor data.

    Returns:
        The parsed header (tensor name -> ``{"dtype", "shape", "data_offsets"}``).

    Raises:
        ModelLoadError: truncated file, header length beyond the file, invalid JSON, unknown
            dtype, or tensor offsets/sizes that do not fit (message names the file).
    """
    name = str(path)
    size = path.stat().st_size
    if size < 8:
        raise ModelLoadError(f"{name}: not a safetensors file ({size} bytes, shorter than the 8-byte header size)")
    with open(path, "rb") as fh:
        n = int.from_bytes(fh.read(8), "little")
        if n <= 1 or n > MAX_HEADER_BYTES or 8 + n > size:
            raise ModelLoadError(f"{name}: corrupt or truncated safetensors file (header length {n}, file size {size})")
        raw = fh.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{name}: safetensors header is not valid JSON ({exc})") from None
    if not isinstance(header, dict):
        raise ModelLoadError(f"{name}: safetensors header is not a JSON object")
    data_len = size - 8 - n
    end_max = 0
    for key, info in header.items():
        if key == "__metadata__":
            continue
        try:
            dtype, shape, (start, end) = info["dtype"], info["shape"], info["data_offsets"]
            nbytes = math.prod(int(s) for s in shape) * _DTYPE_BYTES[dtype]
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelLoadError(f"{name}: bad header entry for tensor {key!r} ({exc!r})") from None
        if not (0 <= start <= end) or end - start != nbytes:
            raise ModelLoadError(f"{name}: tensor {key!r} has offsets {start}..{end} for {nbytes} bytes")
        end_max = max(end_max, end)
    if end_max > data_len:
        raise ModelLoadError(
            f"{name}: truncated safetensors file (tensors need {end_max} data bytes, file has {data_len})"
        )
    return header


@model_loader()
def load_state_dict_safely(path: str | Path, allow_pickle: bool = False) -> StateDict:
    """Load a weights file into a CPU state dict without running code from it.

    Args:
        path: ``.safetensors``/``.sft`` (header checked first), or a pickle file
            (``.ckpt``/``.pt``/``.pth``/``.bin``) which needs ``allow_pickle=True``.
        allow_pickle: load pickles with ``torch.load(weights_only=True)`` (torch >= 2.6 only,
            see :data:`PICKLE_TORCH`).

    Returns:
        ``{name: tensor}``; a ``"state_dict"`` wrapper (Lightning checkpoints) is unwrapped and
        non-tensor entries are dropped.

    Raises:
        ModelLoadError: missing, refused, truncated or corrupt files, or files holding no tensors;
            any other error a malformed file causes, with the file named (:func:`model_errors`).
    """
    path = Path(path)
    name = str(path)
    if not path.is_file():
        raise ModelLoadError(f"{name}: no such file")
    suffix = path.suffix.lower()
    if suffix in SAFE_EXTENSIONS:
        check_safetensors_header(path)
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            sd = load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
            raise ModelLoadError(f"{name}: cannot read safetensors file ({exc})") from None
    elif suffix in PICKLE_EXTENSIONS:
        if not allow_pickle:
            raise ModelLoadError(
                f"{name}: refusing to load a pickled {suffix} file (pickles can run arbitrary code). Convert it to "
                ".safetensors, or opt in with allow_pickle=True (node: allow_pickle), which reads it with "
                "torch.load(weights_only=True)"
            )
        check_pickle_torch(name)
        try:
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - pickle errors come in many types; re-raised with the file name
            raise ModelLoadError(f"{name}: cannot load with weights_only=True ({type(exc).__name__}: {exc})") from None
        if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
            obj = obj["state_dict"]
        if not isinstance(obj, dict):
            raise ModelLoadError(f"{name}: pickle holds a {type(obj).__name__}, not a state dict")
        sd = {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, Tensor)}
    else:
        raise ModelLoadError(f"{name}: unsupported extension {suffix!r}; expected .safetensors")
    if not sd:
        raise ModelLoadError(f"{name}: file holds no tensors")
    return sd
