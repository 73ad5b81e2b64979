"""The sampler registry: one :class:`SamplerRecord` per ComfyUI sampler name, in one table.

Everything the library knows about a sampler is a field of its record, and every place that needs
it reads :data:`SAMPLERS` (at call time): :func:`run_sampler` (dispatch, noise sampler, flow
safety), :func:`latent_ops.sampling.schedules.ksampler_sigmas` (the discarded penultimate sigma),
:func:`latent_ops.sampling.diffusion.sample` (ddim's inpainting noise) and ``unsample``
(invertibility), and the node combo lists. Adding a sampler is its function plus one record here.
The old name sets (:data:`SAMPLER_NAMES`, :data:`STOCHASTIC_SAMPLERS`, ...) are views of the table.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, fields
from typing import Any

from torch import Tensor

from . import basic, multistep, sde
from .basic import Callback, NoiseSampler, NoiseScaling, get_ancestral_step, to_d
from .denoisers import Denoiser

__all__ = [
    "SAMPLERS", "SAMPLER_NAMES", "STOCHASTIC_SAMPLERS", "Callback", "NoiseSampler", "SamplerRecord",
    "SamplerRegistry", "get_ancestral_step", "run_sampler", "step_noise_sampler", "to_d",
]

SamplerFn = Callable[..., Tensor]
"""``fn(model, x, sigmas, *, callback=None, **options) -> x`` (see :mod:`latent_ops.sampling.basic`)."""


def _params(fn: SamplerFn) -> frozenset[str]:
    return frozenset(inspect.signature(fn).parameters)


@dataclass(frozen=True)
class SamplerRecord:
    """Everything the library knows about one sampler.

    Attributes:
        name: the ComfyUI sampler name (``KSampler``'s ``sampler_name``).
        fn: the loop, ``fn(model, x, sigmas, *, callback=None, ...) -> x``.
        stochastic: adds fresh noise each step, so ``fn`` takes ``noise_sampler=`` (required by
            :func:`run_sampler`) and the sampler cannot be inverted.
        flow_safe: valid for rectified-flow models (the others assume eps/v maths).
        invertible: :func:`~latent_ops.sampling.diffusion.unsample` may run it backwards.
        discard_penultimate_sigma: ComfyUI computes ``steps + 1`` sigmas and drops the second to
            last (``KSampler.DISCARD_PENULTIMATE_SIGMA_SAMPLERS``).
        flow_fn: the loop to run instead on flow models (``euler_ancestral`` -> its RF form).
        uses_noise_scaling: ``fn`` takes the model's forward process as ``noise_scaling=``.
        random_inpaint_noise: inpainting keeps the unmasked region at a noise drawn from
            ``seed + 1`` instead of the initial noise (ComfyUI's ``inpaint_options={"random": True}``).
        brownian_noise: the step noise is a Brownian motion queried per interval (ComfyUI's and
            A1111's ``BrownianTreeNoiseSampler``; :mod:`latent_ops.noise.brownian`), not a stream.

    Raises: ValueError (naming the sampler) when the flags contradict each other or ``fn``'s signature.
    """

    name: str
    fn: SamplerFn
    stochastic: bool = False
    flow_safe: bool = False
    invertible: bool = False
    discard_penultimate_sigma: bool = False
    flow_fn: SamplerFn | None = None
    uses_noise_scaling: bool = False
    random_inpaint_noise: bool = False
    brownian_noise: bool = False

    def __post_init__(self) -> None:
        params = _params(self.fn)
        problems = [
            ("stochastic", self.stochastic != ("noise_sampler" in params),
             "stochastic must be True exactly when fn takes noise_sampler"),
            ("invertible", self.invertible and self.stochastic, "a stochastic sampler cannot be invertible"),
            ("flow_fn", self.flow_fn is not None and not self.flow_safe, "flow_fn needs flow_safe=True"),
            ("flow_fn", self.flow_fn is not None and _params(self.flow_fn) != params,
             "flow_fn must take the same parameters as fn"),
            ("uses_noise_scaling", self.uses_noise_scaling != ("noise_scaling" in params),
             "uses_noise_scaling must be True exactly when fn takes noise_scaling"),
            ("brownian_noise", self.brownian_noise and not self.stochastic, "brownian_noise needs stochastic=True"),
        ]
        for field_name, bad, why in problems:
            if bad:
                raise ValueError(f"SamplerRecord {self.name!r}: bad {field_name}: {why}")

    def __call__(self, *args: Any, **kwargs: Any) -> Tensor:
        """Run :attr:`fn` (so ``SAMPLERS[name](model, x, sigmas, ...)`` keeps working)."""
        return self.fn(*args, **kwargs)


_FLAGS = frozenset(f.name for f in fields(SamplerRecord) if isinstance(f.default, bool))
"""The boolean fields of a record, which :meth:`SamplerRegistry.names` filters on."""


class SamplerRegistry(Mapping[str, SamplerRecord]):
    """An immutable, ordered table of :class:`SamplerRecord` by name (spandrel's registry, read-only).

    ``registry[name]`` is the record; :meth:`plus` returns a larger copy; :meth:`names` filters by
    flags. Raises: ValueError on a duplicate name.
    """

    def __init__(self, records: Iterable[SamplerRecord] = ()) -> None:
        table: dict[str, SamplerRecord] = {}
        for rec in records:
            if rec.name in table:
                raise ValueError(f"SamplerRegistry: duplicate sampler name {rec.name!r}")
            table[rec.name] = rec
        self._table = table

    def __getitem__(self, name: str) -> SamplerRecord:
        return self._table[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._table)

    def __len__(self) -> int:
        return len(self._table)

    def __repr__(self) -> str:
        return f"SamplerRegistry({list(self._table)})"

    def plus(self, *records: SamplerRecord) -> SamplerRegistry:
        """A copy with ``records`` appended (this registry is unchanged)."""
        return SamplerRegistry([*self._table.values(), *records])

    def record(self, name: str, where: str = "run_sampler") -> SamplerRecord:
        """The record of ``name``. Raises: ValueError naming ``where``, the name and the known names."""
        if name not in self._table:
            raise ValueError(f"{where}: unknown sampler {name!r}; known: {list(self._table)}")
        return self._table[name]

    def names(self, **flags: bool) -> tuple[str, ...]:
        """Names, in table order, of the records whose boolean fields equal ``flags``
        (``names(invertible=True)``). Raises: ValueError for a keyword that is not a boolean field."""
        unknown = sorted(set(flags) - _FLAGS)
        if unknown:
            raise ValueError(f"SamplerRegistry.names: unknown flags {unknown}; known: {sorted(_FLAGS)}")
        return tuple(n for n, r in self._table.items() if all(getattr(r, k) == v for k, v in flags.items()))


SAMPLERS: SamplerRegistry = SamplerRegistry([
    SamplerRecord("euler", basic.sample_euler, flow_safe=True, invertible=True),
    SamplerRecord("euler_ancestral", sde.sample_euler_ancestral, stochastic=True, flow_safe=True,
                  flow_fn=sde.sample_euler_ancestral_rf),
    SamplerRecord("heun", basic.sample_heun, flow_safe=True, invertible=True),
    SamplerRecord("dpm_2", basic.sample_dpm_2, flow_safe=True, invertible=True, discard_penultimate_sigma=True),
    SamplerRecord("dpm_2_ancestral", sde.sample_dpm_2_ancestral, stochastic=True, discard_penultimate_sigma=True),
    SamplerRecord("lms", basic.sample_lms, flow_safe=True, invertible=True),
    SamplerRecord("dpmpp_2s_ancestral", sde.sample_dpmpp_2s_ancestral, stochastic=True),
    SamplerRecord("dpmpp_sde", sde.sample_dpmpp_sde, stochastic=True, brownian_noise=True),
    SamplerRecord("dpmpp_2m", multistep.sample_dpmpp_2m, flow_safe=True, invertible=True),
    SamplerRecord("dpmpp_2m_sde", sde.sample_dpmpp_2m_sde, stochastic=True, brownian_noise=True),
    SamplerRecord("dpmpp_3m_sde", sde.sample_dpmpp_3m_sde, stochastic=True, brownian_noise=True),
    SamplerRecord("lcm", basic.sample_lcm, stochastic=True, flow_safe=True, uses_noise_scaling=True),
    SamplerRecord("ddim", basic.sample_ddim, flow_safe=True, invertible=True, random_inpaint_noise=True),
    SamplerRecord("uni_pc", multistep.sample_uni_pc, flow_safe=True, discard_penultimate_sigma=True),
    SamplerRecord("uni_pc_bh2", multistep.sample_uni_pc_bh2, flow_safe=True, discard_penultimate_sigma=True),
    SamplerRecord("lms_kdiffusion", basic.sample_lms_kdiffusion, flow_safe=True, invertible=True),
])
"""THE sampler table: ComfyUI's sampler names in ComfyUI's order, then ours (``lms_kdiffusion``:
k-diffusion's and A1111's LMS, whose last step differs from ComfyUI's ``lms``) -> :class:`SamplerRecord`."""

SAMPLER_NAMES: tuple[str, ...] = SAMPLERS.names()
"""View of :data:`SAMPLERS`: every sampler name, in table order."""

STOCHASTIC_SAMPLERS: frozenset[str] = frozenset(SAMPLERS.names(stochastic=True))
"""View of :data:`SAMPLERS`: samplers that add fresh noise (need a noise sampler; cannot be inverted)."""


def step_noise_sampler(step_noise: Callable[[Tensor], Tensor], like: Tensor) -> NoiseSampler:
    """Adapt a ``step_noise(like) -> noise`` stream (e.g. :class:`latent_ops.noise.conventions.StepNoise`) to k-diffusion's
    ``noise_sampler(sigma, sigma_next)``; the result is moved to ``like``'s device and dtype."""

    def sampler(sigma: Tensor, sigma_next: Tensor) -> Tensor:
        return step_noise(like).to(device=like.device, dtype=like.dtype)

    return sampler


def run_sampler(name: str, model: Denoiser, x: Tensor, sigmas: Tensor, *, callback: Callback | None = None,
                noise_sampler: NoiseSampler | None = None, noise_scaling: NoiseScaling | None = None,
                prediction: str = "eps", **options: Any) -> Tensor:
    """Run sampler ``name`` from ``x`` (model space, noised to ``sigmas[0]``) down the ``sigmas``.

    Args: name: a :data:`SAMPLERS` name. model: the denoiser. noise_sampler: required by
        stochastic samplers. noise_scaling: the model's forward process (passed to samplers whose
        record has ``uses_noise_scaling``, i.e. ``lcm``). prediction: the model's prediction type;
        flow models run a record's ``flow_fn`` when it has one and refuse samplers that are not
        ``flow_safe``. options: passed to the sampler (``eta``, ``s_noise``, ...).
    Returns: the final latent, same shape as ``x``. Raises: ValueError for unknown names, a missing
        noise sampler, or an unsupported sampler/prediction pair.
    """
    rec = SAMPLERS.record(name)
    fn = rec.fn
    if prediction == "flow":
        if not rec.flow_safe:
            raise ValueError(f"sampler {name!r} is not supported for flow models; "
                             f"use one of {sorted(SAMPLERS.names(flow_safe=True))}")
        fn = rec.flow_fn or fn
    if rec.stochastic:
        if noise_sampler is None:
            raise ValueError(f"sampler {name!r} is stochastic and needs a noise_sampler")
        options["noise_sampler"] = noise_sampler
    if rec.uses_noise_scaling and noise_scaling is not None:
        options["noise_scaling"] = noise_scaling
    return fn(model, x, sigmas, callback=callback, **options)
