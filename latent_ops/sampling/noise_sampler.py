"""The step noise of one sampling run: which per-image stream a stochastic sampler draws from.

- Brownian samplers (records with ``brownian_noise``: ``dpmpp_sde``, ``dpmpp_2m_sde``,
  ``dpmpp_3m_sde``, and ComfyUI's ``_gpu``/``_heun`` variants of them) get
  :class:`latent_ops.noise.brownian.BrownianNoise`: one Brownian tree per image on
  ``[smallest positive sigma, largest sigma]``, seeded with the image's seed, as ComfyUI (one image)
  and AUTOMATIC1111 (every image) seed theirs. ENSD does not apply to them (nor does it in A1111).
- Every other stochastic sampler gets :func:`latent_ops.noise.make_step_noise`: the default per-image
  stream, or A1111's under the ``a1111``/``a1111_nv`` conventions, with ENSD.

Either way image ``k`` of a batch gets the noise of its own seed run alone, drawn on the CPU.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from ..noise import conventions
from ..noise.brownian import BrownianNoise
from .basic import NoiseSampler
from .registry import SAMPLERS, step_noise_sampler

__all__ = ["COMFY_BROWNIAN_VARIANTS", "make_noise_sampler", "uses_brownian_tree"]

COMFY_BROWNIAN_VARIANTS: dict[str, str] = {
    "dpmpp_sde_gpu": "dpmpp_sde",
    "dpmpp_2m_sde_gpu": "dpmpp_2m_sde",
    "dpmpp_2m_sde_heun": "dpmpp_2m_sde",
    "dpmpp_2m_sde_heun_gpu": "dpmpp_2m_sde",
    "dpmpp_3m_sde_gpu": "dpmpp_3m_sde",
}
"""ComfyUI 0.3.64 sampler names outside our table whose step noise is a Brownian tree, -> our record."""


def uses_brownian_tree(sampler_name: str) -> bool:
    """Whether ``sampler_name`` (ours or ComfyUI's, e.g. ``dpmpp_2m_sde_gpu``) draws Brownian step noise."""
    name = COMFY_BROWNIAN_VARIANTS.get(sampler_name, sampler_name)
    return name in SAMPLERS and SAMPLERS[name].brownian_noise


def make_noise_sampler(sampler_name: str, seed: int, like: Tensor, sigmas: Tensor, *, convention: str = "comfy",
                       batch_index: Sequence[int] | None = None, subseed: int = 0, subseed_strength: float = 0.0,
                       variations: Sequence[tuple[int, float]] | str = (), ensd: int = 0) -> NoiseSampler:
    """The per-image noise sampler ``noise(sigma, sigma_next)`` of one run of ``sampler_name``.

    Args:
        sampler_name: our sampler name or ComfyUI's (decides Brownian tree or stream).
        seed: the run's seed; image ``k`` uses :func:`latent_ops.noise.image_seeds` ``(seed, ...)[k]``.
        like: the latent being sampled ``[B, C, H, W]`` or ``[B, C, T, H, W]``; noise comes back in its
            shape, dtype and device.
        sigmas: the run's schedule ``[N + 1]`` (the Brownian interval comes from it).
        convention, batch_index, subseed, subseed_strength, variations: as in
            :func:`latent_ops.noise.make_noise`.
        ensd: A1111's "eta noise seed delta" for stream samplers. Under ``a1111``/``a1111_nv``: 0 (A1111's
            default) continues the generator of each image's initial noise, another value draws from
            a fresh generator seeded ``image seed + ensd``. Under the other conventions: 0 keeps the
            default stream, another value seeds it ``image seed + ensd``.

    Returns:
        ``noise_sampler(sigma, sigma_next) -> Tensor`` shaped like ``like``; a fresh one per run.

    Raises:
        ValueError: on bad seeds, strengths, convention, batch_index, or a non-integer ``ensd``.
    """
    if isinstance(ensd, bool) or not isinstance(ensd, int):
        raise ValueError(f"make_noise_sampler: ensd must be an integer, got {ensd!r}")
    plan = conventions.step_plan(seed, like.shape[0], convention=convention, batch_index=batch_index,
                                 subseed=subseed, subseed_strength=subseed_strength, variations=variations)
    if uses_brownian_tree(sampler_name):
        host = sigmas.reshape(-1).tolist()  # one read; the samplers pass their sigmas as host floats
        positive = [s for s in host if s > 0]
        top = max(host)
        return BrownianNoise(plan, like, min(positive) if positive else top, top)
    stream = conventions.StepNoise.from_plan(plan, ensd or None)  # a1111: None = ENSD 0 = continue
    return step_noise_sampler(stream, like)
