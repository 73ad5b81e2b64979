"""Brownian trees: one seeded Brownian motion per image, queried at any pair of times.

SDE samplers (``dpmpp_sde``, ``dpmpp_2m_sde``, ``dpmpp_3m_sde``) ask for the noise of an interval
``(sigma, sigma_next)``, and ``dpmpp_sde`` asks twice per step for nested intervals. Independent
draws make those two noises unrelated and the result ends with too little variance; a Brownian
motion ``W`` answers every query with ``(W(b) - W(a)) / sqrt(|b - a|)``, so nested queries are
correlated exactly as the SDE needs and disjoint ones are independent.

Layout (:data:`BROWNIAN_VERSION` 1) is the tree that torchsde's ``BrownianTree`` builds with its
defaults (``tol=1e-6``, ``pool_size=24``, no Lévy area), written out here in torch and numpy, so
one seed gives the same motion as ComfyUI's and k-diffusion's ``BrownianTreeNoiseSampler`` and as
AUTOMATIC1111 (whose RNG setting picks the generator, ``"cpu"`` or ``"nv"`` here):

- Times are rounded to 6 decimals. The root interval ``[t0, t1]`` has the increment
  ``randn(s_root) * sqrt(t1 - t0)`` (unrounded ends), ``s_root`` the first word of
  ``numpy.random.SeedSequence(entropy=seed, pool_size=24).generate_state(3)``.
- A node ``[a, e]`` with increment ``W`` is split at its rounded midpoint ``m``: the left child
  gets the Brownian-bridge draw ``(m - a) W / (e - a) + sqrt((m - a)(e - m) / (e - a)) z`` with
  ``z = randn(s)``, the right child ``W`` minus that. ``s`` is the first word of
  ``SeedSequence(entropy=seed, spawn_key=(key, depth), pool_size=24).generate_state(4)``, where
  the root has ``key = depth = 0`` and a child has ``key = 2 key_parent + (0 left | 1 right)``.
- ``W(b) - W(a)`` is the sum, left to right, of the largest nodes that tile ``[a, b]``.

``randn(seed, shape)`` is a fresh generator per node: torch's CPU generator (``"cpu"``) or
:class:`latent_ops.noise.philox.PhiloxGenerator` (``"nv"``), float32.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from . import variation
from .philox import PhiloxGenerator
from .step import StepPlan

__all__ = ["BROWNIAN_VERSION", "BrownianNoise", "BrownianTree", "RandnFn", "SOURCES", "randn_for"]

BROWNIAN_VERSION = 1
"""Version of the tree layout above (bumped if any seed's motion ever changes)."""

RandnFn = Callable[[int, tuple[int, ...]], Tensor]
"""``randn(seed, shape) -> float32 CPU tensor`` from a fresh generator seeded ``seed``."""

_DIGITS = 6
"""Times are rounded to this many decimals (torchsde's ``tol=1e-6``)."""
_POOL_SIZE = 24
_CACHE = 64
"""Node increments kept per tree (consecutive queries share most of their path)."""


def _torch_randn(seed: int, shape: tuple[int, ...]) -> Tensor:
    return torch.randn(shape, generator=torch.Generator("cpu").manual_seed(int(seed)), dtype=torch.float32)


def _philox_randn(seed: int, shape: tuple[int, ...]) -> Tensor:
    return PhiloxGenerator(int(seed)).randn(shape)


SOURCES: dict[str, RandnFn] = {"cpu": _torch_randn, "nv": _philox_randn}
"""Node generators by source name: torch's CPU generator, or the CUDA Philox emulation (A1111 NV)."""


def randn_for(source: str) -> RandnFn:
    """The node generator of ``source`` (``"cpu"`` or ``"nv"``). Raises: ValueError for another name."""
    if source not in SOURCES:
        raise ValueError(f"BrownianTree: source must be one of {sorted(SOURCES)}, got {source!r}")
    return SOURCES[source]


def _round(t: float) -> float:
    return round(t, _DIGITS)


class _Node:
    """One interval of the tree; children are made (at the rounded midpoint) when first needed."""

    __slots__ = ("start", "end", "key", "depth", "mid", "seed", "left", "right")

    def __init__(self, start: float, end: float, key: int, depth: int) -> None:
        self.start, self.end, self.key, self.depth = start, end, key, depth
        self.mid: float | None = None
        self.seed = 0
        self.left: _Node | None = None
        self.right: _Node | None = None

    def split(self, entropy: int) -> tuple[_Node, _Node]:
        if self.left is None or self.right is None:
            self.mid = _round(0.5 * (self.end + self.start))
            seq = np.random.SeedSequence(entropy=entropy, spawn_key=(self.key, self.depth), pool_size=_POOL_SIZE)
            self.seed = int(seq.generate_state(4)[0])
            self.left = _Node(self.start, self.mid, 2 * self.key, self.depth + 1)
            self.right = _Node(self.mid, self.end, 2 * self.key + 1, self.depth + 1)
        return self.left, self.right


class BrownianTree:
    """A Brownian motion ``W`` on ``[t0, t1]`` of one ``shape``, fixed by ``seed`` (see the module docstring).

    Args:
        seed: entropy in [0, 2**64) (ComfyUI and A1111 pass an image's seed).
        t0, t1: the interval, ``t0 < t1`` (samplers use ``sigma_min`` and ``sigma_max``).
        shape: the shape of each value, e.g. ``(C, H, W)`` for one image.
        source: ``"cpu"`` or ``"nv"`` (the node generator, see :data:`SOURCES`).

    Raises:
        ValueError: on a negative seed, ``t0 > t1`` or a non-finite time, or an unknown source.
            (``t0 == t1`` is a motion that only answers zeros, as torchsde's.)
    """

    def __init__(self, seed: int, t0: float, t1: float, shape: Sequence[int], *,
                 source: Literal["cpu", "nv"] = "cpu") -> None:
        if not isinstance(seed, int) or seed < 0:
            raise ValueError(f"BrownianTree: seed must be a non-negative integer, got {seed!r}")
        t0, t1 = float(t0), float(t1)
        if not (math.isfinite(t0) and math.isfinite(t1) and t0 <= t1):
            raise ValueError(f"BrownianTree: need finite t0 <= t1, got t0={t0}, t1={t1}")
        self.randn = randn_for(source)
        self.seed = seed
        self.shape = tuple(int(s) for s in shape)
        self.root = _Node(_round(t0), _round(t1), 0, 0)
        root_seed = int(np.random.SeedSequence(entropy=seed, pool_size=_POOL_SIZE).generate_state(3)[0])
        self._root_w = self.randn(root_seed, self.shape) * math.sqrt(t1 - t0)
        self._cache: OrderedDict[int, Tensor] = OrderedDict()

    @property
    def t0(self) -> float:
        return self.root.start

    @property
    def t1(self) -> float:
        return self.root.end

    def increment(self, a: float, b: float) -> Tensor:
        """``W(b) - W(a)`` for ``a <= b``, float32 CPU tensor of ``shape`` (zeros when equal after rounding).

        Times outside ``[t0, t1]`` are clamped to it. Raises: ValueError if ``a > b``.
        """
        a, b = float(a), float(b)
        if a > b:
            raise ValueError(f"BrownianTree.increment: need a <= b, got a={a}, b={b}")
        lo, hi = self.root.start, self.root.end
        a, b = min(max(_round(a), lo), hi), min(max(_round(b), lo), hi)
        if a == b:
            return torch.zeros(self.shape, dtype=torch.float32)
        parts: list[Tensor] = []
        self._collect(self.root, self._root_w, a, b, parts)
        total = parts[0]
        for w in parts[1:]:
            total = total + w
        return total

    def _collect(self, node: _Node, w: Tensor, a: float, b: float, out: list[Tensor]) -> None:
        """Append the increments of the largest nodes under ``node`` that tile ``[a, b]``, left to right."""
        while not (a == node.start and b == node.end):
            left, right = node.split(self.seed)
            w_left, w_right = self._children(node, w)
            mid = left.end
            if b <= mid:
                node, w = left, w_left
            elif a >= mid:
                node, w = right, w_right
            else:
                self._collect(left, w_left, a, mid, out)
                node, w, a = right, w_right, mid
        out.append(w)

    def _children(self, node: _Node, w: Tensor) -> tuple[Tensor, Tensor]:
        """The Brownian-bridge split of ``node``'s increment ``w`` at its midpoint (cached)."""
        key = id(node)
        hit = self._cache.get(key)
        if hit is None:
            assert node.mid is not None
            h_reciprocal = 1 / (node.end - node.start)
            left_diff, right_diff = node.mid - node.start, node.end - node.mid
            mean = left_diff * w * h_reciprocal
            std = math.sqrt(left_diff * right_diff * h_reciprocal)
            hit = mean + std * self.randn(node.seed, self.shape)
            self._cache[key] = hit
            if len(self._cache) > _CACHE:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        return hit, w - hit


class BrownianNoise:
    """Per-image Brownian step noise: the noise sampler ``noise(sigma, sigma_next)`` of an SDE sampler.

    One :class:`BrownianTree` per image on ``[sigma_min, sigma_max]`` seeded with the image's seed
    (and one per image and variation layer), each of shape ``like.shape[1:]``. A call returns
    ``(W(sigma_next) - W(sigma)) / sqrt(|sigma_next - sigma|)`` per image, which is what ComfyUI's
    ``BrownianTreeNoiseSampler(x, sigma_min, sigma_max, seed=[...], cpu=True)`` returns with one
    seed per image (and, for one image, with ``seed=s``). Variation layers are slerped in per image
    (:func:`latent_ops.noise.variation.mix_noise`), so strength 1 is the variation seed's own noise.

    Args:
        plan: the batch's seeds, variation layers and source (:func:`latent_ops.noise.conventions.step_plan`).
        like: the latent being sampled, ``[B, ...]`` with ``B == len(plan.seeds)``; noise comes back
            in its shape, dtype and device.
        sigma_min, sigma_max: the interval (k-diffusion: the smallest positive sigma and the largest).

    Raises:
        ValueError: if the batch size differs from the plan's, or on a bad interval.
    """

    def __init__(self, plan: StepPlan, like: Tensor, sigma_min: float | Tensor, sigma_max: float | Tensor) -> None:
        if like.dim() < 2 or like.shape[0] != len(plan.seeds):
            raise ValueError(f"BrownianNoise: like has shape {tuple(like.shape)} but there are {len(plan.seeds)} seeds")
        lo, hi = float(sigma_min), float(sigma_max)
        shape = tuple(like.shape[1:])
        self.like = like
        self.trees = [BrownianTree(s, lo, hi, shape, source=plan.source) for s in plan.seeds]
        self.layers = [(w, [BrownianTree(s, lo, hi, shape, source=plan.source) for s in seeds])
                       for seeds, w in plan.layers if w != 0.0]

    takes_host_sigmas = True
    """Samplers may pass Python floats (the host copies of their sigmas), so no call reads the device."""

    def __call__(self, sigma: float | Tensor, sigma_next: float | Tensor) -> Tensor:
        """Unit-variance noise of the interval between ``sigma`` and ``sigma_next``, shaped like ``like``.

        Either may be a Python float or a tensor (read on the host: a device synchronisation); both
        are taken at float32. Zeros when the two are equal (ComfyUI's divides 0 by 0 there).
        """
        s, sn = _float32(sigma), _float32(sigma_next)
        if s == sn:
            return torch.zeros(self.like.shape, dtype=self.like.dtype, device=self.like.device)
        sign = 1 if s <= sn else -1
        a, b = (s, sn) if sign == 1 else (sn, s)
        scale = (torch.tensor(sn, dtype=torch.float32) - torch.tensor(s, dtype=torch.float32)).abs().sqrt()
        images = []
        for k, tree in enumerate(self.trees):
            x = tree.increment(a, b).unsqueeze(0) * sign / scale
            for weight, trees in self.layers:
                other = trees[k].increment(a, b).unsqueeze(0) * sign / scale
                x = variation.mix_noise(x, other, weight, method="slerp")
            images.append(x)
        if not images:
            return torch.zeros(self.like.shape, dtype=self.like.dtype, device=self.like.device)
        return torch.cat(images).to(dtype=self.like.dtype, device=self.like.device)


def _float32(value: float | Tensor) -> float:
    """``value`` rounded to float32, as a Python float (a tensor is read on the host)."""
    if isinstance(value, Tensor):
        value = float(value.detach().cpu().float())
    return float(np.float32(value))
