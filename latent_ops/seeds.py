"""Seeds: the one home of the seed range and its checks.

A seed is an integer in ``[0, 2**64)`` (ComfyUI's widget range, A1111's and diffusers' too).
Per-image seeds ``seed + i`` wrap modulo ``2**64``. Nothing folds a seed into a smaller range:
code that needs fewer bits derives them with :func:`seed32`, never with ``% 2**32``.
"""

from __future__ import annotations

import numbers

SEED_BITS = 64
MAX_SEED = 2**SEED_BITS - 1
"""Largest seed (the ``max`` of every seed widget)."""


def check_seed(seed: int, name: str = "seed") -> int:
    """Return ``seed`` as ``int``; raise ``ValueError`` unless it is an integer in ``[0, 2**64)``.

    Integral floats and numpy integers are accepted (``3.0`` -> 3); ``True``/``False`` are not.
    """
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        try:
            as_int = int(seed)
        except (TypeError, ValueError, OverflowError):
            raise ValueError(f"{name} must be an integer, got {seed!r}") from None
        if isinstance(seed, bool) or as_int != seed:
            raise ValueError(f"{name} must be an integer, got {seed!r}")
        seed = as_int
    seed = int(seed)
    if not 0 <= seed <= MAX_SEED:
        raise ValueError(f"{name} must be in [0, 2**64), got {seed}")
    return seed


def offset(seed: int, k: int) -> int:
    """``seed + k`` modulo ``2**64`` (the seed of image ``k`` under per-image conventions)."""
    return (seed + k) % (MAX_SEED + 1)


def mix64(z: int) -> int:
    """SplitMix64's finaliser of ``z mod 2**64``: a bijection of 64-bit integers that scatters nearby inputs."""
    z &= MAX_SEED
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MAX_SEED
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MAX_SEED
    return z ^ (z >> 31)


def seed32(seed: int) -> int:
    """A 32-bit seed for APIs that take no more (numpy, scikit-learn): the high half of :func:`mix64`.

    Every bit of the 64-bit seed matters, so ``s`` and ``s + 2**32`` give different streams
    (``% 2**32`` would make them equal).
    """
    return mix64(check_seed(seed)) >> 32
