"""PNG text chunks (tEXt, zTXt, iTXt): how ComfyUI stores ``prompt`` and ``workflow`` in a PNG.

Reading is done here, on the bytes, so that a PNG workflow opens without Pillow and a hostile
file cannot make it inflate more than :data:`_MAX_TEXT` bytes per chunk. Writing goes through
Pillow in :func:`latent_ops.media.files.save_png`.
"""

from __future__ import annotations

import struct
import zlib

from ..errors import FileAccessError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_MAX_TEXT = 64 * 1024 * 1024


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
