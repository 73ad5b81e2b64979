"""One entry point for the three traversals, on tensors and on ComfyUI LATENT dicts.

:func:`traverse` picks :func:`~.sweeps.traverse_channels`, :func:`~.sweeps.traverse_pca` or
:func:`~.sweeps.traverse_direction` by ``mode`` and checks what only makes sense across them
(a reference of the latent's layout, both direction latents, offsets only along a direction).
:func:`traverse_latent` is the same call on LATENT dicts: side entries (``noise_mask``,
``batch_index``) follow their item into every output made from it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from torch import Tensor

from ..latents import Latent
from .ranges import OPS, RANGE_MODES, Op, RangeMode, parse_indices
from .sweeps import (
    Traversal,
    check_latent,
    direction_between,
    traverse_channels,
    traverse_direction,
    traverse_pca,
)

Mode = Literal["channel", "pca", "direction"]
MODES: tuple[str, ...] = ("channel", "pca", "direction")


def _check_direction(x: Tensor, a: Tensor | None, b: Tensor | None, op: str) -> tuple[Tensor, Tensor]:
    """``(a, b)`` if they can make a direction for ``x`` ``[B, C, *spatial]``; raises otherwise."""
    if a is None or b is None:
        raise ValueError("traverse: mode 'direction' needs both direction_a and direction_b")
    if op != "offset":
        raise ValueError(f"traverse: op={op!r} is not defined for mode 'direction' (use 'offset')")
    if a.shape != b.shape or a.shape[1:] != x.shape[1:] or a.shape[0] not in (1, x.shape[0]):
        raise ValueError(f"traverse: direction_a {tuple(a.shape)} and direction_b {tuple(b.shape)} must have "
                         f"equal shapes, the item shape of latent {tuple(x.shape)} and batch 1 or {x.shape[0]}")
    return a, b


def traverse(latent: Tensor, mode: Mode = "channel", *, channels: str | Sequence[int] | None = None,
             range_mode: RangeMode = "std", lo: float = -2.0, hi: float = 2.0, steps: int = 7, op: Op = "offset",
             pingpong: bool = False, reference: Tensor | None = None, direction_a: Tensor | None = None,
             direction_b: Tensor | None = None, normalize: bool = True) -> Traversal:
    """Sweep ``latent`` along channels, principal components or a direction (one call for all three).

    Args:
        latent: ``[B, C, *spatial]`` float base latents.
        mode: ``"channel"`` (:func:`~.sweeps.traverse_channels`), ``"pca"``
            (:func:`~.sweeps.traverse_pca`) or ``"direction"`` (:func:`~.sweeps.traverse_direction`
            along ``direction_a - direction_b``).
        channels: the channels (channel mode) or 0-based components (pca mode) to sweep: indices,
            or text such as ``"all"``, ``"0,1,2"``, ``"0-3"`` (:func:`~.ranges.parse_indices`);
            ``None`` = all ``C``. Unused in direction mode.
        range_mode, lo, hi, steps, op, pingpong: the sweep, see :func:`~.ranges.sweep_values`.
        reference: ``[N, C, *spatial']`` batch with ``latent``'s number of dims and channels to
            fit std/quantiles/PCA on; ``None`` = ``latent``.
        direction_a, direction_b: direction mode: equal shapes ``[1 or B, C, *spatial]``; the
            direction points from ``b`` to ``a``.
        normalize: direction mode with ``range_mode="interval"``: scale the direction to unit
            RMS per element (``False``: ``v = 1`` adds the whole ``a - b``).

    Returns:
        :class:`~.sweeps.Traversal`, rows = items x swept coordinates, columns = values.

    Raises:
        ValueError: an unknown ``mode``/``range_mode``/``op``, a reference of another layout,
            direction mode without both directions, with ``op="replace"`` or with shapes that do
            not fit ``latent``, and whatever the chosen traversal raises.
    """
    if mode not in MODES:
        raise ValueError(f"traverse: mode must be one of {list(MODES)}, got {mode!r}")
    if range_mode not in RANGE_MODES:
        raise ValueError(f"traverse: range_mode must be one of {list(RANGE_MODES)}, got {range_mode!r}")
    if op not in OPS:
        raise ValueError(f"traverse: op must be one of {list(OPS)}, got {op!r}")
    x = check_latent(latent, "latent")
    if reference is not None and (reference.ndim != x.ndim or reference.shape[1] != x.shape[1]):
        raise ValueError(f"traverse: reference {tuple(reference.shape)} must have the channels of latent "
                         f"{tuple(x.shape)}")
    sweep = dict(mode=range_mode, lo=lo, hi=hi, steps=steps, pingpong=pingpong)
    if mode == "direction":
        a, b = _check_direction(x, direction_a, direction_b, op)
        return traverse_direction(x, direction_between(a, b), normalize=normalize, reference=reference, **sweep)
    picked = parse_indices(channels, x.shape[1], "channels") if isinstance(channels, str) else channels
    if mode == "channel":
        return traverse_channels(x, picked, op=op, reference=reference, **sweep)
    return traverse_pca(x, reference, components=picked if picked is not None else x.shape[1], op=op, **sweep)


def repeat_per_item(value: Any, batch: int, repeats: int) -> Any:  # noqa: ANN401 - any LATENT side entry
    """A LATENT side entry (``noise_mask``, ``batch_index``) repeated for each output of its item.

    Args:
        value: a list of ``batch`` entries, a ``[batch, ...]`` tensor of 3+ dims, or anything else.
        batch: the number of base items. repeats: outputs made from each item.

    Returns:
        A list or tensor of ``batch * repeats`` entries, item-major; a single mask (or a value
        ComfyUI broadcasts) unchanged, the same object.
    """
    if isinstance(value, list) and len(value) == batch:
        return [v for v in value for _ in range(repeats)]
    shape = getattr(value, "shape", None)
    if shape is not None and len(shape) > 2 and shape[0] == batch and batch > 1:
        return value.repeat_interleave(repeats, dim=0)
    return value


def traverse_latent(samples: Latent, mode: Mode = "channel", *, channels: str | Sequence[int] | None = None,
                    range_mode: RangeMode = "std", lo: float = -2.0, hi: float = 2.0, steps: int = 7,
                    op: Op = "offset", pingpong: bool = False, reference: Latent | None = None,
                    direction_a: Latent | None = None, direction_b: Latent | None = None,
                    normalize: bool = True) -> tuple[Latent, Traversal]:
    """:func:`traverse` on LATENT dicts: ``samples["samples"]`` swept, side entries kept per item.

    Args:
        samples: LATENT with ``samples`` ``[B, C, *spatial]``; other keys are copied, each item's
            ``noise_mask``/``batch_index`` entry repeated for its ``rows / B * cols`` outputs.
        reference, direction_a, direction_b: optional LATENTs whose ``samples`` are passed on.
        mode, channels, range_mode, lo, hi, steps, op, pingpong, normalize: as :func:`traverse`.

    Returns:
        ``(latent, traversal)``: a new LATENT dict (the input is not changed) and the
        :class:`~.sweeps.Traversal` with its labels.

    Raises:
        ValueError: as :func:`traverse`.
    """
    x = samples["samples"]
    result = traverse(x, mode, channels=channels, range_mode=range_mode, lo=lo, hi=hi, steps=steps, op=op,
                      pingpong=pingpong, normalize=normalize,
                      reference=None if reference is None else reference["samples"],
                      direction_a=None if direction_a is None else direction_a["samples"],
                      direction_b=None if direction_b is None else direction_b["samples"])
    repeats = result.rows // x.shape[0] * result.cols
    out = {k: repeat_per_item(v, x.shape[0], repeats) for k, v in samples.items()}
    out["samples"] = result.samples
    return out, result
