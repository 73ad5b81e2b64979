"""Seeds: the one home of the seed range and its checks.

A seed is an integer in ``[0, 2**64)`` (ComfyUI's widget range, A1111's and diffusers' too).
Per-image seeds ``seed + i`` wrap modulo ``2**64`` (:func:`offset`). Nothing folds a seed into a
smaller range: code that needs fewer bits derives them with :func:`seed32`, never with ``% 2**32``.

torch's CPU generator (mt19937) keeps only the low 32 bits of its seed, so ``manual_seed(s)`` and
``manual_seed(s + 2**32)`` give the same stream. The noise conventions keep that (ComfyUI, A1111's
CPU RNG and diffusers draw so, and their noise must match); everything else that seeds a torch
generator uses :func:`cpu_generator`, whose stream depends on every bit of the seed.

A public function checks each seed it is given once, with :func:`check_seed`; :func:`offset`,
:func:`mix64` and :func:`seed32` work on seeds that were already checked and check nothing.
"""

from __future__ import annotations

import numbers

import torch

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
    """``seed + k`` modulo ``2**64`` (the seed of image ``k`` under per-image conventions); ``k`` may be negative."""
    return (seed + k) % (MAX_SEED + 1)


def mix64(z: int) -> int:
    """SplitMix64's finaliser of ``z mod 2**64``: a bijection of 64-bit integers that scatters nearby inputs."""
    z &= MAX_SEED
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MAX_SEED
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MAX_SEED
    return z ^ (z >> 31)


def seed32(seed: int) -> int:
    """A seed in ``[0, 2**32)`` for APIs that take no more (numpy's ``RandomState``, scikit-learn).

    A seed below ``2**32`` is returned as it is, so such a seed means what it always meant to
    those APIs; a larger seed becomes the high half of :func:`mix64` of it, so every bit matters
    and ``s`` and ``s + 2**32`` give different streams (``% 2**32`` would make them equal).
    Like any map onto fewer bits it has collisions (a pair of seeds collides with odds 2**-32).

    Args:
        seed: a seed already checked by :func:`check_seed`.
    """
    return seed if seed < 2**32 else mix64(seed) >> 32


def cpu_generator(seed: int) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with :func:`seed32` ``(seed)``: every bit of ``seed`` matters.

    For a seed below ``2**32`` this is ``torch.Generator().manual_seed(seed)``.

    Args:
        seed: a seed already checked by :func:`check_seed`.
    """
    return torch.Generator("cpu").manual_seed(seed32(seed))
