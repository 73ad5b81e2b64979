"""PNG text chunks (tEXt, zTXt, iTXt): how ComfyUI stores ``prompt`` and ``workflow`` in a PNG.

Reading is done here, on the bytes, so that a PNG workflow opens without Pillow and a hostile
file cannot make it inflate more than :data:`MAX_TEXT_BYTES` in all: one budget covers every text
chunk of the file, and compressed chunks are inflated streaming, never past what is left of it.
Writing goes through Pillow in :func:`latent_ops.media.files.save_png`.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Collection

from ..errors import FileAccessError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_TEXT_BYTES = 64 * 1024 * 1024
"""Bytes of text (after inflating) all text chunks of one PNG may hold together."""


def read_png_text(data: bytes, keys: Collection[str] | None = None, budget: int = MAX_TEXT_BYTES) -> dict[str, str]:
    """Text chunks (tEXt, zTXt, iTXt) of a PNG, as ``{keyword: text}`` (a repeated keyword: the last).

    Args:
        data: the PNG file's bytes.
        keys: read only these keywords (others are skipped without inflating); None = all.
        budget: bytes of text all chunks read may hold together, after inflating.

    Raises:
        FileAccessError: if ``data`` is not a well-formed PNG, or its text exceeds ``budget``.
    """
    if not data.startswith(PNG_SIGNATURE):
        raise FileAccessError("not a PNG file")
    out: dict[str, str] = {}
    left = budget
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
        name = key.decode("latin-1")
        if keys is not None and name not in keys:
            continue
        try:
            if kind == b"tEXt":
                raw = _take(rest, left)
                text = raw.decode("latin-1")
            elif kind == b"zTXt":
                raw = _inflate(rest[1:], left)
                text = raw.decode("latin-1")
            else:
                compressed, rest = rest[0], rest[2:]
                _lang, _translated, payload = rest.split(b"\0", 2)
                raw = _inflate(payload, left) if compressed else _take(payload, left)
                text = raw.decode("utf-8")
        except (ValueError, IndexError, zlib.error) as err:
            raise FileAccessError(f"PNG text chunk {key[:40]!r} is corrupt: {err}") from None
        except OverflowError:
            raise FileAccessError(f"PNG text chunks hold more than {budget} bytes of text (at chunk {key[:40]!r}); "
                                  "refusing to read them") from None
        left -= len(raw)
        out[name] = text
    return out


def _take(payload: bytes, left: int) -> bytes:
    if len(payload) > left:
        raise OverflowError
    return payload


def _inflate(payload: bytes, left: int) -> bytes:
    inflater = zlib.decompressobj()
    text = inflater.decompress(payload, left + 1)
    if len(text) > left:
        raise OverflowError
    return text
