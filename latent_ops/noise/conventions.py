"""Seeded latent noise under named, versioned conventions; per-image step noise for samplers.

All noise is drawn on the CPU from explicit generators (never the global RNG), then cast and
moved to the requested dtype/device, so a seed gives the same tensor on every machine.

Conventions (``CONVENTIONS``; output version in ``NOISE_VERSIONS``):

``comfy``
    ComfyUI's ``comfy/sample.py:prepare_noise``: one CPU generator seeded with ``seed`` and one
    draw of the whole batch shape; when the latent carries ``batch_index``, one draw of shape
    ``[1, ...]`` per index ``0..max(batch_index)`` with the needed ones picked (repeated indices
    share noise). Gaussian noise is drawn directly in ``dtype``, as ComfyUI draws in the latent's
    dtype (a float16 CPU draw is not always the rounded float32 draw).
``a1111``
    AUTOMATIC1111 with ``RNG: CPU``: image ``i`` is drawn alone from a CPU generator seeded with
    ``seed + i`` (``seed + batch_index[i]`` if given). Quirk kept: with a variation on
    (``subseed_strength != 0``) the main seed stays ``seed`` for every image and the *subseed*
    increments (``subseed + i``). The variation is A1111's per-column slerp. Image ``i`` equals
    ComfyUI batch-1 noise for seed ``seed + i``.
``a1111_nv``
    The same with ``RNG: NV``: :class:`latent_ops.noise.philox.PhiloxGenerator`, the CPU emulation of
    CUDA's Philox ``randn``. It matches real CUDA noise within 1.1e-5 (43 float32 ulps, measured on
    an H200) up to the GPU's resident thread count per image (multiprocessors x 2048 = 270,336
    elements on an H100/H200) and not beyond (see :mod:`latent_ops.noise.philox`). A1111's default
    ``GPU`` source depends on the GPU and cannot be reproduced on a CPU; asking for ``a1111_gpu`` raises.
``diffusers``
    ``diffusers.utils.torch_utils.randn_tensor`` with a list of CPU generators, one per image,
    seeded ``seed + i`` (``seed + batch_index[i]``): image ``i`` is ``randn((1, C, H, W))`` from
    its own generator, in ``dtype`` as ``randn_tensor`` draws. Variation mixing is the whole-sample
    slerp.

Non-Gaussian types and the a1111 conventions draw in float32 and cast at the end.

Noise types other than Gaussian (:mod:`latent_ops.noise.types`) use the same generators and
layout; variations (:mod:`latent_ops.noise.variation`) work for every type and convention: the
variation noise of seed ``s`` is exactly the noise the same call makes with ``seed=s`` and no
variation, so strength 1 reproduces the other seed's noise.

Seeds are integers in ``[0, 2**64)`` (:mod:`latent_ops.seeds`); per-image seeds ``seed + i`` wrap
modulo ``2**64``. torch's CPU generator keeps only the low 32 bits of its seed, so under ``comfy``,
``a1111`` and ``diffusers`` the seeds ``s`` and ``s + 2**32`` give the same noise, exactly as in those
tools; ``a1111_nv`` keys Philox with all 64 bits, as A1111 does.
Step noise lives in :mod:`latent_ops.noise.step` (streams) and :mod:`latent_ops.noise.brownian`
(Brownian trees of SDE samplers); :func:`step_plan` gives both their per-image seeds.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from .. import progress, seeds
from ..limits import check_elements, excerpt
from . import types as noise_types
from . import variation
from .brownian import BROWNIAN_VERSION
from .philox import PHILOX_VERSION, PhiloxGenerator
from .step import STEP_NOISE_VERSION, StepNoise, StepPlan, derive_step_seed

__all__ = [
    "CONVENTIONS",
    "NOISE_VERSIONS",
    "STEP_NOISE_VERSION",
    "StepNoise",
    "StepPlan",
    "derive_step_seed",
    "image_seeds",
    "make_noise",
    "make_step_noise",
    "noise_shape",
    "step_plan",
    "versions",
]

CONVENTIONS = ("comfy", "a1111", "a1111_nv", "diffusers")
"""Names of the seed conventions accepted by :func:`make_noise`."""

NOISE_VERSIONS: dict[str, int] = {"comfy": 1, "a1111": 1, "a1111_nv": 1, "diffusers": 1}
"""Output version of each convention (bumped whenever a seed's noise would change)."""

def versions() -> dict[str, int]:
    """Every output version that a noise result depends on, flat (for metadata in saved files).

    Keys: ``convention.<name>``, ``type.<name>``, ``variation``, ``step_noise``, ``brownian``, ``philox``.
    """
    out = {f"convention.{k}": v for k, v in NOISE_VERSIONS.items()}
    out.update({f"type.{k}": v for k, v in noise_types.TYPE_VERSIONS.items()})
    out.update(variation=variation.VARIATION_VERSION, step_noise=STEP_NOISE_VERSION, brownian=BROWNIAN_VERSION,
               philox=PHILOX_VERSION)
    return out


def _check_convention(convention: str) -> str:
    if convention == "a1111_gpu":
        raise ValueError(
            "convention 'a1111_gpu': A1111's GPU noise depends on the GPU model and cannot be reproduced "
            "on the CPU; use 'a1111_nv' (CPU emulation of CUDA's Philox randn) or 'a1111' (CPU)"
        )
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown noise convention {convention!r}; known: {list(CONVENTIONS)}")
    return convention


def _check_batch_index(batch_index: Sequence[int] | None, batch_size: int) -> list[int] | None:
    if batch_index is None:
        return None
    raw = list(batch_index)
    if len(raw) != batch_size:
        raise ValueError(f"batch_index has {len(raw)} entries but the batch has {batch_size} items")
    try:
        idx = [int(i) for i in raw]
    except (TypeError, ValueError):
        raise ValueError(f"batch_index must hold non-negative integers, got {raw}") from None
    if any(i < 0 or i != r for i, r in zip(idx, raw, strict=True)):
        raise ValueError(f"batch_index must hold non-negative integers, got {raw}")
    return idx


@dataclass(frozen=True)
class _Batch:
    """The checked per-image seed rule of one call.

    Attributes:
        convention: a checked name from ``CONVENTIONS``.
        batch_index: the checked (B,) noise indices, or ``None``.
        offsets: what image ``i`` adds to a seed: ``batch_index[i]``, else ``i``.
        keep_main_seed: A1111's quirk (an a1111 convention with a variation on): the main seed
            does not increment.
    """

    convention: str
    batch_index: list[int] | None
    offsets: tuple[int, ...]
    keep_main_seed: bool

    def seeds(self, seed: int, *, main: bool = False) -> list[int]:
        """Per-image seeds of a checked ``seed``; ``main``: it is the call's base seed."""
        if main and self.keep_main_seed:
            return [seed] * len(self.offsets)
        return [seeds.offset(seed, k) for k in self.offsets]


def _batch(batch_size: int, convention: str, batch_index: Sequence[int] | None, strength: float) -> _Batch:
    """Check the batch arguments of a call (``strength`` already checked) and fix its seed rule."""
    convention = _check_convention(convention)
    b = int(batch_size)
    if b < 0:
        raise ValueError(f"batch_size must be >= 0, got {batch_size}")
    idx = _check_batch_index(batch_index, b)
    offsets = tuple(idx) if idx is not None else tuple(range(b))
    return _Batch(convention, idx, offsets, convention.startswith("a1111") and strength != 0.0)


def image_seeds(seed: int, batch_size: int, *, convention: str = "comfy", batch_index: Sequence[int] | None = None,
                subseed_strength: float = 0.0) -> list[int]:
    """The per-image seed of each batch item (what step noise and single-image reruns use).

    ``seed + batch_index[i]`` if ``batch_index`` is given, else ``seed + i`` (modulo 2**64), for
    every convention. For ``a1111``/``a1111_nv`` with ``subseed_strength != 0`` every image keeps
    ``seed`` (A1111's quirk: with a variation on, the main seed does not increment).

    Args:
        seed: base seed in [0, 2**64). batch_size: B >= 0.
        convention: one of ``CONVENTIONS``. batch_index: optional (B,) noise indices.
        subseed_strength: the variation strength in [0, 1] (only the a1111 conventions use it).

    Returns:
        ``B`` seeds.

    Raises:
        ValueError: on a bad seed, convention, batch size, batch_index or strength.
    """
    seed = seeds.check_seed(seed)
    strength = variation.check_strength(subseed_strength)
    return _batch(batch_size, convention, batch_index, strength).seeds(seed, main=True)


def _size(s: object) -> int:
    """One dimension as an int: ints (numpy's too) and integral floats; ``ValueError`` otherwise."""
    if isinstance(s, bool):
        raise ValueError(s)
    try:
        return operator.index(s)
    except TypeError:
        if isinstance(s, float) and s.is_integer():
            return int(s)
        raise ValueError(s) from None


def noise_shape(shape: Sequence[int]) -> tuple[int, ...]:
    """Validate a noise shape ``(B, C, H, W)`` or ``(B, C, T, H, W)`` and return it as a tuple of ints.

    Raises:
        ValueError: not a sequence of whole numbers (``4.5`` is refused, not truncated), the wrong
            number of dims, a negative size or a zero size other than ``B``, or more than
            :data:`latent_ops.limits.MAX_ELEMENTS` elements.
    """
    try:
        dims = tuple(_size(s) for s in shape)
    except (TypeError, ValueError):
        raise ValueError(f"noise shape must be a sequence of whole numbers, got {excerpt(shape)}") from None
    if len(dims) not in (4, 5) or any(d < 0 for d in dims) or any(d == 0 for d in dims[1:]):
        raise ValueError(
            f"noise shape must be (B, C, H, W) or (B, C, T, H, W) with positive sizes, got {excerpt(dims)}"
        )
    check_elements("make_noise", "the noise", dims)
    return dims


def _draw(
    convention: str,
    per_image: int | list[int],
    shape: tuple[int, ...],
    noise_type: str,
    batch_index: list[int] | None,
    draw_dtype: torch.dtype,
    options: dict,
) -> Tensor:
    """One convention's noise for one seed (comfy) or per-image seeds (others); CPU tensor."""
    fn = noise_types.get_type(noise_type)
    one = (1,) + shape[1:]
    if convention == "comfy":
        source = noise_types.TorchSource(torch.Generator("cpu").manual_seed(int(per_image)), draw_dtype)
        if not batch_index:  # None (one whole-batch draw) or an empty batch
            return fn(source, shape, **options)
        draws = [fn(source, one, **options) for _ in range(max(batch_index) + 1)]
        return torch.cat([draws[i] for i in batch_index], dim=0)
    out = []
    for s in per_image:
        if convention == "a1111_nv":
            source = PhiloxGenerator(s)
        else:
            source = noise_types.TorchSource(torch.Generator("cpu").manual_seed(s), draw_dtype)
        out.append(fn(source, one, **options))
    if not out:
        return torch.zeros(shape, dtype=torch.float32)
    return torch.cat(out, dim=0)


def _paste_centred(small: Tensor, big: Tensor) -> Tensor:
    """A1111's "resize seed from": paste ``small`` centred into ``big`` (cropping if larger)."""
    out = big.clone()
    sh, sw = small.shape[-2:]
    bh, bw = big.shape[-2:]
    dx, dy = (bw - sw) // 2, (bh - sh) // 2
    w = sw if dx >= 0 else sw + 2 * dx
    h = sh if dy >= 0 else sh + 2 * dy
    tx, ty = max(dx, 0), max(dy, 0)
    sx, sy = max(-dx, 0), max(-dy, 0)
    out[..., ty : ty + h, tx : tx + w] = small[..., sy : sy + h, sx : sx + w]
    return out


def make_noise(
    shape: Sequence[int],
    seed: int,
    *,
    convention: str = "comfy",
    noise_type: str = "gaussian",
    subseed: int = 0,
    subseed_strength: float = 0.0,
    variations: Sequence[tuple[int, float]] | str = (),
    batch_index: Sequence[int] | None = None,
    resize_from: tuple[int, int] | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    **type_options: float,
) -> Tensor:
    """Seeded noise of ``shape`` under a named convention (see the module docstring).

    Steps: draw the base noise of ``seed`` (at the ``resize_from`` size if given); mix towards
    the subseed's noise by ``subseed_strength``; then towards each stacked variation in order;
    then, for ``resize_from``, paste the result centred into a fresh full-size draw of ``seed``
    (A1111's order: the border keeps the unvaried base noise). Finally cast and move.

    Args:
        shape: (B, C, H, W) or (B, C, T, H, W) (the a1111 variation slerp needs 4-D).
        seed: base seed in [0, 2**64).
        convention: one of ``CONVENTIONS``.
        noise_type: a name from :data:`latent_ops.noise.types.NOISE_TYPES`.
        subseed: variation seed. subseed_strength: its weight in [0, 1] (0 = off).
        variations: stacked ``[(seed, weight), ...]`` or a string ``"123:0.2, 456:0.1"``.
        batch_index: optional (B,) noise index of each item (a LATENT's ``batch_index``).
        resize_from: ``(h, w)`` in latent cells the seed was first used at (A1111's "resize seed
            from", whose pixel sizes are divided by the downscale factor); ``None`` or any size
            <= 0 turns it off.
        dtype: floating output dtype. device: output device.
        **type_options: options of the noise type (e.g. ``octaves=3`` for perlin).

    Returns:
        Tensor of ``shape`` in ``dtype`` on ``device``.

    Raises:
        ValueError: on a bad shape, seed, convention, noise type, strength, variation list,
            batch_index, resize size or dtype.
    """
    dims = noise_shape(shape)
    seed = seeds.check_seed(seed)
    subseed = seeds.check_seed(subseed, "subseed")
    noise_types.get_type(noise_type)
    strength = variation.check_strength(subseed_strength)
    stacked = variation.check_variations(variations)
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise ValueError(f"make_noise: dtype must be a floating torch dtype, got {dtype}")
    batch = _batch(dims[0], convention, batch_index, strength)
    exact_dtype = noise_type == "gaussian" and batch.convention in ("comfy", "diffusers")
    draw_dtype = dtype if exact_dtype else torch.float32
    method = "a1111" if batch.convention.startswith("a1111") else "slerp"

    small = dims
    if resize_from is not None:
        try:
            rh, rw = (int(v) for v in resize_from)
        except (TypeError, ValueError):
            raise ValueError(
                f"make_noise: resize_from must be (h, w) in latent cells, got {resize_from!r}"
            ) from None
        if rh > 0 and rw > 0:
            small = dims[:-2] + (rh, rw)

    def draw(s: int, at: tuple[int, ...], main: bool = False) -> Tensor:
        per_image = s if batch.convention == "comfy" else batch.seeds(s, main=main)
        return _draw(batch.convention, per_image, at, noise_type, batch.batch_index, draw_dtype, type_options)

    noise = draw(seed, small, main=True)
    if strength != 0.0:
        noise = variation.mix_noise(noise, draw(subseed, small), strength, method=method)
    for vseed, weight in stacked:
        progress.check()  # up to MAX_VARIATIONS full-size draws: an interrupt point each
        if weight != 0.0:
            noise = variation.mix_noise(noise, draw(vseed, small), weight, method=method)
    if small != dims:
        noise = _paste_centred(noise, draw(seed, dims, main=True))
    return noise.to(dtype=dtype).to(device)


def step_plan(seed: int, batch_size: int, *, convention: str = "comfy", batch_index: Sequence[int] | None = None,
              subseed: int = 0, subseed_strength: float = 0.0,
              variations: Sequence[tuple[int, float]] | str = ()) -> StepPlan:
    """Whose seeds the step noise of a batch comes from, with the same per-image seeds :func:`make_noise` uses.

    Image ``k`` gets :func:`image_seeds` ``(seed, ...)[k]``; its subseed and each stacked
    variation's seed follow the same rule (none under ``a1111``/``a1111_nv``: A1111 mixes no
    variation into step noise). The source is ``"nv"`` for ``a1111_nv``, else ``"cpu"``.
    Both :func:`make_step_noise` and the Brownian trees of SDE samplers
    (:mod:`latent_ops.sampling.noise_sampler`) read it.

    Raises:
        ValueError: on bad seeds, strengths, convention or batch_index.
    """
    seed = seeds.check_seed(seed)
    subseed = seeds.check_seed(subseed, "subseed")
    strength = variation.check_strength(subseed_strength)
    stacked = variation.check_variations(variations)
    batch = _batch(batch_size, convention, batch_index, strength)
    a1111 = batch.convention.startswith("a1111")
    layers = [] if a1111 else [(batch.seeds(subseed), strength)] + [(batch.seeds(v), w) for v, w in stacked]
    return StepPlan(
        seeds=tuple(batch.seeds(seed, main=True)),
        layers=tuple((tuple(s), float(w)) for s, w in layers if w != 0.0),
        source="nv" if batch.convention == "a1111_nv" else "cpu",
        a1111=a1111,
    )


def make_step_noise(seed: int, batch_size: int, *, convention: str = "comfy", batch_index: Sequence[int] | None = None,
                    subseed: int = 0, subseed_strength: float = 0.0, variations: Sequence[tuple[int, float]] | str = (),
                    seed_delta: int | None = None) -> StepNoise:
    """Step noise for a batch (:func:`step_plan`'s seeds; the streams of :mod:`latent_ops.noise.step`).

    So image ``k`` of a batch gets the step noise of the same seed run alone (with
    ``batch_index=[k]``), and under ``comfy``/``diffusers`` strength 1 gives the subseed's own step
    noise. Under ``a1111``/``a1111_nv`` it is A1111's stream: the image's initial-noise generator
    continued (``seed_delta`` None or 0), or a fresh one seeded ``seed + seed_delta`` (A1111's ENSD).

    Args:
        seed: batch seed. batch_size: B. convention: one of ``CONVENTIONS``.
        batch_index: optional (B,) noise indices. subseed, subseed_strength, variations: as in
            :func:`make_noise`. seed_delta: see :func:`latent_ops.noise.step.derive_step_seed` (for
            the A1111 conventions: ENSD).

    Returns:
        A :class:`StepNoise` for ``batch_size`` images.

    Raises:
        ValueError: on bad seeds, strengths, convention or batch_index.
    """
    plan = step_plan(seed, batch_size, convention=convention, batch_index=batch_index, subseed=subseed,
                     subseed_strength=subseed_strength, variations=variations)
    return StepNoise.from_plan(plan, seed_delta)
