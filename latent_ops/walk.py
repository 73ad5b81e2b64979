"""Latent walks: N frames through K keyframes in one call, with easing curves and seamless loops.

Frames are spread evenly over the keyframe segments (``K - 1`` of them, or ``K`` with
``loop=True``, the last one going back to keyframe 0). Easing is applied **within each
segment**, so with ``"ease_in_out"`` the walk slows down at every keyframe. ``"constant_angular"``
instead spreads frames over the whole path in proportion to each segment's angle (its length
for ``method="lerp"``), so consecutive frames are the same angle apart everywhere.

Frame 0 is keyframe 0 exactly; without a loop the last frame is the last keyframe exactly; with
a loop the last frame stops one step short of keyframe 0, so a GIF wraps without a repeated
frame. An intermediate keyframe appears exactly when a frame lands on it: when ``frames - 1``
(``frames`` with a loop) is a multiple of the segment count, for the index-based easings.

Per-sample interpolation makes every frame a linear combination of two keyframes, so the whole
walk is planned from K norms and K dot products: a ``(frames, K)`` weight matrix
(:func:`walk_weights`). :func:`walk` then writes each segment's frames as
``(wa + wb) * lerp(xa, xb, wb / (wa + wb))`` in cache-sized blocks of rows: one streaming pass
over the output plus an in-cache one, no per-frame Python loop and no temporaries. (A BLAS
matmul of the weights by the keyframes is 2-3x slower on CPU: GEMMs with K = 2..4 are not what
BLAS is tuned for.)
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

import numpy as np
import torch
from torch import Tensor

from . import progress
from .interp import MAGNITUDES, Magnitude, _check_choice, as_tensor, check_finite, pair_weights, work_dtype
from .latents import Latent
from .limits import check_elements, excerpt

Easing = Literal["linear", "smoothstep", "cosine", "ease_in", "ease_out", "ease_in_out", "constant_angular"]
EASINGS: tuple[str, ...] = (
    "linear",
    "smoothstep",
    "cosine",
    "ease_in",
    "ease_out",
    "ease_in_out",
    "constant_angular",
)
Method = Literal["slerp", "lerp"]
METHODS: tuple[str, ...] = ("slerp", "lerp")


def ease(u: Tensor, easing: str, power: float = 2.0) -> Tensor:
    """Map positions ``u`` in ``[0, 1]`` through an easing curve; monotone, ``0 -> 0``, ``1 -> 1``.

    Curves: ``linear`` (and ``constant_angular``, whose work is done by :func:`walk_weights`),
    ``smoothstep`` ``3u^2 - 2u^3``, ``cosine`` ``(1 - cos(pi u)) / 2``, ``ease_in`` ``u^p``,
    ``ease_out`` ``1 - (1 - u)^p``, ``ease_in_out`` ``(2u)^p / 2`` mirrored at ``u = 1/2``.

    Args:
        u: float tensor of any shape, values in ``[0, 1]``.
        easing: one of :data:`EASINGS`.
        power: exponent ``p > 0`` of the ``ease_*`` curves.

    Returns:
        Tensor of ``u``'s shape and dtype, with exact 0 and 1 where ``u`` is 0 or 1.

    Raises:
        ValueError: unknown easing, ``power <= 0``, or ``u`` outside ``[0, 1]`` or not finite.
    """
    _check_choice("ease", "easing", easing, EASINGS)
    _check_power("ease", power)
    if not bool(((u >= 0) & (u <= 1)).all()):
        raise ValueError("ease: u must lie in [0, 1]")
    return _ease(u, easing, power)


def _ease(u: Tensor, easing: str, power: float) -> Tensor:
    """:func:`ease` without the argument checks (``u`` known to lie in ``[0, 1]``)."""
    if easing in ("linear", "constant_angular"):
        return u
    if easing == "smoothstep":
        v = u * u * (3.0 - 2.0 * u)
    elif easing == "cosine":
        v = 0.5 - 0.5 * torch.cos(math.pi * u)
    elif easing == "ease_in":
        v = u**power
    elif easing == "ease_out":
        v = 1.0 - (1.0 - u) ** power
    else:
        v = torch.where(u < 0.5, 0.5 * (2.0 * u) ** power, 1.0 - 0.5 * (2.0 - 2.0 * u) ** power)
    return torch.where(u <= 0, 0.0, torch.where(u >= 1, 1.0, v)).to(u.dtype)


def _check_power(func: str, power: float) -> None:
    if isinstance(power, bool) or not isinstance(power, (int, float)) or not (math.isfinite(power) and power > 0):
        raise ValueError(f"{func}: power must be a finite number > 0, got {excerpt(power)}")


def _check_walk(
    keyframes: Tensor | np.ndarray, frames: int, easing: str, method: str, magnitude: str, power: float
) -> tuple[Tensor, int]:
    """``(keyframes, frames)`` as a tensor (:func:`~latent_ops.interp.as_tensor`) and an int; raises if unfit."""
    keyframes = as_tensor("walk", "keyframes", keyframes)
    if keyframes.ndim < 2 or not keyframes.is_floating_point():
        raise ValueError(f"walk: keyframes must be a float tensor [K, ...], got {keyframes.dtype} "
                         f"{tuple(keyframes.shape)}")
    if keyframes.shape[0] < 2:
        raise ValueError(f"walk: needs at least 2 keyframes, got shape {tuple(keyframes.shape)}")
    if isinstance(frames, (bool, np.bool_)) or not isinstance(frames, (int, np.integer)) or frames < 2:
        raise ValueError(f"walk: frames must be an int >= 2, got {excerpt(frames)}")
    frames = int(frames)
    check_elements("walk", "the frames [frames, ...]", (frames, *keyframes.shape[1:]))
    _check_choice("walk", "easing", easing, EASINGS)
    _check_choice("walk", "method", method, METHODS)
    _check_choice("walk", "magnitude", magnitude, MAGNITUDES)
    _check_power("walk", power)
    return keyframes, frames


def _positions(lengths: Tensor | None, segments: int, frames: int, loop: bool) -> tuple[Tensor, Tensor]:
    """Segment index ``(F,)`` long and local position ``u`` ``(F,)`` float32 in ``[0, 1]`` per frame."""
    f = torch.arange(frames, dtype=torch.int64, device="cpu")
    den = frames if loop else frames - 1
    if lengths is None or float(lengths.sum()) <= 0:
        num = f * segments  # integer arithmetic: frames on keyframes get u == 0 exactly
        seg = torch.div(num, den, rounding_mode="floor")
        u = (num - seg * den).to(torch.float32) / den
    else:
        lengths = lengths.double()
        ends = torch.cumsum(lengths, 0)
        pos = f.double() * (float(ends[-1]) / den)
        seg = torch.searchsorted(ends, pos, right=True).clamp_max(segments - 1)
        span = lengths.index_select(0, seg)  # zero-length segments give u = 0 (clamped)
        u = ((pos - ends.index_select(0, seg) + span) / span.clamp_min(1e-300)).float().clamp(0.0, 1.0)
    if not loop:  # the last frame is the last keyframe
        seg[-1], u[-1] = segments - 1, 1.0
    return seg, u


class _Plan(NamedTuple):
    x: Tensor  # (K, D) keyframes in the work dtype (float32, or float64 for float64 input)
    counts: list[int]  # frames per segment; segment j goes from keyframe j to j + 1 (mod K)
    seg: Tensor  # (F,) long segment of each frame
    wa: Tensor  # (F,) weight of the segment's first keyframe
    wb: Tensor  # (F,) weight of its second keyframe


def _plan(
    keyframes: Tensor,
    frames: int,
    easing: str,
    loop: bool,
    method: str,
    magnitude: Magnitude,
    power: float,
    eps: float,
) -> _Plan:
    keyframes, frames = _check_walk(keyframes, frames, easing, method, magnitude, power)
    k = keyframes.shape[0]
    x = keyframes.reshape(k, -1).to(work_dtype(keyframes.dtype))
    norms = torch.linalg.vector_norm(x, dim=1)
    if not bool(torch.isfinite(norms).all()):  # NaN/Inf anywhere makes a norm non-finite
        check_finite("walk", "keyframes", keyframes)
        raise ValueError("walk: keyframes are too large (their norm overflows)")
    nxt = torch.cat((x[1:], x[:1])) if loop else x[1:]
    segments = nxt.shape[0]
    dots = torch.linalg.vecdot(x[:segments], nxt, dim=1)
    na, nb = norms[:segments], torch.cat((norms[1:], norms[:1])) if loop else norms[1:]
    lengths = None
    if easing == "constant_angular":
        if method == "slerp":
            cos = dots / (na * nb).clamp_min(torch.finfo(torch.float32).tiny)
            lengths = torch.acos(cos.clamp(-1.0, 1.0))
        else:
            lengths = torch.linalg.vector_norm(nxt - x[:segments], dim=1)
        lengths = lengths.cpu()
    seg, u = _positions(lengths, segments, frames, loop)
    counts = torch.bincount(seg, minlength=segments).tolist()
    seg, u = seg.to(x.device), _ease(u, easing, power).to(device=x.device, dtype=x.dtype)
    wa, wb = pair_weights(
        na.index_select(0, seg),
        nb.index_select(0, seg),
        dots.index_select(0, seg),
        u,
        spherical=method == "slerp",
        magnitude=magnitude,
        size=x.shape[1],
        eps=eps,
    )
    return _Plan(x, counts, seg, wa, wb)


def walk_weights(keyframes: Tensor, frames: int, *, easing: str = "linear", loop: bool = False,
                 method: Method = "slerp", magnitude: Magnitude = "slerp", power: float = 2.0,
                 eps: float = 1e-6) -> Tensor:
    """The ``(frames, K)`` matrix ``W`` with ``walk(...) == W @ keyframes.reshape(K, -1)``.

    Args: as :func:`walk`; ``eps`` is the parallel/antipodal threshold of
    :func:`latent_ops.interp.pair_weights`.

    Returns:
        ``(frames, K)`` float32 (float64 for float64 keyframes) on ``keyframes``' device; row ``f``
        has at most two non-zeros.

    Raises:
        ValueError: as :func:`walk`.
    """
    p = _plan(keyframes, frames, easing, loop, method, magnitude, power, eps)
    k = p.x.shape[0]
    w = torch.zeros(frames, k, dtype=p.x.dtype, device=p.x.device)
    rows = torch.arange(frames, device=p.x.device)
    w.index_put_((rows, p.seg), p.wa, accumulate=True)
    w.index_put_((rows, (p.seg + 1) % k), p.wb, accumulate=True)
    return w


_BLOCK_BYTES = 4 << 20  # rows per block: small enough for the second pass to hit the L2/L3 cache


def walk(keyframes: Tensor, frames: int, *, easing: str = "linear", loop: bool = False, method: Method = "slerp",
         magnitude: Magnitude = "slerp", power: float = 2.0, out: Tensor | None = None) -> Tensor:
    """Walk through ``K`` keyframes in ``frames`` frames (per-sample slerp or lerp per segment).

    Args:
        keyframes: ``[K, C, H, W]`` (any ``[K, ...]``) float tensor or numpy array, ``K >= 2``.
        frames: number of output frames, ``>= 2``.
        easing: one of :data:`EASINGS`, applied within each segment (see the module docstring).
        loop: add a segment from the last keyframe back to keyframe 0 and stop one frame short
            of it, so the sequence repeats seamlessly.
        method: ``"slerp"`` (directions on the sphere) or ``"lerp"`` (straight lines).
        magnitude: ``"slerp"`` (the method's own norm), ``"lerp"`` or ``"gaussian"``, as in
            :func:`latent_ops.interp.slerp` (with ``method="lerp"``, ``"slerp"`` is plain lerp).
        power: exponent of the ``ease_in``/``ease_out``/``ease_in_out`` curves.
        out: optional preallocated contiguous ``[frames, ...]`` tensor of ``keyframes``' dtype
            and device to write into (saves allocating and page-faulting the output); it must
            not overlap ``keyframes``.

    Returns:
        ``[frames, ...]`` tensor with ``keyframes``' dtype and device (``out`` if given).

    Raises:
        ValueError: keyframes that are not a tensor or array, fewer than 2 keyframes or frames,
            more than :data:`latent_ops.limits.MAX_ELEMENTS` output elements, NaN/Inf keyframes,
            unknown ``easing``/``method``/``magnitude``, ``power <= 0``, or an unsuitable ``out``.
    """
    keyframes = as_tensor("walk", "keyframes", keyframes)
    p = _plan(keyframes, frames, easing, loop, method, magnitude, power, 1e-6)
    frames = int(frames)
    shape = (frames, *keyframes.shape[1:])
    if out is not None and (
        tuple(out.shape) != shape
        or out.dtype != keyframes.dtype
        or out.device != keyframes.device
        or not out.is_contiguous()
    ):
        raise ValueError(
            f"walk: out must be a contiguous {keyframes.dtype} tensor of shape {shape} on {keyframes.device}, "
            f"got {out.dtype} {tuple(out.shape)} on {out.device}"
        )
    k, d = p.x.shape
    if out is None:
        out = torch.empty(shape, dtype=keyframes.dtype, device=keyframes.device)
    flat = out.view(frames, d)
    block = max(1, _BLOCK_BYTES // (p.x.element_size() * d))
    scratch = (
        None
        if out.dtype == p.x.dtype
        else torch.empty(min(block, frames), d, dtype=p.x.dtype, device=out.device)
    )
    # wa*xa + wb*xb == (wa + wb) * lerp(xa, xb, wb / (wa + wb)); weights are >= 0.
    scale = (p.wa + p.wb).unsqueeze(1)
    ratio = torch.where(scale > 0, p.wb.unsqueeze(1) / scale.clamp_min(torch.finfo(torch.float32).tiny), 0.0)
    rescale = not bool(((scale - 1).abs() <= 2.5e-7).all())  # within float32 rounding: lerp, one pass
    start = 0
    for j, count in enumerate(p.counts):  # one segment at a time, in cache-sized row blocks
        xa, xb = p.x[j], p.x[(j + 1) % k]
        for r in range(start, start + count, block):
            progress.check()
            e = min(r + block, start + count)
            o = flat[r:e] if scratch is None else scratch[: e - r]
            torch.lerp(xa, xb, ratio[r:e], out=o)  # one pass writing the block,
            if rescale:
                o.mul_(scale[r:e])  # a second one while it is still in cache
            if scratch is not None:
                flat[r:e].copy_(o)
        start += count
    return out


def walk_latent(keyframes: Latent, frames: int, *, easing: str = "linear", loop: bool = False,
                method: Method = "slerp", magnitude: Magnitude = "slerp", power: float = 2.0) -> Latent:
    """:func:`walk` on a LATENT dict (the Walk node's call).

    Args:
        keyframes: LATENT with ``samples`` ``[K >= 2, ...]``; an optional single ``noise_mask``
            (batch 1, or 2 dims) applies to every frame.
        frames, easing, loop, method, magnitude, power: as :func:`walk`.

    Returns:
        A new LATENT with the ``[frames, ...]`` walk as ``samples``, every other entry but
        ``batch_index`` (the frames are new samples, not items of the keyframe batch).

    Raises:
        ValueError: a per-keyframe ``noise_mask`` (it cannot apply to frames between keyframes),
            or as :func:`walk`.
    """
    mask = keyframes.get("noise_mask")
    if mask is not None and mask.ndim > 2 and mask.shape[0] != 1:
        raise ValueError(f"walk: keyframes has a per-keyframe noise_mask of shape {tuple(mask.shape)}; "
                         "only a single mask (batch 1) can apply to the walked frames")
    out = {k: v for k, v in keyframes.items() if k != "batch_index"}
    out["samples"] = walk(keyframes["samples"], frames, easing=easing, loop=loop, method=method,
                          magnitude=magnitude, power=power)
    return out
