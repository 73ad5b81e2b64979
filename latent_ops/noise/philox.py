"""CPU emulation of CUDA's Philox ``randn`` (AUTOMATIC1111's "NV" RNG source).

``torch.randn(..., device="cuda")`` draws from Philox-4x32-10 (Salmon et al., 2011, "Parallel
random numbers: as easy as 1, 2, 3") and maps two of the four 32-bit outputs of each counter
through Box-Muller. AUTOMATIC1111 re-implemented that on the CPU (``modules/rng_philox.py``) so
that "NV" noise is the same on any machine; this module follows the same algorithm, so seeds
written by A1111 with ``RNG: NV`` reproduce here. The per-element layout is:

* key = the seed as an unsigned 64-bit integer split into two 32-bit words (low, high);
* counter = ``(offset, 0, i, 0)`` for element ``i``; ``offset`` starts at 0 and grows by one
  per :meth:`PhiloxGenerator.randn` call (not per element);
* ten rounds with multipliers ``PHILOX_M`` and key increments ``PHILOX_W``;
* value = ``sqrt(-2 ln u) * sin(v)`` with ``u = x0 * 2^-32 + 2^-33`` and
  ``v = (x1 * 2^-32 + 2^-33) * 2 pi``, the constants rounded to float32 as in A1111 and the
  arithmetic done in float64, then rounded to float32.

The uint32 stream is exactly CUDA's (Random123 known-answer vectors pass). The float step matches
A1111 bit for bit; CUDA itself does Box-Muller in float32 with its own ``logf``/``sinf``, so A1111's
NV noise (and ours) is close to, not equal to, real CUDA noise.

Fidelity to ``torch.randn(..., device="cuda")``, measured on one NVIDIA H200 (torch 2.11, issue 15):

* within 1.1e-5 absolute, up to 43 float32 ulps (<= 2.4e-7 on the 12 values A1111 documents for
  seed 0), for every element of a draw no larger than the GPU's resident thread count;
* past that count the values are unrelated: torch's CUDA kernel launches at most
  ``multiprocessors x max threads per multiprocessor`` threads and each thread strides through
  the tensor, so element ``i`` beyond the first grid gets another counter than the ``(offset, 0,
  i, 0)`` modelled here. The count is per GPU model: 132 x 2048 = 270,336 elements on an H100 SXM
  or H200 (fewer on smaller GPUs). One image's noise is one draw, so SD/SDXL latents (16,384 and
  65,536 elements) are inside it and a 4096 px SD latent (1,048,576) is not. Modelling that grid
  layout (a parameter for the multiprocessor count) has not been done: it needs a GPU to verify.

Version: ``PHILOX_VERSION`` (bumped if the output of any seed ever changes).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from ..seeds import check_seed

PHILOX_VERSION = 1
"""Version of the stream produced by :class:`PhiloxGenerator` (randn and rand)."""

PHILOX_M = (0xD2511F53, 0xCD9E8D57)
"""Philox-4x32 round multipliers."""

PHILOX_W = (0x9E3779B9, 0xBB67AE85)
"""Philox-4x32 key schedule increments (Weyl sequence)."""

_MASK32 = 0xFFFFFFFF
_TWO_POW32_INV = float(np.float32(2.3283064e-10))
_TWO_POW32_INV_2PI = float(np.float32(2.3283064e-10 * 6.2831855))
_HALF_TWO_POW32_INV = float(np.float32(2.3283064e-10) / np.float32(2.0))
_HALF_TWO_POW32_INV_2PI = float(np.float32(2.3283064e-10 * 6.2831855) / np.float32(2.0))
_MAX_ELEMENTS = 2**32


def _mulhilo(a: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """High and low 32-bit words of ``a * m`` for uint32 ``a`` (N,)."""
    prod = a.astype(np.uint64) * np.uint64(m)
    return (prod >> np.uint64(32)).astype(np.uint32), (prod & np.uint64(_MASK32)).astype(np.uint32)


def philox4x32(counter: np.ndarray, key: np.ndarray, rounds: int = 10) -> np.ndarray:
    """Philox-4x32 block function, vectorised over N counters.

    Args:
        counter: uint32 array (4, N), the counter words of each element (not modified).
        key: uint32 array (2, N), the key words of each element (not modified).
        rounds: number of rounds (10 for Philox-4x32-10).

    Returns:
        uint32 array (4, N) of random words.
    """
    c0, c1, c2, c3 = (counter[i].astype(np.uint32).copy() for i in range(4))
    k0, k1 = key[0].astype(np.uint32).copy(), key[1].astype(np.uint32).copy()
    w0, w1 = np.uint32(PHILOX_W[0]), np.uint32(PHILOX_W[1])
    for r in range(rounds):
        hi0, lo0 = _mulhilo(c0, PHILOX_M[0])
        hi1, lo1 = _mulhilo(c2, PHILOX_M[1])
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
        if r < rounds - 1:
            k0 = k0 + w0  # uint32 arithmetic wraps modulo 2**32
            k1 = k1 + w1
    return np.stack([c0, c1, c2, c3])


def box_muller(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """First Box-Muller normal of each pair of uint32 words, as CUDA/A1111 compute it.

    Args:
        x, y: uint32 arrays of equal shape.

    Returns:
        float32 array of the same shape.
    """
    u = x.astype(np.float64) * _TWO_POW32_INV + _HALF_TWO_POW32_INV
    v = y.astype(np.float64) * _TWO_POW32_INV_2PI + _HALF_TWO_POW32_INV_2PI
    return (np.sqrt(-2.0 * np.log(u)) * np.sin(v)).astype(np.float32)


def _numel(shape: Sequence[int]) -> int:
    n = 1
    for s in shape:
        if int(s) < 0:
            raise ValueError(f"philox: negative dimension in shape {tuple(shape)}")
        n *= int(s)
    if n > _MAX_ELEMENTS:
        raise ValueError(f"philox: {n} elements in shape {tuple(shape)} exceed the 2**32 counter range")
    return n


class PhiloxGenerator:
    """A seeded Philox stream that imitates ``torch.randn(..., device="cuda")`` on the CPU.

    Each :meth:`randn` or :meth:`rand` call uses the next ``offset`` (as A1111's generator does),
    so two calls never repeat values. The generator draws on the CPU and returns float32 tensors.

    Args:
        seed: integer in ``[0, 2**64)`` (checked here, as ``torch.Generator.manual_seed`` checks its own).

    Raises:
        ValueError: if the seed is not an integer in that range.
    """

    def __init__(self, seed: int) -> None:
        self.seed = check_seed(seed, "PhiloxGenerator: seed")
        self.offset = 0

    def _words(self, n: int) -> np.ndarray:
        counter = np.zeros((4, n), dtype=np.uint32)
        counter[0] = self.offset & _MASK32
        counter[2] = np.arange(n, dtype=np.uint32)
        key = np.empty((2, n), dtype=np.uint32)
        key[0] = self.seed & _MASK32
        key[1] = self.seed >> 32
        self.offset += 1
        return philox4x32(counter, key)

    def randn(self, shape: Sequence[int]) -> Tensor:
        """Standard normal float32 tensor of ``shape`` (A1111 ``rng_philox.Generator.randn``)."""
        n = _numel(shape)
        g = self._words(n)
        return torch.from_numpy(box_muller(g[0], g[1])).reshape(tuple(int(s) for s in shape))

    def rand(self, shape: Sequence[int]) -> Tensor:
        """Uniform float32 tensor in ``(0, 1)`` of ``shape``.

        An extension of ours for non-Gaussian noise types: ``u = x0 * 2^-32 + 2^-33`` (the same
        ``u`` Box-Muller uses). It is *not* CUDA's ``torch.rand`` stream.
        """
        n = _numel(shape)
        g = self._words(n)
        u = g[0].astype(np.float64) * _TWO_POW32_INV + _HALF_TWO_POW32_INV
        # float32 rounding would turn the largest u (1 - 2**-33) into 1.0: keep the interval open.
        out = np.minimum(u.astype(np.float32), np.nextafter(np.float32(1.0), np.float32(0.0)))
        return torch.from_numpy(out).reshape(tuple(int(s) for s in shape))
