"""IMAGE tensors and Pillow: conversion, a labelled contact-sheet grid, animated GIFs.

IMAGE follows ComfyUI: float ``[B, H, W, 3]`` in [0, 1]. Conversion to 8 bits truncates like
ComfyUI's ``SaveImage`` (``np.clip(255. * x, 0, 255).astype(np.uint8)``). Labels are drawn with
Pillow's bundled default font; characters it lacks (the Greek letters of traversal labels) are
spelled out (``σ`` -> ``sd``, ``μ`` -> ``mu``) rather than drawn as empty boxes.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

from .. import progress
from ..limits import MAX_GRID_PIXELS, MAX_LABEL_CHARS, MAX_TILES, check_at_most, excerpt
from .files import write_atomic

log = logging.getLogger(__name__)

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont
_SPELLED = {"σ": "sd", "μ": "mu", "−": "-", "×": "x", "Σ": "S"}


def _check_image(image: Tensor, name: str, batched: bool) -> Tensor:
    ok = isinstance(image, Tensor) and image.ndim == (4 if batched else 3) and image.shape[-1] == 3
    if not ok or image.shape[0] < 1 or image.shape[-2] < 1 or image.shape[-3] < 1:
        want = "[B, H, W, 3]" if batched else "[H, W, 3] (or [1, H, W, 3])"
        shape = tuple(image.shape) if isinstance(image, Tensor) else type(image).__name__
        raise ValueError(f"{name} must be an IMAGE {want} with B, H, W >= 1, got {shape}")
    if not torch.isfinite(image).all():
        raise ValueError(f"{name} contains NaN or Inf")
    return image


def to_pil(image: Tensor) -> Image.Image:
    """One IMAGE to an RGB Pillow image, rounding exactly like ComfyUI's ``SaveImage``.

    Args:
        image: ``[H, W, 3]`` or ``[1, H, W, 3]`` float in [0, 1] (values outside are clipped).

    Returns:
        ``W x H`` RGB ``uint8`` image: ``clip(255 * x, 0, 255)`` truncated to an integer.

    Raises:
        ValueError: wrong shape, a batch of more than one, or NaN/Inf.
    """
    if isinstance(image, Tensor) and image.ndim == 4 and image.shape[0] == 1:
        image = image[0]
    _check_image(image, "to_pil: image", batched=False)
    arr = 255.0 * image.detach().to("cpu", torch.float32).numpy()
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), mode="RGB")


def from_pil(img: Image.Image) -> Tensor:
    """A Pillow image to one IMAGE, as ComfyUI's ``LoadImage`` does (32-bit "I" scaled by 1/255).

    EXIF orientation is not applied; alpha is dropped (``convert("RGB")``).

    Args:
        img: any-mode Pillow image.

    Returns:
        ``[H, W, 3]`` float32 in [0, 1].
    """
    if img.mode == "I":
        img = img.point(lambda v: v * (1 / 255))
    rgb = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(rgb.copy())


def load_font(size: int) -> Font:
    """Pillow's default font at ``size`` pixels (Pillow >= 10.1 with FreeType), else its fixed
    bitmap font (about 11 px), which is logged."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError) as err:  # Pillow < 10.1 or no FreeType
        log.info("scalable default font unavailable (%s); using the fixed bitmap font", err)
        return ImageFont.load_default()


def drawable(text: str, font: Font) -> str:
    """``text`` with characters the font has no glyph for spelled out (``σ`` -> ``sd``) or ``?``."""
    if not isinstance(font, ImageFont.FreeTypeFont):
        return "".join(c if ord(c) < 256 else _SPELLED.get(c, "?") for c in text)
    missing = font.getmask("\uffff")
    missing_key = (missing.size, bytes(missing))
    swap = {}
    for c in set(text):  # each distinct character rendered once, however long the text
        if ord(c) >= 128:
            m = font.getmask(c)
            if (m.size, bytes(m)) == missing_key:
                swap[c] = _SPELLED.get(c, "?")
    return "".join(swap.get(c, c) for c in text) if swap else text


def _text_size(font: Font, text: str) -> tuple[int, int]:
    left, _, right, bottom = font.getbbox(text)
    return int(math.ceil(right - min(left, 0))), int(math.ceil(bottom))


def _fit_font(texts: Sequence[str], size: int, width: int) -> Font:
    """The largest font at most ``size`` px (down to 7) in which every text fits ``width``."""
    for s in range(size, 6, -1):
        progress.check()
        font = load_font(s)
        if not isinstance(font, ImageFont.FreeTypeFont):
            return font
        if all(_text_size(font, drawable(t, font))[0] <= width for t in texts):
            return font
    return load_font(7)


def _draw_centered(mask: Image.Image, box: tuple[int, int, int, int], text: str, font: Font) -> None:
    """Draw ``text`` centred in ``box`` (x0, y0, x1, y1) of the "L" mask, clipped to the box at the right."""
    x0, y0, x1, y1 = box
    if x1 <= x0 or y1 <= y0 or not text:
        return
    text = drawable(text, font)
    tw, th = _text_size(font, text)
    tile = Image.new("L", (x1 - x0, y1 - y0), 0)
    # centred; text wider than the box keeps its start visible
    ImageDraw.Draw(tile).text((max(0, (x1 - x0 - tw) // 2), (y1 - y0 - th) // 2), text, fill=255, font=font)
    mask.paste(tile, (x0, y0))


def grid_shape(count: int, rows: int | None = None, cols: int | None = None) -> tuple[int, int]:
    """(rows, cols) for ``count`` cells: near-square (``cols = ceil(sqrt(count))``) when neither
    is given, the other one derived when one is.

    Raises:
        ValueError: ``rows``/``cols`` below 1, or ``rows * cols < count``.
    """
    for name, v in (("rows", rows), ("cols", cols)):
        if v is not None and v < 1:
            raise ValueError(f"grid: {name} must be >= 1 (or None for auto), got {v}")
    if rows is None and cols is None:
        cols = math.ceil(math.sqrt(count))
    if rows is None:
        rows = math.ceil(count / cols)
    elif cols is None:
        cols = math.ceil(count / rows)
    if rows * cols < count:
        raise ValueError(f"grid: rows={rows} x cols={cols} cannot hold {count} images")
    return rows, cols


def grid(images: Tensor, *, rows: int | None = None, cols: int | None = None, row_labels: Sequence[str] = (),
         col_labels: Sequence[str] = (), labels: Sequence[str] = (), pad: int = 2, background: float = 1.0,
         font_size: int | None = None, scale: int = 1) -> Tensor:
    """Lay a batch of images out row-major on one sheet, with optional labels.

    Layout (``h = H * scale``, ``w = W * scale``; ``t`` = text line height): a left margin as wide
    as the widest row label (if any), a top margin of one line for column labels (if any), then
    ``rows x cols`` cells of ``w x (h + t if labels else h)`` separated and surrounded by ``pad``
    pixels. Per-image ``labels`` go under each image. Image pixels are copied unchanged (no
    8-bit rounding); text is black on a light background, white on a dark one.

    Args:
        images: ``[B, H, W, 3]`` float IMAGE.
        rows, cols: grid size; inferred near-square when not given (see :func:`grid_shape`).
        row_labels: ``rows`` strings (or none). col_labels: ``cols`` strings (or none).
        labels: ``B`` strings under the images (or none).
        pad: gap in pixels, >= 0. background: grey level in [0, 1].
        font_size: text height in pixels; ``None`` = about ``w / 6`` clamped to 10..32. Cell
            and column labels shrink (down to 7 px) to fit the cell width, and are clipped
            beyond that.
        scale: integer nearest-neighbour upscaling of every image (>= 1), so 32x32 images get
            readable labels.

    Returns:
        ``[1, H', W', 3]`` float32.

    Raises:
        ValueError: bad image shape, NaN/Inf, label counts that don't match, bad sizes, a label
            longer than :data:`latent_ops.limits.MAX_LABEL_CHARS` or a sheet of more than
            :data:`latent_ops.limits.MAX_GRID_PIXELS` pixels (both refused before any drawing).
    """
    _check_image(images, "grid: images", batched=True)
    b, h, w, _ = images.shape
    rows, cols = grid_shape(b, rows, cols)
    for name, seq, want in (("labels", labels, b), ("row_labels", row_labels, rows), ("col_labels", col_labels, cols)):
        if len(seq) not in (0, want):
            raise ValueError(f"grid: {name} has {len(seq)} entries, expected {want} (or none) for {b} images "
                             f"in {rows} rows x {cols} cols")
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise ValueError(f"grid: scale must be an int >= 1, got {scale!r}")
    if pad < 0 or not 0.0 <= background <= 1.0:
        raise ValueError(f"grid: pad must be >= 0 and background in [0, 1], got pad={pad}, background={background}")
    if font_size is not None and font_size < 1:
        raise ValueError(f"grid: font_size must be >= 1 or None, got {font_size}")
    for name, seq in (("labels", labels), ("row_labels", row_labels), ("col_labels", col_labels)):
        for i, text in enumerate(seq):
            if len(text) > MAX_LABEL_CHARS:
                raise ValueError(f"grid: {name}[{i}] has {len(text)} characters ({excerpt(text, 20)}), "
                                 f"at most {MAX_LABEL_CHARS} are drawn")
    h, w = h * scale, w * scale
    size = font_size if font_size is not None else max(10, min(32, round(w / 6)))
    font = load_font(size)
    cell_font = _fit_font([*labels, *col_labels], size, w) if (labels or col_labels) else font
    line = _text_size(cell_font, "Ag|y")[1] + 2
    left = max((_text_size(font, drawable(t, font))[0] for t in row_labels), default=-pad) + pad
    top = line if col_labels else 0
    cell_h = h + (line if labels else 0)
    width, height = left + pad + cols * (w + pad), top + pad + rows * (cell_h + pad)
    check_at_most("grid", f"the sheet's size in pixels ({width} x {height})", width * height, MAX_GRID_PIXELS,
                  "use fewer columns, a smaller scale, pad or font_size")

    canvas = torch.full((height, width, 3), float(background), dtype=torch.float32)
    pics = images.detach().to("cpu", torch.float32)
    if scale > 1:
        pics = pics.repeat_interleave(scale, dim=1).repeat_interleave(scale, dim=2)
    mask = Image.new("L", (width, height), 0)
    for i in range(b):
        r, c = divmod(i, cols)
        x0, y0 = left + pad + c * (w + pad), top + pad + r * (cell_h + pad)
        canvas[y0:y0 + h, x0:x0 + w] = pics[i]
        if labels:
            _draw_centered(mask, (x0, y0 + h, x0 + w, y0 + cell_h), labels[i], cell_font)
        progress.report(i + 1, b)
    for c, text in enumerate(col_labels):
        x0 = left + pad + c * (w + pad)
        _draw_centered(mask, (x0, 0, x0 + w, top), text, cell_font)
    for r, text in enumerate(row_labels):
        y0 = top + pad + r * (cell_h + pad)
        _draw_centered(mask, (0, y0, left, y0 + h), text, font)
    alpha = torch.from_numpy(np.asarray(mask, dtype=np.float32) / 255.0).unsqueeze(-1)
    ink = 0.0 if background >= 0.5 else 1.0
    return (canvas * (1 - alpha) + ink * alpha).unsqueeze(0)


def split_labels(text: str) -> list[str]:
    """Labels from one text: one per line, or (a single line) comma-separated; blank text -> none.

    Example: ``"a\nb, c"`` -> ``["a", "b, c"]``; ``"a, b"`` -> ``["a", "b"]``; ``" "`` -> ``[]``.
    """
    text = text.strip("\n")
    if not text.strip():
        return []
    parts = text.split("\n") if "\n" in text else text.split(",")
    return [p.strip() for p in parts]


def labelled_grid(images: Tensor, *, columns: int = 0, scale: int = 1, labels: str = "", row_labels: str = "",
                  col_labels: str = "", pad: int = 2, font_size: int = 0) -> Tensor:
    """:func:`grid` with widget-style arguments: labels as text (:func:`split_labels`), 0 = automatic.

    Args:
        images: ``[B, H, W, 3]`` float IMAGE.
        columns: images per row; 0 = near-square. font_size: text height; 0 = automatic.
        labels, row_labels, col_labels: one label per image / row / column, as text.
        scale, pad: as :func:`grid`.

    Returns:
        ``[1, H', W', 3]`` float32, as :func:`grid`.

    Raises:
        ValueError: as :func:`grid` (label counts that don't match name the labels input).
    """
    return grid(images, cols=columns or None, scale=scale, pad=pad, font_size=font_size or None,
                labels=split_labels(labels), row_labels=split_labels(row_labels), col_labels=split_labels(col_labels))


def split_grid(image: Tensor, tile_height: int, tile_width: int, *, limit: int = 0) -> Tensor:
    """Cut sheets of equal tiles into a batch, row by row (item by item for a batch of sheets).

    Args:
        image: ``[B, H, W, 3]`` IMAGE whose ``H`` and ``W`` are multiples of the tile size.
        tile_height, tile_width: tile size in pixels, >= 1.
        limit: keep only the first ``limit`` tiles (0 = all).

    Returns:
        ``[N, tile_height, tile_width, 3]`` with ``N = B * (H / tile_height) * (W / tile_width)``
        (or ``limit`` if smaller), in the input's dtype.

    Raises:
        ValueError: bad shape or tile size, a sheet that is not a whole number of tiles,
            ``limit < 0``, or more than :data:`latent_ops.limits.MAX_TILES` tiles kept.
    """
    _check_image(image, "split_grid: image", batched=True)
    b, h, w, _ = image.shape
    if tile_height < 1 or tile_width < 1 or limit < 0:
        raise ValueError(f"split_grid: tile_height={tile_height}, tile_width={tile_width} must be >= 1 "
                         f"and limit={limit} >= 0")
    if h % tile_height or w % tile_width:
        raise ValueError(f"split_grid: image {h}x{w} (HxW) is not a whole number of "
                         f"{tile_height}x{tile_width} tiles")
    rows, cols = h // tile_height, w // tile_width
    kept = min(b * rows * cols, limit) if limit else b * rows * cols
    check_at_most("split_grid", f"the number of {tile_height}x{tile_width} tiles kept", kept, MAX_TILES,
                  "use a larger tile size or set limit")
    tiles = image.reshape(b, rows, tile_height, cols, tile_width, 3).permute(0, 1, 3, 2, 4, 5)
    tiles = tiles.reshape(b * rows * cols, tile_height, tile_width, 3)
    return (tiles[:limit] if limit else tiles).clone()


def save_gif(frames: Tensor, path: str | os.PathLike[str], *, fps: float = 12, loop: bool = True,
             overwrite: bool = False) -> None:
    """Write frames as an animated GIF, atomically (:func:`latent_ops.media.files.write_atomic`), so a
    failure never leaves a partial file.

    Pillow quantises each frame to a 256-colour palette, stores durations in 10 ms units and
    merges consecutive identical frames into one longer frame.

    Args:
        frames: ``[N, H, W, 3]`` float IMAGE in [0, 1], ``N >= 1``.
        path: destination; its folder must exist.
        fps: frames per second, > 0 (frame duration ``round(1000 / fps)`` ms).
        loop: loop forever; otherwise play once.
        overwrite: replace an existing file; otherwise refuse.

    Raises:
        ValueError: bad frames or fps. FileExistsError: ``path`` exists and not ``overwrite``.
    """
    _check_image(frames, "save_gif: frames", batched=True)
    if not (isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0):
        raise ValueError(f"save_gif: fps must be a finite number > 0, got {fps!r}")
    dest = Path(path)
    if dest.exists() and not overwrite:
        raise FileExistsError(f"save_gif: {dest} exists; pass overwrite=True to replace it")
    pics = [to_pil(f) for f in frames]
    extra = {"loop": 0} if loop else {}
    write_atomic(dest, lambda fh: pics[0].save(fh, format="GIF", save_all=True, append_images=pics[1:],
                                               duration=max(1, round(1000 / fps)), **extra), overwrite=overwrite)
