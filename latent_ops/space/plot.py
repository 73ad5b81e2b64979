"""The latent space map: a 2-D projection drawn as a scatter of thumbnails or coloured dots.

:func:`map_image` draws points given in 2-D (the first two columns of a
:class:`~latent_ops.space.project.Projection`'s coordinates) on a Pillow canvas: every point as a dot
(coloured by cluster/class with a legend when labels are given), and on top of them decoded
thumbnails of a seeded, non-overlapping subset of at most ``max_thumbnails`` points. Thumbnails
come either from an already-decoded ``IMAGE`` batch or from a ``decode(indices)`` callable that is
called once, with only the chosen indices, so a map of thousands of latents decodes a few hundred
at most. Axes carry the projection's names (PCA: explained variance per component).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import Tensor

from ..media.images import load_font, to_pil
from ..seeds import check_seed, cpu_generator
from .project import Projection

Decode = Callable[[Tensor], Tensor]
"""``decode(indices (m,) long) -> IMAGE [m, h, w, 3]`` in ``[0, 1]``."""

PALETTE: tuple[tuple[int, int, int], ...] = (
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
    (174, 199, 232), (255, 187, 120), (152, 223, 138), (255, 152, 150), (197, 176, 213),
    (196, 156, 148), (247, 182, 210), (199, 199, 199), (219, 219, 141), (158, 218, 229),
)  # fmt: skip
"""Label colours (the tab10 then tab20-light colours), cycled for more than 20 labels."""

LEGEND_ROWS = 20


def select_thumbnails(xy: Tensor, max_thumbnails: int, thumb: int, *, seed: int = 0) -> Tensor:
    """Pick at most ``max_thumbnails`` points whose thumbnails do not overlap.

    Points are visited in a seeded random order; a point is kept when no kept point lies within
    ``0.9 * thumb`` pixels of it in both directions (a grid of ``thumb``-sized cells makes the
    check local).

    Args:
        xy: ``(N, 2)`` pixel positions; thumb: thumbnail side in pixels (``>= 1``).
        max_thumbnails: upper bound on the result size (``>= 0``).
        seed: in ``[0, 2**64)``, seeds the visiting order (CPU ``torch.Generator``).

    Returns:
        ``(m,)`` long indices, sorted ascending, ``m <= max_thumbnails``.

    Raises:
        ValueError: for a seed that is not an integer in ``[0, 2**64)``.
    """
    seed = check_seed(seed, "select_thumbnails: seed")
    if max_thumbnails <= 0 or xy.shape[0] == 0:
        return torch.zeros(0, dtype=torch.long)
    order = torch.randperm(xy.shape[0], generator=cpu_generator(seed)).tolist()
    pts = xy.tolist()
    min_gap = 0.9 * thumb
    grid: dict[tuple[int, int], list[tuple[float, float]]] = {}
    kept: list[int] = []
    for i in order:
        x, y = pts[i]
        cx, cy = int(x // thumb), int(y // thumb)
        clash = any(
            abs(x - ox) < min_gap and abs(y - oy) < min_gap
            for gx in (cx - 1, cx, cx + 1)
            for gy in (cy - 1, cy, cy + 1)
            for ox, oy in grid.get((gx, gy), ())
        )
        if clash:
            continue
        grid.setdefault((cx, cy), []).append((x, y))
        kept.append(i)
        if len(kept) >= max_thumbnails:
            break
    return torch.tensor(sorted(kept), dtype=torch.long)


def _ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    if hi <= lo:
        return [lo]
    step = 10 ** math.floor(math.log10((hi - lo) / count))
    for mult in (1, 2, 5, 10):
        if (hi - lo) / (step * mult) <= count:
            step *= mult
            break
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def _check_inputs(coords: Tensor, images: Tensor | None, labels: Tensor | None, size: int) -> None:
    if not isinstance(coords, Tensor) or coords.ndim != 2 or coords.shape[1] < 2 or coords.shape[0] < 1:
        shape = tuple(coords.shape) if isinstance(coords, Tensor) else type(coords).__name__
        raise ValueError(f"map_image: coords must be (N, 2) or (N, 3) with N >= 1, got {shape}")
    if not torch.isfinite(coords).all():
        raise ValueError("map_image: coords contain NaN or Inf")
    n = coords.shape[0]
    if images is not None and (images.ndim != 4 or images.shape[0] != n or images.shape[-1] != 3):
        raise ValueError(f"map_image: images must be an IMAGE [N={n}, H, W, 3] for the same batch, got {tuple(images.shape)}")
    if labels is not None and (labels.ndim != 1 or labels.shape[0] != n):
        raise ValueError(f"map_image: labels must be (N={n},), got {tuple(labels.shape)}")
    if not 128 <= size <= 8192:
        raise ValueError(f"map_image: size must be in 128..8192, got {size}")


def map_image(coords: Tensor, *, images: Tensor | None = None, decode: Decode | None = None, labels: Tensor | None = None, label_names: Sequence[str] | None = None, max_thumbnails: int = 200, size: int = 768, thumb_size: int | None = None, seed: int = 0, axis_labels: Sequence[str] = ("1", "2"), title: str | None = None) -> Tensor:
    """Draw a 2-D scatter of points as dots and (a subset of) thumbnails.

    Args:
        coords: ``(N, 2)`` or ``(N, 3)`` positions; only the first two columns are drawn.
        images: optional ``IMAGE [N, h, w, 3]`` thumbnails for every point (only the chosen
            subset is used). Exclusive with ``decode``.
        decode: optional ``decode(indices) -> IMAGE [m, h, w, 3]``; called once with the sorted
            indices of the chosen subset only.
        labels: optional ``(N,)`` integer labels: dots (and thumbnail frames) coloured per label,
            with a legend. Without labels dots are grey.
        label_names: legend text per distinct label value (in sorted label order); default
            ``"cluster <id>"``.
        max_thumbnails: at most this many thumbnails (0 = dots only).
        size: side of the square canvas in pixels (128..8192).
        thumb_size: thumbnail side in pixels; default from ``size`` and ``max_thumbnails``.
        seed: in ``[0, 2**64)``, seeds the thumbnail subset (see :func:`select_thumbnails`).
        axis_labels: x and y axis names; title: optional caption.

    Returns:
        ``IMAGE [1, size, size, 3]`` float32 in ``[0, 1]``.

    Raises:
        ValueError: for mismatched shapes, non-finite coords, both ``images`` and ``decode``,
            or a ``decode`` that returns the wrong number of images.
    """
    _check_inputs(coords, images, labels, size)
    if images is not None and decode is not None:
        raise ValueError("map_image: give images or decode, not both")
    n = coords.shape[0]
    xy = coords[:, :2].detach().double().cpu()
    s = size / 768.0
    font, small = load_font(max(10, round(15 * s))), load_font(max(9, round(12 * s)))
    uniq = torch.unique(labels.cpu()).tolist() if labels is not None else []
    names = list(label_names) if label_names is not None else [f"cluster {u}" for u in uniq]
    if labels is not None and len(names) != len(uniq):
        raise ValueError(f"map_image: {len(names)} label_names for {len(uniq)} distinct labels")
    legend_w = 0
    if uniq:
        legend_w = round(min(260 * s, max(small.getlength(t) for t in names[:LEGEND_ROWS]) + 40 * s))
    left, right, top, bottom = round(70 * s), round(16 * s) + legend_w, round(40 * s), round(60 * s)
    pw, ph = size - left - right, size - top - bottom
    if thumb_size is None:
        thumb_size = int(min(96, max(16, 0.85 * min(pw, ph) / math.sqrt(max(1, max_thumbnails)))))
    thumb = max(4, min(int(thumb_size), pw // 2, ph // 2))
    lo, hi = xy.min(0).values, xy.max(0).values
    span = torch.where(hi - lo > 0, hi - lo, torch.ones_like(hi))
    pad = thumb / 2 + 4 * s
    frac = torch.where(hi - lo > 0, (xy - lo) / span, torch.full_like(xy, 0.5))
    px = left + pad + frac[:, 0] * (pw - 2 * pad)
    py = top + ph - pad - frac[:, 1] * (ph - 2 * pad)
    pix = torch.stack([px, py], 1)

    canvas = Image.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    draw.rectangle([left, top, left + pw, top + ph], outline=(60, 60, 60), width=max(1, round(s)))
    for axis in (0, 1):  # ticks and their values
        a, b = float(lo[axis]), float(hi[axis])
        for t in _ticks(a, b) if b > a else [a]:
            f = (t - a) / (b - a) if b > a else 0.5
            if axis == 0:
                x = left + pad + f * (pw - 2 * pad)
                draw.line([x, top + ph, x, top + ph + 5 * s], fill=(60, 60, 60))
                draw.text((x, top + ph + 7 * s), f"{t:.3g}", fill=(40, 40, 40), font=small, anchor="ma")
            else:
                y = top + ph - pad - f * (ph - 2 * pad)
                draw.line([left - 5 * s, y, left, y], fill=(60, 60, 60))
                draw.text((left - 7 * s, y), f"{t:.3g}", fill=(40, 40, 40), font=small, anchor="rm")
    xlab, ylab = (list(axis_labels) + ["", ""])[:2]
    draw.text((left + pw / 2, size - 8 * s), xlab, fill=(0, 0, 0), font=font, anchor="md")
    ytxt = Image.new("RGB", (round(font.getlength(ylab)) + 4, round(22 * s)), (255, 255, 255))
    ImageDraw.Draw(ytxt).text((2, ytxt.height // 2), ylab, fill=(0, 0, 0), font=font, anchor="lm")
    ytxt = ytxt.rotate(90, expand=True)
    canvas.paste(ytxt, (round(4 * s), round(top + ph / 2 - ytxt.height / 2)))
    if title:
        draw.text((left + pw / 2, 8 * s), title, fill=(0, 0, 0), font=font, anchor="ma")

    colour_of = {u: PALETTE[i % len(PALETTE)] for i, u in enumerate(uniq)}
    point_colours = [colour_of[v] for v in labels.tolist()] if labels is not None else [(150, 150, 150)] * n
    r = max(2.0, 3.0 * s)
    for (x, y), c in zip(pix.tolist(), point_colours, strict=True):
        draw.ellipse([x - r, y - r, x + r, y + r], fill=c)

    if images is not None or decode is not None:
        chosen = select_thumbnails(pix, max_thumbnails, thumb, seed=seed)
        if len(chosen):
            thumbs = images[chosen] if images is not None else decode(chosen)
            if not isinstance(thumbs, Tensor) or thumbs.ndim != 4 or thumbs.shape[0] != len(chosen) or thumbs.shape[-1] != 3:
                got = tuple(thumbs.shape) if isinstance(thumbs, Tensor) else type(thumbs).__name__
                raise ValueError(f"map_image: decode({len(chosen)} indices) must return an IMAGE [{len(chosen)}, h, w, 3], got {got}")
            frame = max(1, round(2 * s))
            inner = max(1, thumb - 2 * frame)
            for j, i in enumerate(chosen.tolist()):
                img = to_pil(thumbs[j].clamp(0, 1))
                scale = inner / max(img.width, img.height)
                img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.Resampling.LANCZOS)
                x0, y0 = round(pix[i, 0].item() - thumb / 2), round(pix[i, 1].item() - thumb / 2)
                draw.rectangle([x0, y0, x0 + thumb - 1, y0 + thumb - 1], fill=point_colours[i] if labels is not None else (90, 90, 90))
                canvas.paste(img, (x0 + (thumb - img.width) // 2, y0 + (thumb - img.height) // 2))

    if uniq:  # legend
        lx, ly = left + pw + round(12 * s), top
        for i, (u, name) in enumerate(zip(uniq[:LEGEND_ROWS], names[:LEGEND_ROWS], strict=True)):
            y = ly + i * round(20 * s) + round(10 * s)
            draw.ellipse([lx, y - 5 * s, lx + 10 * s, y + 5 * s], fill=colour_of[u])
            draw.text((lx + 16 * s, y), name, fill=(0, 0, 0), font=small, anchor="lm")
        if len(uniq) > LEGEND_ROWS:
            y = ly + LEGEND_ROWS * round(20 * s) + round(10 * s)
            draw.text((lx, y), f"+{len(uniq) - LEGEND_ROWS} more", fill=(80, 80, 80), font=small, anchor="lm")
    arr = torch.from_numpy(np.asarray(canvas, dtype=np.float32) / 255.0)
    return arr.unsqueeze(0)


def vae_decoder(vae: object, latents: Tensor, *, batch_size: int = 32) -> Decode:
    """A ``decode(indices)`` for :func:`map_image` that decodes only the requested latents.

    Args:
        vae: an object with ComfyUI's VAE duck type, ``vae.decode(latent [B, C, h, w]) -> IMAGE``.
        latents: ``[N, C, h, w]`` raw latents of the mapped batch.
        batch_size: latents per ``vae.decode`` call.

    Returns:
        ``decode(indices (m,)) -> IMAGE [m, H, W, 3]`` float32 on the CPU, clamped to ``[0, 1]``.
    """
    if not hasattr(vae, "decode"):
        raise ValueError(f"vae_decoder: vae must have a decode(latent) method, got {type(vae).__name__}")

    def decode(indices: Tensor) -> Tensor:
        out = []
        for s in range(0, len(indices), batch_size):
            idx = indices[s : s + batch_size].to(latents.device)
            img = vae.decode(latents[idx])
            if img.ndim != 4:
                raise ValueError(f"vae_decoder: vae.decode returned shape {tuple(img.shape)}, expected an IMAGE [B, H, W, 3]")
            out.append(img.detach().float().cpu().clamp(0, 1))
        return torch.cat(out)

    return decode


def projection_map(projection: Projection, *, images: Tensor | None = None, labels: Tensor | None = None, label_names: Sequence[str] | None = None, vae: object | None = None, latents: Tensor | None = None, max_thumbnails: int = 200, size: int = 768, seed: int = 0, title: str | None = None) -> Tensor:
    """:func:`map_image` for a :class:`~latent_ops.space.project.Projection`, axes named after it.

    Thumbnails come from ``images`` (decoded batch), or from ``vae`` + ``latents`` (only the
    shown subset is decoded), or are left out.

    Raises:
        ValueError: for both ``images`` and ``vae``, ``vae`` without ``latents`` (or the reverse),
            or a batch size that differs from the projection's.
    """
    n = projection.coords.shape[0]
    if images is not None and vae is not None:
        raise ValueError("projection_map: give decoded images or a vae (+ latents), not both")
    if (vae is None) != (latents is None):
        raise ValueError("projection_map: vae and latents must be given together")
    if latents is not None and latents.shape[0] != n:
        raise ValueError(f"projection_map: {latents.shape[0]} latents for a projection of {n} points")
    decode = vae_decoder(vae, latents) if vae is not None else None
    if title is None:
        title = f"{projection.method.upper() if projection.method == 'pca' else projection.axis_labels[0][:-2]} of {n} latents ({projection.feature})"
    return map_image(projection.coords, images=images, decode=decode, labels=labels, label_names=label_names, max_thumbnails=max_thumbnails, size=size, seed=seed, axis_labels=projection.axis_labels[:2], title=title)


def save_png(image: Tensor, path: str | Path) -> Path:
    """Write an ``IMAGE [1, H, W, 3]`` (or ``[H, W, 3]``) to a PNG file and return its path."""
    img = image[0] if image.ndim == 4 else image
    if img.ndim != 3 or img.shape[-1] != 3:
        raise ValueError(f"save_png: expected an IMAGE [1, H, W, 3], got {tuple(image.shape)}")
    path = Path(path)
    to_pil(img).save(path, format="PNG")
    return path
