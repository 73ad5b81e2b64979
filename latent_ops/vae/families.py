"""VAE families: one frozen record each, in a registry (in the style of spandrel's architecture registry).

A :class:`VAEFamily` says everything the loaders need about a family: its kind (KL or TAESD),
latent channels, shipped config folder (``latent_ops/configs/<config>``), latent format (scale,
shift, compression; a TAESD family's is the format of the KL family it pairs with), and how to
tell it apart from look-alikes (default choice, full-checkpoint key, file-name markers).
:data:`REGISTRY` holds the built-in families; every table the loaders and nodes use is derived
from it, so adding a family is one record here plus its config folder (and
``tests/test_vae_families.py`` runs it through load, encode/decode and tiling).

Detection (:mod:`latent_ops.vae.detect`) reads tensor shapes and key names only: SD1.5 and SDXL
VAEs (and SD3 and Flux VAEs) have identical shapes, so a hint, a full checkpoint's other parts or
the file name decide, and otherwise the family marked ``default``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from .. import latent_format as lf
from ..errors import LatentOpsError
from ..weights.files import ModelLoadError
from .geometry import config_geometry, latent_format_from_config

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"

KINDS = ("kl", "tiny")
"""``"kl"``: diffusers ``AutoencoderKL``; ``"tiny"``: ``AutoencoderTiny`` (TAESD)."""


class DuplicateFamilyError(LatentOpsError):
    """A family name registered twice, or a second default for one kind and channel count."""


@dataclass(frozen=True)
class VAEFamily:
    """One VAE family.

    Attributes:
        name: family id (``"sd15"``); for TAESD also the file prefix (``taesdxl_decoder.pth``).
        kind: ``"kl"`` or ``"tiny"`` (see :data:`KINDS`).
        channels: latent channels of its weights.
        config: folder under ``latent_ops/configs/`` holding the family's diffusers ``config.json``.
        latent_format: its latent space; for TAESD the format of the KL family it pairs with.
        default: chosen among the families of the same kind and channels when nothing tells
            them apart (one per kind and channel count).
        checkpoint_key: regular expression found (``re.search``) only in the keys of full
            checkpoints of this family (KL), or None.
        name_markers: substrings of a lower-case file name that imply this family (KL).
        name_tokens: whole words of a file name (split on non-alphanumerics) that imply it (KL).
    """

    name: str
    kind: str
    channels: int
    config: str
    latent_format: lf.LatentFormat
    default: bool = False
    checkpoint_key: str | None = None
    name_markers: tuple[str, ...] = ()
    name_tokens: tuple[str, ...] = ()

    @property
    def pairs_with(self) -> str | None:
        """TAESD: the KL family whose latents it encodes and decodes; None for KL families."""
        return self.latent_format.name if self.kind == "tiny" else None

    def shipped_config(self) -> dict:
        """The diffusers config shipped for this family (a fresh dict)."""
        return json.loads((CONFIG_DIR / self.config / "config.json").read_text(encoding="utf-8"))


class FamilyRegistry:
    """An ordered, checked collection of :class:`VAEFamily` records; :meth:`copy` to extend it.

    Raises:
        DuplicateFamilyError: on a repeated name or a second default for one kind and channels.
        ValueError: on an unknown kind, or a TAESD family whose format names no registered KL family.
    """

    def __init__(self, families: Iterable[VAEFamily] = ()) -> None:
        self._families: dict[str, VAEFamily] = {}
        for family in families:
            self.add(family)

    def add(self, family: VAEFamily) -> None:
        """Register ``family`` after the existing ones."""
        if family.kind not in KINDS:
            raise ValueError(f"FamilyRegistry.add: {family.name!r} has kind {family.kind!r}; known: {list(KINDS)}")
        if family.name in self._families:
            raise DuplicateFamilyError(f"FamilyRegistry.add: VAE family {family.name!r} is already registered")
        if family.pairs_with is not None and self._families.get(family.pairs_with, family).kind != "kl":
            raise ValueError(f"FamilyRegistry.add: TAESD family {family.name!r} pairs with {family.pairs_with!r}, "
                             "which is not a registered KL family")
        if family.default and any(f.default for f in self.candidates(family.kind, family.channels)):
            raise DuplicateFamilyError(f"FamilyRegistry.add: a default {family.kind} family with "
                                       f"{family.channels} channels is already registered")
        self._families[family.name] = family

    def copy(self) -> FamilyRegistry:
        """A new registry with the same records (to extend without touching this one)."""
        return FamilyRegistry(self)

    def __iter__(self) -> Iterator[VAEFamily]:
        return iter(self._families.values())

    def __len__(self) -> int:
        return len(self._families)

    def __contains__(self, name: object) -> bool:
        return name in self._families

    def get(self, name: str) -> VAEFamily:
        """The record called ``name``; raises :class:`ModelLoadError` listing the known names."""
        try:
            return self._families[name]
        except KeyError:
            raise ModelLoadError(f"unknown VAE family {name!r}; known: {list(self._families)}") from None

    def names(self, kind: str | None = None) -> tuple[str, ...]:
        """Family names in registration order (of one kind if given)."""
        return tuple(f.name for f in self if kind is None or f.kind == kind)

    def candidates(self, kind: str, channels: int) -> tuple[VAEFamily, ...]:
        """Families of ``kind`` with ``channels`` latent channels, the default first."""
        found = [f for f in self if f.kind == kind and f.channels == channels]
        return tuple(sorted(found, key=lambda f: not f.default))

    def taesd_prefixes(self) -> tuple[str, ...]:
        """TAESD family names, longest first (``taesd`` is a prefix of ``taesdxl``)."""
        return tuple(sorted(self.names("tiny"), key=len, reverse=True))

    def taesd_file(self, name: str) -> tuple[str, str] | None:
        """``(family, "encoder" | "decoder")`` for a TAESD half's file name, else None."""
        prefixes = "|".join(map(re.escape, self.taesd_prefixes()))
        m = re.match(rf"^({prefixes})_(encoder|decoder)\.", name.lower()) if prefixes else None
        return (m[1], m[2]) if m else None

    def latent_format(self, family: str, cfg: dict) -> lf.LatentFormat:
        """Latent format of a VAE of ``family`` built from ``cfg``: a TAESD family's paired format
        with the channels of ``cfg``; for any other family (also ``"custom"``, ``"embedded"``)
        :func:`~latent_ops.vae.geometry.latent_format_from_config`."""
        if family in self and self._families[family].kind == "tiny":
            return replace(self._families[family].latent_format, channels=config_geometry(cfg).channels)
        return latent_format_from_config(cfg, family)


def _kl(name: str, fmt: lf.LatentFormat, **kw: object) -> VAEFamily:
    return VAEFamily(name, "kl", fmt.channels, f"{name}-vae", fmt, **kw)  # type: ignore[arg-type]


def _tiny(name: str, fmt: lf.LatentFormat, **kw: object) -> VAEFamily:
    return VAEFamily(name, "tiny", fmt.channels, name, fmt, **kw)  # type: ignore[arg-type]


REGISTRY = FamilyRegistry([
    _kl("sd15", lf.SD15, default=True, checkpoint_key=r"^cond_stage_model\."),
    _kl("sdxl", lf.SDXL, checkpoint_key=r"^conditioner\.embedders\.1\.", name_markers=("sdxl",), name_tokens=("xl",)),
    _kl("sd3", lf.SD3, checkpoint_key=r"\.joint_blocks\.", name_markers=("sd3",)),
    _kl("flux", lf.FLUX, default=True, checkpoint_key=r"\.double_blocks\.", name_markers=("flux",),
        name_tokens=("ae", "f1")),
    _tiny("taesdxl", lf.SDXL),
    _tiny("taesd3", lf.SD3),
    _tiny("taef1", lf.FLUX, default=True),
    _tiny("taesd", lf.SD15, default=True),
])  # fmt: skip
"""The built-in VAE families (SD1.x/SD2.x, SDXL, SD3, Flux and their TAESD counterparts)."""

FAMILIES = REGISTRY.names()
KL_FAMILIES = REGISTRY.names("kl")
TAESD_NAMES = REGISTRY.taesd_prefixes()
"""TAESD variants, longest prefix first (``taesd`` is a prefix of ``taesdxl``)."""


def shipped_config(family: str) -> dict:
    """The diffusers config shipped for ``family`` of :data:`REGISTRY` (a fresh dict)."""
    return REGISTRY.get(family).shipped_config()


_MOVED = ("StateDict", "taesd_layout", "extract_vae_state_dict", "checkpoint_family_hint", "name_family_hint",
          "detect_vae_family", "infer_kl_config", "infer_tiny_config")


def __getattr__(name: str) -> object:
    """Names that moved to :mod:`latent_ops.vae.detect` (``families.detect_vae_family`` keeps working)."""
    if name in _MOVED:
        from . import detect

        return getattr(detect, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
