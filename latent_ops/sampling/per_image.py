"""Per-image step noise for k-diffusion-style sampler functions from other packages (e.g. ComfyUI's).

A sampler function is ``fn(model, x, sigmas, extra_args=None, callback=None, disable=None,
**options) -> x`` as in k-diffusion and ``comfy.k_diffusion.sampling``; the stochastic ones take a
``noise_sampler(sigma, sigma_next) -> noise`` keyword and otherwise draw from one generator for
the whole batch on ``x``'s device (so image k changes with the batch and the device).

:func:`with_step_noise` wraps such a function so that every call builds its own per-image
noise sampler (:func:`noise_sampler`) from ``extra_args["seed"]`` and the batch: image k of a
batch gets the step noise of the same seed run alone, drawn on the CPU: a Brownian tree per
image for the SDE samplers that build a ``BrownianTreeNoiseSampler`` (so one image equals
ComfyUI's own run of that seed), a stream otherwise (A1111's under the a1111 conventions).
Functions without a ``noise_sampler`` parameter (euler, heun, lms, dpmpp_2m, ...) are returned
unchanged.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Any

from torch import Tensor

from ..noise.sources import SeedOptions
from .basic import NoiseSampler
from .noise_sampler import make_noise_sampler

__all__ = ["accepts_noise_sampler", "noise_sampler", "with_step_noise"]

SamplerFunction = Callable[..., Tensor]
"""``fn(model, x, sigmas, extra_args=None, callback=None, disable=None, **options) -> Tensor``."""


def accepts_noise_sampler(fn: Callable[..., Any]) -> bool:
    """Whether ``fn`` has a parameter named ``noise_sampler`` (``**kwargs`` does not count).

    Follows ``__wrapped__``, so a function wrapped by :func:`with_step_noise` still answers True.
    """
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    p = params.get("noise_sampler")
    return p is not None and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)


def noise_sampler(options: SeedOptions, seed: int, x: Tensor, sigmas: Tensor, *,
                  batch_index: Sequence[int] | None = None, sampler_name: str = "") -> NoiseSampler:
    """The per-image noise sampler of one sampling run.

    Args:
        options: convention, variations and ENSD (:class:`latent_ops.noise.sources.SeedOptions`).
        seed: the run's seed (image k uses ``seed + k``, or ``seed + batch_index[k]``).
        x: the latent being sampled, ``[B, C, H, W]`` or ``[B, C, T, H, W]``; noise comes back in
            its shape, dtype and device.
        sigmas: the run's schedule ``[N + 1]`` (a Brownian tree spans its positive range).
        sampler_name: the sampler's name (ours or ComfyUI's, e.g. ``dpmpp_2m_sde_gpu``): decides
            between a Brownian tree and a stream.

    Returns:
        ``noise_sampler(sigma, sigma_next) -> Tensor`` shaped like ``x``
        (:func:`latent_ops.sampling.noise_sampler.make_noise_sampler`).

    Raises:
        ValueError: on a bad seed or a ``batch_index`` whose length is not ``B``.
    """
    return make_noise_sampler(sampler_name, seed, x, sigmas, convention=options.convention, batch_index=batch_index,
                              subseed=options.subseed, subseed_strength=options.subseed_strength,
                              variations=options.variations, ensd=options.ensd)


def with_step_noise(fn: SamplerFunction, options: SeedOptions, *,
                    batch_index: Sequence[int] | None = None) -> SamplerFunction:
    """Wrap sampler function ``fn`` so that each call draws per-image step noise.

    Each call reads the seed from ``extra_args["seed"]`` and passes
    ``noise_sampler=noise_sampler(options, seed, x, sigmas, ...)`` to ``fn`` (replacing any
    ``noise_sampler`` the caller gave), so generators are built per run and the wrapper can be
    reused. ``fn`` is returned unchanged when it takes no ``noise_sampler``.

    Args:
        fn: the sampler function. options: :class:`SeedOptions`.
        batch_index: the LATENT's ``batch_index`` when the caller knows it (``None``: image k
            uses ``seed + k``).

    Returns:
        A function with ``fn``'s signature (``inspect.signature`` follows ``__wrapped__``).

    Raises:
        ValueError (when called): if ``extra_args`` holds no ``seed``, or on a bad seed.
    """
    if not accepts_noise_sampler(fn):
        return fn
    name = getattr(fn, "__name__", type(fn).__name__).removeprefix("sample_")
    index = None if batch_index is None else tuple(batch_index)

    def sample(model: Any, x: Tensor, sigmas: Tensor, *args: Any,  # noqa: ANN401 - any denoiser
               extra_args: dict | None = None, **kwargs: Any) -> Tensor:  # noqa: ANN401
        seed = None if extra_args is None else extra_args.get("seed")
        if seed is None:
            raise ValueError(
                f"with_step_noise: sampler {name!r} was called without extra_args['seed']; per-image "
                "step noise needs the run's seed (ComfyUI passes the KSampler or NOISE seed there)"
            )
        kwargs["noise_sampler"] = noise_sampler(options, seed, x, sigmas, batch_index=index, sampler_name=name)
        return fn(model, x, sigmas, *args, extra_args=extra_args, **kwargs)

    return functools.update_wrapper(sample, fn)
