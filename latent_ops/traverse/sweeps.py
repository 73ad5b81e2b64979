"""Latent dimension traversal: sweep one coordinate of a latent at a time, as a batch to decode.

Three kinds of coordinate, after disentanglement_lib's latent traversals adapted to spatial
diffusion latents ``[B, C, *spatial]`` (any channel count, any number of spatial dims):

- channel ``k``: the same value offset (or set) at every position of channel ``k``;
- a principal component of the per-position channel vectors of a reference batch (a
  ``C``-vector applied at every position);
- a whole-latent direction such as ``A - B``.

The values swept come from :mod:`.ranges`. Results come as a :class:`Traversal`: row-major
samples (rows = base item x swept coordinate, columns = values) plus labels such as
``"ch2 +1.5σ"``, ready for a VAE decode and :func:`latent_ops.media.images.grid`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ..limits import check_elements
from ..space.pca import fit_pca
from .ranges import Op, RangeMode, check_indices, sweep_positions, sweep_values


@dataclass(frozen=True)
class Traversal:
    """A traversal batch and its grid layout.

    Attributes:
        samples: ``[rows * cols, C, *spatial]`` latents in the input's dtype, row-major
            (sample ``r * cols + c`` is row ``r``, column ``c``).
        labels: one label per sample, e.g. ``"ch2 +1.5σ"`` (``"#1 ch2 +1.5σ"`` for base item 1
            of a batch).
        rows: base items x swept coordinates (item-major: all coordinates of item 0 first).
        cols: values per row (``2 * steps - 2`` with ping-pong and ``steps >= 2``, else ``steps``).
        row_labels: ``rows`` labels (``"ch2"``, ``"pc0 (41%)"``, ``"dir"``).
        col_labels: ``cols`` labels of the sweep positions (``"+1.5σ"``, ``"q0.25"``, ``"+0.5"``).
        values: ``(rows, cols)`` float32 amounts actually applied: the offset added along the
            coordinate, or the value the coordinate was set to.
        source: ``(rows,)`` int64 index of the base latent item each row was made from.
    """

    samples: Tensor
    labels: list[str]
    rows: int
    cols: int
    row_labels: list[str]
    col_labels: list[str]
    values: Tensor
    source: Tensor


def check_latent(x: Tensor, name: str, channels: int | None = None) -> Tensor:
    """``x`` if it is a finite float ``[B >= 1, C, *spatial]`` tensor (with ``channels`` channels).

    Raises:
        ValueError: naming ``name``: not a float tensor of at least 2 dims, a channel mismatch,
            or NaN/Inf.
    """
    if not isinstance(x, Tensor) or x.ndim < 2 or not x.is_floating_point() or x.shape[0] < 1:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"traverse: {name} must be a float tensor [B, C, *spatial], got {shape}")
    if channels is not None and x.shape[1] != channels:
        raise ValueError(f"traverse: {name} has {x.shape[1]} channels, latent has {channels} (shape {tuple(x.shape)})")
    if x.numel() and not torch.isfinite(x).all():
        raise ValueError(f"traverse: {name} contains NaN or Inf")
    return x


def _pixels(x: Tensor) -> Tensor:
    """``[B, C, *spatial]`` -> ``(B * prod(spatial), C)`` per-position channel vectors."""
    return x.detach().movedim(1, -1).reshape(-1, x.shape[1])


def _num(p: float, digits: int = 2, signed: bool = True) -> str:
    s = f"{p:+.{digits}f}" if signed else f"{p:.{digits}f}"
    s = s.rstrip("0")
    return s + "0" if s.endswith(".") else s


def _col_label(p: float, mode: str, op: str) -> str:
    if mode == "std":
        return f"{_num(p)}σ" if op == "offset" else f"μ{_num(p)}σ"
    if mode == "quantile":
        return f"q{_num(p, 3, signed=False)}"
    return _num(p) if op == "offset" else f"={_num(p, signed=False)}"


def _result(x: Tensor, out: Tensor, vals: Tensor, names: list[str], lo: float, hi: float, steps: int,
            pingpong: bool, mode: str, op: str) -> Traversal:
    """Pack ``out`` ``[B, D, S, *item]`` (float32) and ``vals`` ``(B*D, S)`` into a :class:`Traversal`."""
    b, d, s = out.shape[:3]
    pos = sweep_positions(lo, hi, steps, pingpong=pingpong)
    rows = [f"#{i} {n}" if b > 1 else n for i in range(b) for n in names]
    cols = [_col_label(float(p), mode, op) for p in pos]
    short = [r.split(" (")[0] for r in rows]
    return Traversal(samples=out.reshape(b * d * s, *x.shape[1:]).to(x.dtype),
                     labels=[f"{r} {c}" for r in short for c in cols], rows=b * d, cols=s, row_labels=rows,
                     col_labels=cols, values=vals, source=torch.arange(b).repeat_interleave(d))


def traverse_channels(latent: Tensor, channels: Sequence[int] | None = None, *, mode: RangeMode = "std",
                      lo: float = -2.0, hi: float = 2.0, steps: int = 7, op: Op = "offset",
                      reference: Tensor | None = None, pingpong: bool = False) -> Traversal:
    """Sweep single channels: every position of channel ``k`` offset by (or set to) each value.

    Args:
        latent: ``[B, C, *spatial]`` base latents (any float dtype; computed in float32).
        channels: channel indices to sweep, ``None`` = all ``C``.
        mode, lo, hi, steps, op, pingpong: see :func:`sweep_values`.
        reference: ``[N, C, *spatial']`` batch to fit std/quantiles on (per channel, over items
            and positions); ``None`` fits on ``latent``.

    Returns:
        :class:`Traversal` with ``B * len(channels)`` rows; only the swept channel changes.

    Raises:
        ValueError: channel index out of range, channel-count mismatch, NaN/Inf, bad range,
            or a batch of more than :data:`latent_ops.limits.MAX_ELEMENTS` elements.
    """
    x = check_latent(latent, "latent")
    c = x.shape[1]
    dims = check_indices(channels, c, "channels")
    ref = x if reference is None else check_latent(reference, "reference", c)
    b, d, s = x.shape[0], len(dims), len(sweep_positions(lo, hi, steps, pingpong=pingpong))
    check_elements("traverse_channels", "the traversal batch [B, D, S, C, *spatial]", (b, d, s, *x.shape[1:]))
    distinct = sorted(set(dims))  # statistics once per channel, however often it is listed
    fitted = sweep_values(_pixels(ref)[:, distinct], mode, lo, hi, steps, op=op, pingpong=pingpong).float().cpu()
    vals = fitted[[distinct.index(k) for k in dims]]
    spatial = x.shape[2:]
    xf = x.detach().float()
    vd = vals.to(xf.device)
    out = xf.unsqueeze(1).unsqueeze(1).repeat(1, d, s, *([1] * (x.ndim - 1)))  # [B, D, S, C, *sp]
    for j, k in enumerate(dims):
        v = vd[j].reshape(1, s, *([1] * len(spatial)))
        out[:, j, :, k] = xf[:, k].unsqueeze(1) + v if op == "offset" else v.expand(b, s, *spatial)
    return _result(x, out, vals.repeat(b, 1), [f"ch{k}" for k in dims], lo, hi, steps, pingpong, mode, op)


def traverse_pca(latent: Tensor, reference: Tensor | None = None, *, components: int | Sequence[int] = 3,
                 mode: RangeMode = "std", lo: float = -2.0, hi: float = 2.0, steps: int = 7, op: Op = "offset",
                 pingpong: bool = False) -> Traversal:
    """Sweep along principal components of per-position channel vectors.

    A PCA (:func:`latent_ops.space.pca.fit_pca`) is fitted to ``reference`` reshaped to
    ``(N * prod(spatial), C)``; component ``j`` is a ``C``-vector ``u`` added at every position.
    ``offset`` adds ``v * u``; ``replace`` sets each position's coordinate ``(x - mean) . u`` to
    ``v``. Std mode uses ``sqrt(explained_variance)``; quantile mode the reference coordinates.

    Args:
        latent: ``[B, C, *spatial]`` base latents.
        reference: ``[N, C, *spatial']`` batch to fit on (``None`` = ``latent``); needs at least
            as many positions as components used.
        components: ``k`` (the first ``k``) or 0-based component indices; labels are ``pc0``...
        mode, lo, hi, steps, op, pingpong: see :func:`sweep_values`.

    Returns:
        :class:`Traversal` with ``B * len(components)`` rows; row labels carry the explained
        variance share, e.g. ``"pc0 (41%)"``.

    Raises:
        ValueError: component out of range, channel mismatch, too few positions, NaN/Inf,
            or a batch of more than :data:`latent_ops.limits.MAX_ELEMENTS` elements.
    """
    x = check_latent(latent, "latent")
    c = x.shape[1]
    ref = x if reference is None else check_latent(reference, "reference", c)
    if isinstance(components, int) and not isinstance(components, bool):
        if not 1 <= components <= c:
            raise ValueError(f"traverse_pca: components must be in 1..{c} (channels), got {components}")
        idx = list(range(components))
    else:
        idx = check_indices(components, c, "components")
    check_elements("traverse_pca", "the traversal batch [B, D, S, C, *spatial]",
                   (x.shape[0], len(idx), len(sweep_positions(lo, hi, steps, pingpong=pingpong)), *x.shape[1:]))
    pix = _pixels(ref)
    if pix.shape[0] < max(idx) + 1 or pix.shape[0] < 2:
        raise ValueError(
            f"traverse_pca: reference of shape {tuple(ref.shape)} has {pix.shape[0]} positions; "
            f"component {max(idx)} needs at least {max(max(idx) + 1, 2)}"
        )
    pca = fit_pca(pix, k=max(idx) + 1)
    basis = pca.components[idx]  # (D, C)
    distinct = sorted(set(idx))  # statistics once per component, however often it is listed
    coords = pca.transform(pix)[:, distinct]
    scale = pca.explained_variance[distinct].clamp_min(0).sqrt() if mode == "std" else None
    fitted = sweep_values(coords, mode, lo, hi, steps, op=op, pingpong=pingpong, scale=scale).float().cpu()
    vals = fitted[[distinct.index(j) for j in idx]]
    b, d, s = x.shape[0], len(idx), vals.shape[1]
    spatial = x.shape[2:]
    ones = [1] * len(spatial)
    xf = x.detach().float()
    u = basis.to(xf.device).reshape(d, 1, c, *ones)  # (D, 1, C, *1)
    v = vals.to(xf.device).reshape(d, s, 1, *ones)  # (D, S, 1, *1)
    if op == "offset":
        out = xf[:, None, None] + v * u  # [B, D, S, C, *sp]
    else:
        centred = xf - pca.mean.to(xf.device).reshape(1, c, *ones)
        coord = torch.einsum("bc...,dc->bd...", centred, basis.to(xf.device))  # [B, D, *sp]
        out = xf[:, None, None] + (v - coord[:, :, None, None]) * u
    ratio = pca.explained_variance_ratio[idx]
    names = [f"pc{j} ({100 * float(r):.0f}%)" for j, r in zip(idx, ratio, strict=True)]
    return _result(x, out, vals.repeat(b, 1), names, lo, hi, steps, pingpong, mode, op)


def direction_between(a: Tensor, b: Tensor) -> Tensor:
    """``a - b`` (``[N, C, *spatial]`` each, same shape) in float32: the direction from ``b`` to ``a``.

    Raises:
        ValueError: shape mismatch or NaN/Inf.
    """
    check_latent(a, "direction a")
    check_latent(b, "direction b")
    if a.shape != b.shape:
        raise ValueError(f"traverse: direction a {tuple(a.shape)} and b {tuple(b.shape)} differ in shape")
    return a.detach().float() - b.detach().float().to(a.device)


def traverse_direction(latent: Tensor, direction: Tensor, *, mode: RangeMode = "interval", lo: float = -1.0,
                       hi: float = 1.0, steps: int = 7, normalize: bool = True, reference: Tensor | None = None,
                       pingpong: bool = False) -> Traversal:
    """Sweep each latent along a whole-latent direction: ``latent + offset(v)``.

    In ``interval`` mode the offset is ``v * d``, with ``d`` scaled to unit root-mean-square
    per element when ``normalize`` (so ``v`` moves elements by ``|v|`` on average) or used as
    given (``v = 1`` adds the whole ``A - B``). In ``std``/``quantile`` mode it is ``v * d/|d|``
    where ``v`` comes from the reference items' coordinates ``<ref_i, d/|d|>`` (the length of
    ``d`` then drops out; ``normalize`` is ignored). Only offsets are defined for directions.

    Args:
        latent: ``[B, C, *spatial]`` base latents.
        direction: ``[C, *spatial]``, ``[1, C, *spatial]`` (shared) or ``[B, C, *spatial]`` (one
            per base item), e.g. from :func:`direction_between`; must not be all zero.
        mode, lo, hi, steps, pingpong: see :func:`sweep_values`.
        normalize: interval mode only, see above.
        reference: ``[N, C, *spatial]`` items for std/quantile (``None`` = ``latent``, which
            then needs ``B >= 2`` for std).

    Returns:
        :class:`Traversal` with ``B`` rows labelled ``"dir"``; output is linear in ``v``.

    Raises:
        ValueError: direction/reference shape mismatch, zero direction, NaN/Inf, bad range,
            or a batch of more than :data:`latent_ops.limits.MAX_ELEMENTS` elements.
    """
    x = check_latent(latent, "latent")
    item = tuple(x.shape[1:])
    dvec = direction.unsqueeze(0) if isinstance(direction, Tensor) and direction.ndim == x.ndim - 1 else direction
    check_latent(dvec, "direction")
    if tuple(dvec.shape[1:]) != item or dvec.shape[0] not in (1, x.shape[0]):
        raise ValueError(
            f"traverse_direction: direction of shape {tuple(direction.shape)} does not fit latent "
            f"{tuple(x.shape)}; expected {item}, (1, *{item}) or ({x.shape[0]}, *{item})"
        )
    flat = dvec.detach().float().flatten(1)  # (D, n)
    norms = flat.norm(dim=1)
    if (norms == 0).any():
        raise ValueError("traverse_direction: direction is all zero (are A and B equal?)")
    ref = x if reference is None else check_latent(reference, "reference")
    if mode == "interval":
        vals = sweep_positions(lo, hi, steps, pingpong=pingpong).expand(flat.shape[0], -1)
        step = flat / (norms / math.sqrt(flat.shape[1])).unsqueeze(1) if normalize else flat
    else:
        if tuple(ref.shape[1:]) != item:
            raise ValueError(
                f"traverse_direction: reference items {tuple(ref.shape[1:])} must match latent items {item}"
            )
        step = flat / norms.unsqueeze(1)
        coords = ref.detach().float().flatten(1).to(step.device) @ step.T  # (N, D)
        vals = sweep_values(coords, mode, lo, hi, steps, pingpong=pingpong)
    vals = vals.float().cpu()
    b, s = x.shape[0], vals.shape[1]
    check_elements("traverse_direction", "the traversal batch [B, S, C, *spatial]", (b, s, *item))
    which = torch.arange(b) if flat.shape[0] == b else torch.zeros(b, dtype=torch.long)
    xf = x.detach().float().flatten(1)  # (B, n)
    out = xf[:, None] + vals[which].to(xf.device)[:, :, None] * step[which].to(xf.device)[:, None]
    return _result(x, out.reshape(b, 1, s, *item), vals[which], ["dir"], lo, hi, steps, pingpong, mode, "offset")
