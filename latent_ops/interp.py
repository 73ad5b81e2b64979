"""Linear and spherical interpolation of latents, with guards where slerp has no unique path.

One convention everywhere: ``t = 0`` gives the first input, ``t = 1`` the second. Everything is
computed in float32 (float64 for float64 inputs) whatever the input dtype, and returned in the
first input's dtype and device.

Every result is a per-vector linear combination ``wa * a + wb * b``: :func:`pair_weights` turns
norms and dot products into the two weights, so a batch of interpolations (see
:mod:`latent_ops.walk`) is planned from a few scalars and written in one sweep over the output.

Guards (the copies of the BlenderNeko slerp in the ecosystem return NaN in the first two cases):

- parallel, identical or scaled-parallel vectors (``1 - cos < eps``): slerp equals lerp there,
  so lerp is used;
- antipodal vectors (``1 + cos < eps``): no unique great circle exists; we lerp instead of
  inventing a third direction, which keeps every output a combination of ``a`` and ``b``. For
  ``b = -a`` the path goes through the origin (``magnitude="slerp"``), or keeps its norm and
  flips direction at ``t = 1/2``, where it is zero (``"lerp"``, ``"gaussian"``);
- a zero vector: lerp, i.e. a linear fade of the magnitude along the other vector's direction.

Magnitude policies (``magnitude=``):

- ``"slerp"``: the textbook formula on the raw vectors (what BlenderNeko's slerp computes when
  it is finite). Two independent Gaussians keep std ~1 at ``t = 0.5``; vectors with very
  different norms near the antipodal guard get large coefficients, as the formula implies.
- ``"lerp"``: slerp the directions and lerp the two norms (ComfyUI's ``LatentInterpolate`` does
  this with a normalised lerp of the directions).
- ``"gaussian"``: slerp the directions and give every output vector the norm ``sqrt(D)`` expected
  of ``N(0, I_D)`` noise, ``D`` the number of elements per vector. The endpoints are therefore
  the inputs rescaled to that norm, and a zero vector stays zero.

``t`` outside ``[0, 1]`` extrapolates for :func:`lerp` and is rejected by :func:`slerp` (its guard
branches have no meaningful extrapolation).
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from .latents import Latent
from .limits import excerpt

Granularity = Literal["sample", "pixel"]
Magnitude = Literal["slerp", "lerp", "gaussian"]

GRANULARITIES: tuple[str, ...] = ("sample", "pixel")
MAGNITUDES: tuple[str, ...] = ("slerp", "lerp", "gaussian")


def _check_choice(func: str, name: str, value: str, choices: tuple[str, ...]) -> None:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{func}: {name} must be one of {list(choices)}, got {excerpt(value)}")


def as_tensor(func: str, name: str, x: Tensor | np.ndarray) -> Tensor:
    """``x`` as a tensor: a tensor unchanged, a numpy array shared (``torch.from_numpy``).

    Raises:
        ValueError: naming ``func`` and ``name``, for ``None`` or anything else.
    """
    if isinstance(x, Tensor):
        return x
    if isinstance(x, np.ndarray):
        try:
            return torch.from_numpy(x)
        except TypeError as exc:  # object arrays, numpy dtypes torch lacks
            raise ValueError(f"{func}: {name} is a numpy array of dtype {x.dtype} ({exc})") from None
    raise ValueError(f"{func}: {name} must be a tensor (or numpy array), got {type(x).__name__}")


def check_finite(func: str, name: str, x: Tensor) -> None:
    """Raise ``ValueError`` naming ``func`` and ``name`` if ``x`` holds NaN or Inf."""
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{func}: {name} contains NaN or Inf")


def _check_pair(func: str, a: Tensor, b: Tensor, min_ndim: int, finite: bool = True) -> tuple[Tensor, Tensor]:
    """``(a, b)`` as tensors (:func:`as_tensor`) if they can be interpolated; raises otherwise."""
    a, b = as_tensor(func, "a", a), as_tensor(func, "b", b)
    if a.shape != b.shape:
        raise ValueError(
            f"{func}: a and b must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    if a.ndim < min_ndim:
        raise ValueError(f"{func}: inputs need at least {min_ndim} dims [B, ...], got shape {tuple(a.shape)}")
    if a.device != b.device:
        raise ValueError(f"{func}: a and b are on different devices ({a.device} and {b.device})")
    if not (a.is_floating_point() and b.is_floating_point()):
        raise ValueError(f"{func}: a and b must be floating point, got {a.dtype} and {b.dtype}")
    if finite:
        check_finite(func, "a", a)
        check_finite(func, "b", b)
    return a, b


def work_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype computations run in: float64 for float64 inputs, float32 for everything else."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _as_t(func: str, t: float | Tensor, batch: int, ndim: int, like: Tensor, *, unit: bool) -> Tensor:
    """``t`` in ``like``'s dtype and device, of shape ``(1,)*ndim`` or ``(batch, 1, ...)``, validated."""
    if t is None or isinstance(t, (str, bytes)):
        raise ValueError(f"{func}: t must be a float or a ({batch},) tensor, got {excerpt(t)}")
    try:
        tt = torch.as_tensor(t).to(device=like.device, dtype=like.dtype)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ValueError(f"{func}: t must be a float or a ({batch},) tensor, got {type(t).__name__} ({exc})") from None
    if tt.ndim == 0:
        tt = tt.reshape((1,) * ndim)
    elif tt.shape == (batch,):
        tt = tt.reshape((batch,) + (1,) * (ndim - 1))
    else:
        raise ValueError(f"{func}: t must be a float or a ({batch},) tensor, got shape {tuple(tt.shape)}")
    check_finite(func, "t", tt)
    if unit and bool(((tt < 0) | (tt > 1)).any()):
        raise ValueError(f"{func}: t must lie in [0, 1], got min {tt.min().item()} max {tt.max().item()}")
    return tt


def lerp(a: Tensor, b: Tensor, t: float | Tensor) -> Tensor:
    """Linear interpolation ``(1 - t) * a + t * b``; exact endpoints, extrapolates outside [0, 1].

    Args:
        a: ``[B, ...]`` float tensor (or numpy array), returned at ``t = 0``.
        b: same shape and device as ``a``, returned at ``t = 1``.
        t: python float, 0-dim tensor, or ``(B,)`` tensor (or array) of per-sample weights.

    Returns:
        ``[B, ...]`` tensor with ``a``'s dtype and device (computed in float32 or float64).

    Raises:
        ValueError: an input that is not a tensor or array (``None``), shapes or devices differ,
            ``t`` is ``None`` or has the wrong shape, or any input is NaN/Inf.
    """
    a, b = _check_pair("lerp", a, b, min_ndim=1)
    dtype = work_dtype(a.dtype)
    x = a.to(dtype)
    tt = _as_t("lerp", t, a.shape[0], a.ndim, x, unit=False)
    return torch.lerp(x, b.to(dtype), tt).to(a.dtype)


def pair_weights(
    na: Tensor,
    nb: Tensor,
    dot: Tensor,
    t: Tensor,
    *,
    spherical: bool = True,
    magnitude: Magnitude = "slerp",
    size: int,
    eps: float = 1e-6,
) -> tuple[Tensor, Tensor]:
    """Weights ``(wa, wb)`` such that the interpolation of vectors ``a`` and ``b`` is ``wa*a + wb*b``.

    Works on any broadcastable float shapes (one entry per vector pair and ``t``), so the
    data tensors are touched only by whoever applies the weights.

    Args:
        na, nb: Euclidean norms ``|a|`` and ``|b|``.
        dot: dot products ``<a, b>``.
        t: interpolation positions in ``[0, 1]``.
        spherical: slerp (True) or lerp (False) of the directions; with ``magnitude="slerp"``
            and ``spherical=False`` the result is a plain lerp.
        magnitude: ``"slerp"`` (the method's own norm), ``"lerp"`` (lerp of ``na``, ``nb``) or
            ``"gaussian"`` (norm ``sqrt(size)``); see the module docstring.
        size: number of elements ``D`` per vector (for ``"gaussian"``).
        eps: vectors count as parallel or antipodal when ``1 - |cos| < eps`` (an angle within
            ``sqrt(2 eps)`` of 0 or pi, about the resolution of a float32 cosine).

    Returns:
        ``(wa, wb)``: tensors of the broadcast shape. They are exactly ``(1, 0)`` at
        ``t = 0`` and ``(0, 1)`` at ``t = 1`` unless ``magnitude="gaussian"``.
    """
    _check_choice("pair_weights", "magnitude", magnitude, MAGNITUDES)
    tiny = torch.finfo(torch.float32).tiny
    prod = na * nb
    cos = (dot / prod.clamp_min(tiny)).clamp(-1.0, 1.0)
    flat = (prod == 0) | (1.0 - cos.abs() < eps)  # zero, parallel or antipodal: lerp
    ca, cb = 1.0 - t, t
    if spherical:
        theta = torch.acos(cos)
        sin = torch.sin(theta).masked_fill_(flat, 1.0)
        ca = torch.where(flat, ca, torch.sin(ca * theta) / sin)
        cb = torch.where(flat, cb, torch.sin(cb * theta) / sin)
    if magnitude == "slerp":
        wa, wb = ca, cb
    else:
        # ca, cb now weight the unit vectors; normalise their combination analytically.
        inv_a, inv_b = (na > 0) / na.clamp_min(tiny), (nb > 0) / nb.clamp_min(tiny)  # 0 for a zero vector
        ca, cb = ca * (na > 0), cb * (nb > 0)
        norm = torch.sqrt((ca * ca + cb * cb + 2.0 * ca * cb * cos).clamp_min(0.0))
        target = (1.0 - t) * na + t * nb if magnitude == "lerp" else math.sqrt(size)
        scale = torch.where(norm > 0, target / norm.clamp_min(tiny), 0.0)
        wa, wb = ca * scale * inv_a, cb * scale * inv_b
    if magnitude != "gaussian":  # exact endpoints
        end = (t == 0) | (t == 1)
        wa, wb = torch.where(end, 1.0 - t, wa), torch.where(end, t, wb)
    wa, wb, *_ = torch.broadcast_tensors(wa, wb, na, nb, dot, t)
    return wa, wb


def slerp_weights(a: Tensor, b: Tensor, t: float | Tensor, *, granularity: Granularity = "sample",
                  magnitude: Magnitude = "slerp", eps: float = 1e-6) -> tuple[Tensor, Tensor]:
    """The two coefficient tensors of :func:`slerp`: ``slerp(a, b, t) == wa * a + wb * b``.

    Args: as :func:`slerp`.

    Returns:
        ``(wa, wb)`` float32 (float64 for float64 ``a``) on ``a``'s device, of shape
        ``(B, 1, ..., 1)`` (``a.ndim`` dims) for ``"sample"`` and ``(B, 1, *spatial)`` for ``"pixel"``.

    Raises:
        ValueError: as :func:`slerp`.
    """
    a, _, _, wa, wb = _slerp_parts(a, b, t, granularity, magnitude, eps)
    if granularity == "sample":
        wa, wb = (w.reshape((a.shape[0],) + (1,) * (a.ndim - 1)) for w in (wa, wb))
    return wa, wb


def _vectors(a: Tensor, granularity: str, dtype: torch.dtype) -> Tensor:
    """Vectors along dim 1 in ``dtype``: ``[B, N]`` per sample, ``[B, C, *spatial]`` per pixel."""
    x = a.to(dtype)
    return x.flatten(1) if granularity == "sample" else x  # flatten: also for an empty batch


def _slerp_parts(a: Tensor, b: Tensor, t: float | Tensor, granularity: str, magnitude: Magnitude,
                 eps: float) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """:func:`slerp`'s checks, then ``a`` as a tensor, its vectors ``x``, ``y`` (see :func:`_vectors`)
    and weights ``wa``, ``wb``.

    ``wa``, ``wb`` are ``(B, 1)`` per sample, ``(B, 1, *spatial)`` per pixel.
    """
    _check_choice("slerp", "granularity", granularity, GRANULARITIES)
    _check_choice("slerp", "magnitude", magnitude, MAGNITUDES)
    a, b = _check_pair("slerp", a, b, min_ndim=2, finite=False)  # NaN/Inf are found from the norms, below
    dtype = work_dtype(a.dtype)
    x, y = _vectors(a, granularity, dtype), _vectors(b, granularity, dtype)
    tt = _as_t("slerp", t, x.shape[0], x.ndim, x, unit=True)
    na = torch.linalg.vector_norm(x, dim=1, keepdim=True)
    nb = torch.linalg.vector_norm(y, dim=1, keepdim=True)
    for name, v, n in (("a", x, na), ("b", y, nb)):
        if not bool(torch.isfinite(n).all()):  # NaN/Inf anywhere makes a norm non-finite
            check_finite("slerp", name, v)
            raise ValueError(f"slerp: {name} is too large (its norm overflows)")
    dot = torch.linalg.vecdot(x, y, dim=1).unsqueeze(1)
    wa, wb = pair_weights(na, nb, dot, tt, spherical=True, magnitude=magnitude, size=x.shape[1], eps=eps)
    return a, x, y, wa, wb


def slerp(a: Tensor, b: Tensor, t: float | Tensor, *, granularity: Granularity = "sample",
          magnitude: Magnitude = "slerp", eps: float = 1e-6) -> Tensor:
    """Spherical interpolation; ``t = 0`` gives ``a`` and ``t = 1`` gives ``b`` exactly.

    Args:
        a: ``[B, ...]`` float tensor or numpy array (``[B, C, *spatial]`` for
            ``granularity="pixel"``); ``B = 0`` gives an empty result.
        b: same shape and device as ``a``.
        t: python float, 0-dim tensor, or ``(B,)`` tensor (or array), all in ``[0, 1]``.
        granularity: ``"sample"``: one angle per batch item over all its elements;
            ``"pixel"``: one angle per position, over the channel vector (dim 1).
        magnitude: ``"slerp"``, ``"lerp"`` or ``"gaussian"`` (see the module docstring).
        eps: parallel/antipodal threshold on ``1 - |cos|`` (see :func:`pair_weights`).

    Returns:
        ``[B, ...]`` tensor with ``a``'s dtype and device, computed in float32 (float64 for
        float64 ``a``). Always finite.

    Raises:
        ValueError: an input that is not a tensor or array, shapes or devices differ (both
            shapes named), fewer than 2 dims, NaN/Inf in ``a``, ``b`` or ``t``, ``t`` missing,
            outside ``[0, 1]`` or of the wrong shape, or an unknown ``granularity``/``magnitude``.
    """
    a, x, y, wa, wb = _slerp_parts(a, b, t, granularity, magnitude, eps)
    out = x * wa
    out.addcmul_(y, wb)
    return out.reshape(a.shape).to(a.dtype)


def match_batch(a: Tensor, b: Tensor, names: tuple[str, str] = ("a", "b")) -> tuple[Tensor, Tensor]:
    """Broadcast a batch of one against a batch of ``B`` (as ComfyUI latent nodes do).

    Args:
        a, b: ``[Ba, ...]`` and ``[Bb, ...]`` tensors with equal trailing shapes.
        names: how to call the two inputs in the error message (e.g. node parameter names).

    Returns:
        ``(a, b)``, the one with batch 1 expanded (a view, no copy) when the batches differ.

    Raises:
        ValueError: trailing shapes differ, or batches differ and neither is 1.
    """
    if (
        a.ndim == 0
        or b.ndim == 0
        or a.shape[1:] != b.shape[1:]
        or (a.shape[0] != b.shape[0] and 1 not in (a.shape[0], b.shape[0]))
    ):
        raise ValueError(
            f"{names[0]} and {names[1]} do not match: shapes {tuple(a.shape)} and {tuple(b.shape)} "
            "(need equal shapes, or a batch of 1 against any batch)"
        )
    if a.shape[0] == 1 and b.shape[0] != 1:
        a = a.expand_as(b)
    elif b.shape[0] == 1 and a.shape[0] != 1:
        b = b.expand_as(a)
    return a, b


def _latent_pair(samples1: Latent, samples2: Latent) -> tuple[Latent, Tensor, Tensor]:
    """A copy of the LATENT whose batch the result has (``samples1`` unless it is the broadcast
    one) and the two ``samples`` tensors, a batch of 1 broadcast by :func:`match_batch`."""
    a, b = match_batch(samples1["samples"], samples2["samples"], ("samples1", "samples2"))
    base = samples1 if samples1["samples"].shape[0] == a.shape[0] else samples2
    return base.copy(), a, b


def lerp_latents(samples1: Latent, samples2: Latent, t: float | Tensor) -> Latent:
    """:func:`lerp` of two LATENT dicts (the Lerp node's call).

    Args:
        samples1, samples2: LATENTs with ``samples`` ``[B, ...]``, equal shapes or one batch of 1.
        t: as :func:`lerp`.

    Returns:
        A new LATENT: ``samples1``'s side entries (``noise_mask``, ``batch_index``, ...), or
        ``samples2``'s when ``samples1`` is the broadcast batch of 1; the inputs are not changed.

    Raises:
        ValueError: the shapes do not match (naming ``samples1`` and ``samples2``), or as :func:`lerp`.
    """
    out, a, b = _latent_pair(samples1, samples2)
    out["samples"] = lerp(a, b, t)
    return out


def slerp_latents(samples1: Latent, samples2: Latent, t: float | Tensor, *, granularity: Granularity = "sample",
                  magnitude: Magnitude = "slerp") -> Latent:
    """:func:`slerp` of two LATENT dicts (the Slerp node's call); side entries as :func:`lerp_latents`.

    Raises:
        ValueError: the shapes do not match (naming ``samples1`` and ``samples2``), or as :func:`slerp`.
    """
    out, a, b = _latent_pair(samples1, samples2)
    out["samples"] = slerp(a, b, t, granularity=granularity, magnitude=magnitude)
    return out
