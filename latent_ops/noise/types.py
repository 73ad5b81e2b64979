"""Seeded noise types beyond white Gaussian: uniform, Perlin, pyramid, 1/f coloured, offset.

Every type is a function ``fn(source, shape, **options) -> Tensor`` where ``source`` is a
:class:`RandomSource` (a seeded CPU ``torch.Generator`` wrapped by :class:`TorchSource`, or the
Philox emulation :class:`latent_ops.noise.philox.PhiloxGenerator`) and ``shape`` is ``(B, C, H, W)``
or a video shape ``(B, C, T, H, W)``. All types work for any channel count and any spatial size
(not only multiples of 8), never touch the global RNG, and return float32 CPU tensors (plain
``gaussian`` returns the source's dtype).

Spatial types (perlin, pyramid, coloured) treat every leading axis other than the last two as
independent planes, so a video latent gets independent noise per frame and channel. Normalised
types are scaled per sample (over all of C, [T,] H, W) to zero mean and unit standard deviation;
a sample with a single element (or no variation at all) comes out as zeros.

Versions: ``TYPE_VERSIONS[name]``; a change to any type's output bumps its version.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["NOISE_TYPES", "TYPE_VERSIONS", "COLOUR_ALPHAS", "RandomSource", "TorchSource", "get_type"]


class RandomSource(Protocol):
    """A seeded stream of random numbers on the CPU (float32 unless the source says otherwise)."""

    def randn(self, shape: Sequence[int]) -> Tensor:
        """Standard normal tensor of ``shape``."""
        ...

    def rand(self, shape: Sequence[int]) -> Tensor:
        """Uniform tensor in ``[0, 1)`` of ``shape``."""
        ...


class TorchSource:
    """A :class:`RandomSource` over an explicit CPU ``torch.Generator``.

    Args:
        generator: a CPU generator (already seeded); it advances with every draw.
        dtype: dtype of the *Gaussian* draws. float32 by default; ComfyUI and diffusers draw in
            the latent's dtype, and a CPU draw in float16/bfloat16/float64 is a different stream
            from the float32 one, so their conventions pass the latent's dtype here.
    """

    def __init__(self, generator: torch.Generator, dtype: torch.dtype = torch.float32) -> None:
        self.generator = generator
        self.dtype = dtype

    def randn(self, shape: Sequence[int]) -> Tensor:
        """Standard normal tensor of ``shape`` in ``self.dtype``."""
        return torch.randn(tuple(shape), generator=self.generator, dtype=self.dtype, device="cpu")

    def rand(self, shape: Sequence[int]) -> Tensor:
        """Uniform float32 tensor in ``[0, 1)`` of ``shape``."""
        return torch.rand(tuple(shape), generator=self.generator, dtype=torch.float32, device="cpu")


def _planes(shape: Sequence[int]) -> tuple[int, int, int, int]:
    """``(B, P, H, W)`` where P folds every axis between batch and the last two."""
    if len(shape) < 3:
        raise ValueError(f"noise: shape must be (B, C, H, W) or (B, C, T, H, W), got {tuple(shape)}")
    planes = 1
    for s in shape[1:-2]:
        planes *= int(s)
    return int(shape[0]), planes, int(shape[-2]), int(shape[-1])


def _normalise(x: Tensor) -> Tensor:
    """Per-sample zero mean, unit (population) std over all non-batch axes; flat samples -> 0."""
    flat = x.reshape(x.shape[0], -1).double()
    flat = flat - flat.mean(dim=1, keepdim=True)
    std = flat.pow(2).mean(dim=1, keepdim=True).sqrt()
    flat = torch.where(std > 1e-12, flat / std.clamp_min(1e-12), torch.zeros_like(flat))
    return flat.reshape(x.shape).float()


def gaussian(source: RandomSource, shape: Sequence[int]) -> Tensor:
    """White Gaussian noise N(0, 1) of ``shape`` (the source's raw ``randn`` stream)."""
    return source.randn(shape)


def uniform(source: RandomSource, shape: Sequence[int]) -> Tensor:
    """Uniform noise on ``[-sqrt(3), sqrt(3))``: zero mean, unit variance."""
    return (source.rand(shape) - 0.5) * math.sqrt(12.0)


def offset(source: RandomSource, shape: Sequence[int], *, offset_strength: float = 0.1) -> Tensor:
    """Gaussian noise plus a per-(sample, channel) constant ("offset noise", Crosslabs 2023).

    ``out = randn(shape) + offset_strength * randn(B, C, 1, 1[, 1])``; the variance is
    ``1 + offset_strength**2`` (not renormalised, as in the original recipe).

    Raises:
        ValueError: if ``offset_strength`` is negative or not finite.
    """
    if not math.isfinite(offset_strength) or offset_strength < 0:
        raise ValueError(f"offset noise: offset_strength must be finite and >= 0, got {offset_strength}")
    base = source.randn(shape).float()
    const = source.randn(tuple(shape[:2]) + (1,) * (len(shape) - 2)).float()
    return base + offset_strength * const


def _fade(t: Tensor) -> Tensor:
    return t * t * t * (t * (t * 6.0 - 15.0) + 10.0)


def _perlin_octave(source: RandomSource, n: int, h: int, w: int, cells_h: int, cells_w: int) -> Tensor:
    """One octave of 2-D gradient noise, (n, h, w), lattice of cells_h x cells_w cells."""
    angles = source.rand((n, cells_h + 1, cells_w + 1)) * (2.0 * math.pi)
    gx, gy = torch.cos(angles), torch.sin(angles)
    ys = (torch.arange(h, dtype=torch.float32) + 0.5) * (cells_h / h)
    xs = (torch.arange(w, dtype=torch.float32) + 0.5) * (cells_w / w)
    y0 = ys.floor().long().clamp(max=cells_h - 1)
    x0 = xs.floor().long().clamp(max=cells_w - 1)
    fy = (ys - y0).view(1, h, 1)
    fx = (xs - x0).view(1, 1, w)

    def corner(dy: int, dx: int) -> Tensor:
        iy = (y0 + dy).view(h, 1).expand(h, w)
        ix = (x0 + dx).view(1, w).expand(h, w)
        return gx[:, iy, ix] * (fx - dx) + gy[:, iy, ix] * (fy - dy)

    u, v = _fade(fx), _fade(fy)
    top = torch.lerp(corner(0, 0), corner(0, 1), u)
    bottom = torch.lerp(corner(1, 0), corner(1, 1), u)
    return torch.lerp(top, bottom, v)


def perlin(
    source: RandomSource,
    shape: Sequence[int],
    *,
    scale: float = 4.0,
    octaves: int = 4,
    persistence: float = 0.5,
    lacunarity: float = 2.0,
) -> Tensor:
    """Fractal (multi-octave) Perlin gradient noise, normalised per sample.

    Each plane gets its own random unit gradients (drawn as uniform angles). Octave ``o`` has
    ``ceil(scale * lacunarity**o)`` lattice cells along the longer side (the shorter side keeps the
    aspect ratio, at least 1 cell) and amplitude ``persistence**o``.

    Args:
        source: random source. shape: (B, C, H, W) or (B, C, T, H, W).
        scale: lattice cells of the first octave along the longer side (> 0).
        octaves: number of octaves (>= 1). persistence: amplitude ratio (> 0).
        lacunarity: frequency ratio between octaves (>= 1).

    Returns:
        float32 tensor of ``shape``, per-sample mean 0 and std 1.

    Raises:
        ValueError: on out-of-range options.
    """
    if not (scale > 0 and math.isfinite(scale)) or octaves < 1 or not persistence > 0 or not lacunarity >= 1:
        raise ValueError(
            f"perlin noise: need scale > 0, octaves >= 1, persistence > 0, lacunarity >= 1; got "
            f"scale={scale}, octaves={octaves}, persistence={persistence}, lacunarity={lacunarity}"
        )
    b, p, h, w = _planes(shape)
    out = torch.zeros(b * p, h, w)
    longest = max(h, w)
    for o in range(int(octaves)):
        cells = max(1, math.ceil(scale * lacunarity**o))
        cells_h = max(1, round(cells * h / longest))
        cells_w = max(1, round(cells * w / longest))
        out += persistence**o * _perlin_octave(source, b * p, h, w, cells_h, cells_w)
    return _normalise(out.reshape(tuple(shape)))


def pyramid(
    source: RandomSource, shape: Sequence[int], *, discount: float = 0.7, iterations: int = 10
) -> Tensor:
    """Multi-resolution ("pyramid") noise after J. Whitaker, normalised per sample.

    Starts from white noise; level ``i`` (0, 1, ...) shrinks the previous size by a random factor
    ``r**i`` with ``r ~ U[2, 4)`` (at least 1), draws Gaussian noise at that size, upsamples it
    *bilinearly* to full size and adds it with weight ``discount**i``; it stops after the first
    level that reaches one cell in either direction. (Variants that draw larger and downsample
    with nearest-exact are effectively white noise; this is the corrected one.)

    Raises:
        ValueError: if ``discount`` is not in (0, 1] or ``iterations`` < 1.
    """
    if not 0 < discount <= 1 or iterations < 1:
        raise ValueError(
            f"pyramid noise: need 0 < discount <= 1 and iterations >= 1, got {discount}, {iterations}"
        )
    b, p, h, w = _planes(shape)
    out = source.randn((b, p, h, w)).float()
    lh, lw = h, w
    for i in range(int(iterations)):
        r = 2.0 + 2.0 * float(source.rand((1,))[0])
        lh, lw = max(1, int(lh / r**i)), max(1, int(lw / r**i))
        level = source.randn((b, p, lh, lw)).float()
        out += F.interpolate(level, size=(h, w), mode="bilinear", align_corners=False) * discount**i
        if lh == 1 or lw == 1:
            break
    return _normalise(out.reshape(tuple(shape)))


COLOUR_ALPHAS: dict[str, float] = {"white": 0.0, "pink": 1.0, "brown": 2.0, "blue": -1.0, "violet": -2.0}
"""Spectral exponents of the named colours: power spectral density ~ 1 / f**alpha."""


def coloured(source: RandomSource, shape: Sequence[int], *, alpha: float = 1.0) -> Tensor:
    """1/f**alpha ("coloured") noise shaped in the 2-D Fourier domain, normalised per sample.

    White Gaussian noise is multiplied in ``rfft2`` space by ``|f|**(-alpha / 2)`` (so the *power*
    falls as ``1/|f|**alpha``: pink 1, brown 2, white 0, blue -1, violet -2), the DC term is
    removed, and the result is scaled per sample to unit std. (RES4LYF uses ``|f|**-alpha`` on the
    amplitude, i.e. twice the exponent, and a global std.)

    Raises:
        ValueError: if ``alpha`` is not finite.
    """
    if not math.isfinite(alpha):
        raise ValueError(f"coloured noise: alpha must be finite, got {alpha}")
    b, p, h, w = _planes(shape)
    white = source.randn((b, p, h, w)).double()
    fy = torch.fft.fftfreq(h, dtype=torch.float64).view(h, 1)
    fx = torch.fft.rfftfreq(w, dtype=torch.float64).view(1, -1)
    radius = torch.sqrt(fy * fy + fx * fx)
    gain = torch.where(radius > 0, radius.clamp_min(1e-12) ** (-alpha / 2.0), torch.zeros_like(radius))
    shaped = torch.fft.irfft2(torch.fft.rfft2(white) * gain, s=(h, w))
    return _normalise(shaped.reshape(tuple(shape)))


def _colour(alpha: float) -> Callable[..., Tensor]:
    def fn(source: RandomSource, shape: Sequence[int]) -> Tensor:
        return coloured(source, shape, alpha=alpha)

    fn.__doc__ = f"1/f**{alpha:g} coloured noise (see :func:`coloured`)."
    return fn


NOISE_TYPES: dict[str, Callable[..., Tensor]] = {
    "gaussian": gaussian,
    "uniform": uniform,
    "perlin": perlin,
    "pyramid": pyramid,
    "pink": _colour(COLOUR_ALPHAS["pink"]),
    "brown": _colour(COLOUR_ALPHAS["brown"]),
    "blue": _colour(COLOUR_ALPHAS["blue"]),
    "violet": _colour(COLOUR_ALPHAS["violet"]),
    "coloured": coloured,
    "offset": offset,
}
"""Noise types by name; each ``fn(source, shape, **options) -> float32 Tensor``."""

TYPE_VERSIONS: dict[str, int] = {name: 1 for name in NOISE_TYPES}
"""Output version of each noise type."""


def get_type(name: str) -> Callable[..., Tensor]:
    """Look a noise type up by name; raises ``ValueError`` listing the known names."""
    try:
        return NOISE_TYPES[name]
    except KeyError:
        raise ValueError(f"unknown noise_type {name!r}; known: {sorted(NOISE_TYPES)}") from None
