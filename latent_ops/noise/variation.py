"""Variation seeds: mixing base noise with the noise of other seeds.

* :func:`mix_noise` blends a batch of base noise towards a batch of variation noise with a
  strength in [0, 1]: strength 0 returns the base exactly, strength 1 the other noise exactly.
  Method ``"slerp"`` is the whole-sample spherical interpolation of
  :func:`latent_ops.interp.slerp` (unit-variance noise stays unit variance); method ``"a1111"``
  is AUTOMATIC1111's per-column slerp (:func:`slerp_a1111`), quirks included.
* Stacked variations are lists ``[(seed, weight), ...]`` applied in order, each mixing the running
  result towards that seed's noise; :func:`parse_variations` reads ``"123:0.2, 456:0.1"``.

Seeds are checked with :func:`latent_ops.seeds.check_seed` (re-exported here as ``check_seed``,
with ``MAX_SEED``, for older imports).

Version: ``VARIATION_VERSION`` (the mixing rules; bumped if any output changes).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

from .. import interp
from ..limits import MAX_VARIATIONS, check_at_most, excerpt
from ..seeds import MAX_SEED, check_seed

__all__ = [
    "MAX_SEED", "VARIATION_VERSION", "check_seed", "check_strength", "check_variations", "mix_noise",
    "parse_variations", "slerp_a1111",
]

VARIATION_VERSION = 1
"""Version of the mixing rules in this module."""

_ITEM = re.compile(r"^\s*(\d+)\s*:\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")


def slerp_a1111(val: float, low: Tensor, high: Tensor) -> Tensor:
    """AUTOMATIC1111's variation slerp (``modules/rng.py:slerp``), reproduced with its quirks.

    The tensors are one image's noise ``(C, H, W)`` and are *not* flattened: norms are taken over
    dim 1, so every ``(c, w)`` column along H is slerped on its own (a per-column slerp, not a
    whole-image one). If the mean column cosine exceeds 0.9995 it falls back to a lerp whose
    weights are swapped (``low * val + high * (1 - val)``, A1111 issue #3068). At ``val = 1`` the
    result equals ``high`` only up to float rounding, as in A1111.

    Args:
        val: strength in [0, 1] (weight of ``high``).
        low: base noise (C, H, W). high: variation noise (C, H, W).

    Returns:
        Tensor (C, H, W) in the inputs' dtype.

    Raises:
        ValueError: if shapes differ or the tensors are not 3-D.
    """
    if low.shape != high.shape or low.dim() != 3:
        raise ValueError(
            f"slerp_a1111: need two (C, H, W) tensors, got {tuple(low.shape)} and {tuple(high.shape)}"
        )
    low_norm = low / torch.norm(low, dim=1, keepdim=True)
    high_norm = high / torch.norm(high, dim=1, keepdim=True)
    dot = (low_norm * high_norm).sum(1)
    if dot.mean() > 0.9995:
        return low * val + high * (1 - val)
    omega = torch.acos(dot)
    so = torch.sin(omega)
    w_low = (torch.sin((1.0 - val) * omega) / so).unsqueeze(1)
    w_high = (torch.sin(val * omega) / so).unsqueeze(1)
    return w_low * low + w_high * high


def check_strength(strength: float, name: str = "subseed_strength") -> float:
    """Return ``strength`` as float; raise ``ValueError`` unless it is finite and in [0, 1]."""
    s = float(strength)
    if not (math.isfinite(s) and 0.0 <= s <= 1.0):
        raise ValueError(f"{name} must be in [0, 1], got {strength}")
    return s


def parse_variations(text: str) -> list[tuple[int, float]]:
    """Parse a stacked variation list such as ``"123:0.2, 456:0.1"``.

    Items are ``seed:weight`` separated by commas (or ``|``, as in A1111 requests); whitespace is
    ignored and an empty string means no variations.

    Returns:
        ``[(seed, weight), ...]`` in the order given.

    Raises:
        ValueError: naming the offending item for bad syntax, a seed outside [0, 2**64) or a
            weight outside [0, 1]; more than :data:`latent_ops.limits.MAX_VARIATIONS` items
            (counted before parsing).
    """
    if not isinstance(text, str):
        raise ValueError(f"variations: expected a string like '123:0.2, 456:0.1', got {type(text).__name__}")
    out: list[tuple[int, float]] = []
    if not text.strip():
        return out
    check_at_most("variations", "the number of items", text.count(",") + text.count("|") + 1, MAX_VARIATIONS)
    for item in re.split(r"[,|]", text):
        m = _ITEM.match(item)
        if m is None:
            raise ValueError(f"variations: cannot parse item {excerpt(item.strip(), 40)} in {excerpt(text)}; "
                             "expected 'seed:weight', e.g. '123:0.2'")
        seed = check_seed(int(m.group(1)), f"variations seed in {excerpt(item.strip(), 40)}")
        weight = check_strength(float(m.group(2)), f"variations weight in {excerpt(item.strip(), 40)}")
        out.append((seed, weight))
    return out


def check_variations(variations: Sequence[tuple[int, float]] | str) -> list[tuple[int, float]]:
    """Validate a variation list (or parse a string); returns ``[(seed, weight), ...]``.

    Raises:
        ValueError: as :func:`parse_variations`, for an item that is not a pair, or for more than
            :data:`latent_ops.limits.MAX_VARIATIONS` items.
    """
    if isinstance(variations, str):
        return parse_variations(variations)
    try:
        count = len(variations)
    except TypeError:
        raise ValueError(f"variations must be a list of (seed, weight) pairs or a string, "
                         f"got {type(variations).__name__}") from None
    check_at_most("variations", "the number of items", count, MAX_VARIATIONS)
    out = []
    for i, item in enumerate(variations):
        try:
            seed, weight = item
        except (TypeError, ValueError):
            raise ValueError(f"variations[{i}] must be a (seed, weight) pair, got {excerpt(item)}") from None
        out.append(
            (check_seed(seed, f"variations[{i}] seed"), check_strength(weight, f"variations[{i}] weight"))
        )
    return out


def mix_noise(
    base: Tensor, other: Tensor, strength: float, *, method: Literal["slerp", "a1111"] = "slerp"
) -> Tensor:
    """Blend base noise towards variation noise.

    Args:
        base: noise (B, ...) — what strength 0 returns.
        other: variation noise, same shape — what strength 1 returns.
        strength: weight of ``other`` in [0, 1].
        method: ``"slerp"`` (whole-sample slerp, exact endpoints) or ``"a1111"`` (per image
            :func:`slerp_a1111` on ``(C, H, W)``; 4-D batches only; strength 0 returns the base
            exactly, other strengths follow A1111's float arithmetic).

    Returns:
        Tensor of ``base``'s shape and dtype.

    Raises:
        ValueError: on shape mismatch, bad strength, unknown method, or a non-4-D batch for
            ``"a1111"``.
    """
    if base.shape != other.shape:
        raise ValueError(f"mix_noise: base {tuple(base.shape)} and variation {tuple(other.shape)} differ")
    s = check_strength(strength, "strength")
    if method not in ("slerp", "a1111"):
        raise ValueError(f"mix_noise: unknown method {method!r}; known: ['a1111', 'slerp']")
    if s == 0.0:
        return base.clone()
    if method == "a1111":
        if base.dim() != 4:
            raise ValueError(
                f"mix_noise: the a1111 per-column slerp needs (B, C, H, W) noise, got {tuple(base.shape)}"
            )
        return torch.stack([slerp_a1111(s, lo, hi) for lo, hi in zip(base, other, strict=True)])
    if s == 1.0:
        return other.clone()
    return interp.slerp(base, other, s, granularity="sample")
