"""What a traversal sweeps: the positions, the values they give from reference statistics, indices.

The sweep range is a fixed ``interval`` of values, multiples of a coordinate's fitted ``std`` or
``quantile`` levels in [0, 1]; statistics are fitted per coordinate over the rows of a reference
``(M, D)`` matrix (items x positions). Index selections such as ``"0-3, 7"`` pick the channels or
components to sweep.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

from ..limits import MAX_INDICES, MAX_STEPS, check_at_most, excerpt

RangeMode = Literal["interval", "std", "quantile"]
Op = Literal["offset", "replace"]
RANGE_MODES: tuple[str, ...] = ("interval", "std", "quantile")
OPS: tuple[str, ...] = ("offset", "replace")


def check_range(lo: float, hi: float, steps: int, mode: str) -> None:
    """Raise ``ValueError`` (naming ``traverse`` and the value) for a bad sweep range.

    Raises:
        ValueError: ``mode`` not in :data:`RANGE_MODES`, ``steps`` not an int in
            ``1 .. latent_ops.limits.MAX_STEPS``, a non-finite
            ``lo``/``hi``, or quantile levels outside [0, 1].
    """
    if mode not in RANGE_MODES:
        raise ValueError(f"traverse: mode must be one of {RANGE_MODES}, got {mode!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= MAX_STEPS:
        raise ValueError(f"traverse: steps must be an int >= 1, got {excerpt(steps)} (at most {MAX_STEPS})")
    for name, v in (("lo", lo), ("hi", hi)):
        if not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"traverse: {name} must be a finite number, got {v!r}")
    if mode == "quantile" and not (0.0 <= lo <= 1.0 and 0.0 <= hi <= 1.0):
        raise ValueError(f"traverse: quantile mode needs lo and hi in [0, 1], got lo={lo}, hi={hi}")


def sweep_positions(lo: float, hi: float, steps: int, *, pingpong: bool = False) -> Tensor:
    """Evenly spaced sweep positions from ``lo`` to ``hi``, optionally back again.

    Args:
        lo, hi: first and last position (``lo > hi`` sweeps downwards).
        steps: positions from ``lo`` to ``hi`` inclusive, >= 1.
        pingpong: append the interior positions in reverse, ``lo .. hi .. (one before lo)``, so
            that repeating the sequence loops seamlessly without showing an endpoint twice.

    Returns:
        ``(S,)`` float64 with ``S = steps``, or ``2 * steps - 2`` with ping-pong (``steps >= 2``).

    Raises:
        ValueError: ``steps < 1`` or a non-finite ``lo``/``hi``.
    """
    check_range(lo, hi, steps, "interval")
    pos = torch.linspace(float(lo), float(hi), steps, dtype=torch.float64)
    if pingpong and steps > 2:
        pos = torch.cat([pos, pos[1:-1].flip(0)])
    return pos


def quantiles(x: Tensor, q: Tensor) -> Tensor:
    """Per-column quantiles with linear interpolation (numpy's default ``method="linear"``).

    Args:
        x: ``(M, D)`` samples of ``D`` coordinates, ``M >= 1``.
        q: ``(S,)`` levels in [0, 1].

    Returns:
        ``(D, S)`` float64. Unlike ``torch.quantile`` this has no input-size limit.
    """
    xs = x.detach().to(torch.float64).sort(dim=0).values
    m = xs.shape[0]
    pos = q.to(torch.float64).clamp(0.0, 1.0) * (m - 1)
    i0 = pos.floor().long().clamp(0, m - 1)
    i1 = (i0 + 1).clamp(max=m - 1)
    frac = (pos - i0).unsqueeze(1)
    return (xs[i0] + frac * (xs[i1] - xs[i0])).T.contiguous()


def sweep_values(coords: Tensor, mode: RangeMode, lo: float, hi: float, steps: int, *, op: Op = "offset",
                 pingpong: bool = False, scale: Tensor | None = None) -> Tensor:
    """The amounts to apply along each of ``D`` coordinates, from their reference statistics.

    With positions ``p`` from :func:`sweep_positions`, offset / replace amounts are:
    interval ``p`` / ``p``; std ``p * std`` / ``mean + p * std``; quantile ``Q(p) - median``
    (so 0.5 is a no-op) / ``Q(p)``. ``std`` is the unbiased (N-1) std of each column of ``coords``.

    Args:
        coords: ``(M, D)`` reference values of each coordinate (rows = items x positions).
        mode, lo, hi, steps, pingpong: the sweep (quantile mode: ``lo``, ``hi`` in [0, 1]).
        op: ``"offset"`` or ``"replace"``.
        scale: optional ``(D,)`` std to use instead of fitting it (PCA passes
            ``sqrt(explained_variance)``).

    Returns:
        ``(D, S)`` float64.

    Raises:
        ValueError: bad range, NaN/Inf in ``coords``, or fewer than 2 rows for ``std`` mode.
    """
    check_range(lo, hi, steps, mode)
    if op not in OPS:
        raise ValueError(f"traverse: op must be one of {OPS}, got {op!r}")
    if coords.ndim != 2 or coords.shape[0] < 1:
        raise ValueError(f"sweep_values: coords must be (M >= 1, D), got shape {tuple(coords.shape)}")
    if not torch.isfinite(coords).all():
        raise ValueError("traverse: reference contains NaN or Inf")
    pos = sweep_positions(lo, hi, steps, pingpong=pingpong)
    d = coords.shape[1]
    c = coords.detach().to(torch.float64)
    if mode == "interval":
        return pos.expand(d, -1).clone()
    if mode == "quantile":
        q = quantiles(c, pos)
        return q - quantiles(c, torch.tensor([0.5], dtype=torch.float64)) if op == "offset" else q
    if scale is None:
        if c.shape[0] < 2:
            raise ValueError(f"traverse: std mode needs at least 2 reference values, got {c.shape[0]}")
        scale = c.std(dim=0)
    spread = pos.unsqueeze(0) * scale.to(torch.float64).reshape(d, 1)
    return spread if op == "offset" else c.mean(dim=0).unsqueeze(1) + spread


def parse_indices(text: str, count: int, name: str = "channels") -> list[int]:
    """Parse ``"all"`` (or empty), ``"0,1,2"`` or ranges like ``"0-3, 7"`` into indices.

    Args:
        text: the selection. count: number of valid indices (``0 .. count-1``). name: the
            parameter named in errors.

    Returns:
        The indices in the order given.

    Raises:
        ValueError: unparsable text, an index outside ``0 .. count-1`` (checked on each range
            before it is expanded) or more than :data:`latent_ops.limits.MAX_INDICES` indices.
    """
    text = text.strip().lower()
    if text in ("", "all"):
        return list(range(count))
    out: list[int] = []
    for token in re.split(r"[,\s;]+", text):
        if not token:
            continue
        m = re.fullmatch(r"(\d{1,18})(?:-(\d{1,18}))?", token)
        if m is None:
            raise ValueError(f"{name}: cannot parse {excerpt(token, 40)} in {excerpt(text)}; "
                             "use 'all', '0,1,2' or '0-3'")
        a = int(m.group(1))
        b = int(m.group(2)) if m.group(2) is not None else a
        if max(a, b) >= count:  # before expanding: '0-100000000' must not build a list first
            raise ValueError(f"traverse: {name} must be indices in 0..{count - 1}, got {token!r} in {excerpt(text)}")
        check_at_most("traverse", f"the number of {name} in {excerpt(text, 40)}", len(out) + abs(b - a) + 1,
                      MAX_INDICES)
        out.extend(range(a, b + 1) if a <= b else range(a, b - 1, -1))
    return check_indices(out, count, name)


def check_indices(indices: Sequence[int] | None, count: int, name: str) -> list[int]:
    """``indices`` as a list of ints in ``0 .. count-1`` (``None`` = all of them).

    Raises:
        ValueError: an empty list, an index out of range or more than
            :data:`latent_ops.limits.MAX_INDICES` indices, naming ``name``.
    """
    if indices is None:
        return list(range(count))
    check_at_most("traverse", f"the number of {name}", len(indices), MAX_INDICES)
    idx = [int(i) for i in indices]
    bad = [i for i in idx if not 0 <= i < count]
    if not idx or bad:
        raise ValueError(f"traverse: {name} must be a non-empty list of indices in 0..{count - 1}, "
                         f"got {excerpt(list(indices))}")
    return idx
