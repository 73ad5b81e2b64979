"""Loading VAEs offline: one entry point for every format, and the names offered to VAE pickers.

Formats: diffusers folders (``config.json`` + ``diffusion_pytorch_model.safetensors``), single
``.safetensors`` files in the original LDM layout or diffusers layout (standalone VAE, or the VAE
inside a full checkpoint under ``first_stage_model.``/``vae.``), and TAESD encoder/decoder pairs
(``taesd_encoder.safetensors`` + ``taesd_decoder.safetensors``, also ``taesdxl_``, ``taesd3_``,
``taef1_``). The architecture is read from the tensor shapes on top of a config shipped in
``latent_ops/configs/``; nothing is fetched from a hub.

Families are the records of :data:`latent_ops.vae.families.REGISTRY` (``sd15`` for SD1.x/SD2.x,
``sdxl``, ``sd3``, ``flux``, ``taesd``, ``taesdxl``, ``taesd3``, ``taef1``; detected by
:mod:`latent_ops.vae.detect`), plus ``embedded`` for the package's default VAE and ``custom`` for
other diffusers folders whose scaling factor is not a known family's (their config's
scale/shift/channels are used).
SD1.5 and SDXL VAEs (and SD3 and Flux VAEs) have identical shapes: the family comes from
``family=``, then from markers of a full checkpoint, then from the file name (``xl``, ``sd3``,
``flux``/``ae``), and defaults to ``sd15`` for 4-channel and ``flux`` for 16-channel VAEs.

Reading weight files safely (header checks, pickles refused by default) is in
:mod:`latent_ops.weights.files`; ``ModelLoadError`` and ``load_state_dict_safely`` are re-exported.
"""


from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from ..deps import require
from ..limits import excerpt
from ..weights import ldm_convert
from ..weights.files import (
    PICKLE_EXTENSIONS,
    SAFE_EXTENSIONS,
    ModelLoadError,
    load_state_dict_safely,
    model_loader,
)
from .detect import (
    StateDict,
    checkpoint_family_hint,
    detect_vae_family,
    extract_vae_state_dict,
    family_from_config,
    infer_kl_config,
    infer_tiny_config,
    name_family_hint,
    taesd_layout,
)
from .families import FAMILIES, REGISTRY, TAESD_NAMES
from .wrapper import VAE

__all__ = [
    "CONFIG_BOUNDS", "FAMILIES", "ModelLoadError", "check_config", "default_vae_path", "detect_vae_family", "extract_vae_state_dict",
    "load_state_dict_safely", "load_vae", "resolve_vae_choice", "vae_choices",
]  # fmt: skip

log = logging.getLogger(__name__)

EMBEDDED_VAE_DIR = Path(__file__).resolve().parents[1] / "embedded" / "default" / "vae"
DEFAULT_VAE_NAME = "latent-ops-default"


# --------------------------------------------------------------------------- configs
CONFIG_BOUNDS: dict[str, tuple[int, int]] = {
    "in_channels": (1, 64), "out_channels": (1, 64), "latent_channels": (1, 1024), "norm_num_groups": (1, 4096),
    "layers_per_block": (0, 32), "block_out_channels": (1, 4096), "encoder_block_out_channels": (1, 4096),
    "decoder_block_out_channels": (1, 4096), "num_encoder_blocks": (0, 64), "num_decoder_blocks": (0, 64),
    "upsampling_scaling_factor": (1, 16), "sample_size": (1, 65536),
}  # fmt: skip
"""Sane bounds of the size fields of a VAE config (an int, or every item of a list), 8-100x the
largest released VAE: nothing outside them is built."""
MAX_CONFIG_LIST = 16
"""Entries of a list field (resolution levels, block types)."""


def check_config(cfg: object, source: str) -> dict:
    """``cfg`` if it is a JSON object whose size fields lie within :data:`CONFIG_BOUNDS`.

    Checked before any module is built, so a config that asks for a 16384-channel level or
    100000 layers per block is refused in microseconds (the weights' own shapes are then compared
    with the module the config describes before anything is allocated, in ``_build``).

    Raises:
        ModelLoadError: naming ``source`` (the config file or weights file), the key and the value.
    """
    if not isinstance(cfg, dict):
        raise ModelLoadError(f"{source}: a VAE config must be a JSON object, got {type(cfg).__name__}")
    for key in sorted(cfg.keys() & (set(CONFIG_BOUNDS) | {"down_block_types", "up_block_types"})):
        value = cfg[key]
        items = value if isinstance(value, list) else [value]
        if isinstance(value, list) and not 1 <= len(value) <= MAX_CONFIG_LIST:
            raise ModelLoadError(f"{source}: config {key} has {len(value)} entries, expected 1..{MAX_CONFIG_LIST}")
        lo, hi = CONFIG_BOUNDS.get(key, (None, None))
        if lo is not None and any(isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi for v in items):
            raise ModelLoadError(f"{source}: config {key}={excerpt(value)} is out of bounds: each value must be an "
                                 f"int in {lo}..{hi}")
    return cfg


# --------------------------------------------------------------------------- building
def _build(
    state_dict: StateDict,
    cfg: dict,
    family: str,
    source: str,
    device: torch.device | str,
    dtype: torch.dtype,
    memory_budget: int | None,
    config_source: str | None = None,
) -> VAE:
    """The VAE ``cfg`` describes, with ``state_dict``'s weights; ``config_source`` names a config file."""
    require("diffusers", f"Loading the VAE {source}")
    from diffusers import AutoencoderKL, AutoencoderTiny

    check_config(cfg, config_source or source)
    cls = AutoencoderTiny if cfg.get("_class_name") == "AutoencoderTiny" else AutoencoderKL
    init = {k: v for k, v in cfg.items() if not k.startswith("_")}
    if cls is AutoencoderTiny:
        init.pop("block_out_channels", None)  # deprecated alias of the encoder/decoder lists
    try:
        with torch.device("meta"):  # shapes only: nothing is allocated until they match the file
            skeleton = cls.from_config(init)
    except (TypeError, ValueError, ZeroDivisionError, AttributeError, KeyError, IndexError) as exc:
        raise ModelLoadError(f"{config_source or source}: invalid {cls.__name__} config ({excerpt(str(exc))})") from None
    against = f" (config {config_source})" if config_source else ""
    missing, unexpected = [], []
    own = skeleton.state_dict()
    for k in own:
        if k not in state_dict:
            missing.append(k)
    for k in state_dict:
        if k not in own:
            unexpected.append(k)
    if missing or unexpected:
        raise ModelLoadError(
            f"{source}: weights do not match a {family} {cls.__name__}{against}: {len(missing)} missing "
            f"(e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]})"
        )
    bad = [f"{k}: file {tuple(state_dict[k].shape)} vs model {tuple(v.shape)}" for k, v in own.items() if state_dict[k].shape != v.shape]
    if bad:
        raise ModelLoadError(f"{source}: wrong tensor shapes for {family}{against}: {'; '.join(bad[:3])}")
    module = cls.from_config(init)
    module.load_state_dict({k: v.to(own[k].dtype) for k, v in state_dict.items()}, strict=True)
    fmt = REGISTRY.latent_format(family, cfg)
    return VAE(module, fmt, family, device=device, dtype=dtype, memory_budget=memory_budget)


def _taesd_pair(path: Path) -> tuple[Path | None, Path | None, str | None]:
    found = REGISTRY.taesd_file(path.name)
    if found is None:
        return None, None, None
    n = len(found[0])  # keep the file's own spelling of the prefix and extension
    return (path.with_name(f"{path.name[:n]}_encoder{path.name[n + 8 :]}"),
            path.with_name(f"{path.name[:n]}_decoder{path.name[n + 8 :]}"), found[0])


def default_vae_path() -> Path | None:
    """The embedded default VAE folder if it has been trained and shipped, else None."""
    return EMBEDDED_VAE_DIR if (EMBEDDED_VAE_DIR / "config.json").is_file() else None


@model_loader()
def load_vae(
    path: str | Path,
    *,
    family: str | None = None,
    allow_pickle: bool = False,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    config: dict | None = None,
    memory_budget: int | None = None,
) -> VAE:
    """Load a VAE from a diffusers folder, a single weights file, or a TAESD file pair.

    Args:
        path: diffusers folder; ``.safetensors`` VAE or full checkpoint (LDM or diffusers keys);
            ``taesd*_encoder``/``_decoder`` file (its partner is found by name).
        family: override the family (see the module docstring for the defaults).
        allow_pickle: accept ``.ckpt``/``.pt``/``.pth``/``.bin`` via ``torch.load(weights_only=True)``.
        device, dtype: where and in which precision the VAE runs.
        config: diffusers config overrides (e.g. ``{"norm_num_groups": 16}``) for unusual models.
        memory_budget: bytes for the VAE's batching/tiling choices (None = 70 % of free memory).

    Returns:
        A :class:`latent_ops.vae.wrapper.VAE`.

    Raises:
        ModelLoadError: missing/unsafe/corrupt files, unknown layouts, wrong keys or shapes, a
            config outside :data:`CONFIG_BOUNDS` (all naming the file; see
            :func:`latent_ops.weights.files.model_errors`).
    """
    path = Path(path)
    source = str(path)
    if path.is_dir():
        cfg_path = path / "config.json"
        if not cfg_path.is_file() and (path / "vae" / "config.json").is_file():
            path, cfg_path = path / "vae", path / "vae" / "config.json"
        try:
            cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError) as exc:  # JSON and Unicode errors are ValueErrors
            raise ModelLoadError(f"{cfg_path}: cannot read diffusers config ({exc})") from None
        weights = [path / n for n in ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")]
        weights = [w for w in weights if w.is_file()]
        if not weights:
            raise ModelLoadError(f"{source}: no diffusion_pytorch_model.safetensors in the folder")
        cfg = check_config(cfg, str(cfg_path))
        sd = ldm_convert.normalize_diffusers_vae(load_state_dict_safely(weights[0], allow_pickle))
        cfg.update(config or {})
        fam = family or ("embedded" if path.resolve() == EMBEDDED_VAE_DIR.resolve() else family_from_config(cfg))
        return _build(sd, cfg, fam, source, device, dtype, memory_budget, str(cfg_path))
    enc_path, dec_path, tiny = _taesd_pair(path)
    if tiny is not None:
        parts = {}
        for label, p in (("encoder", enc_path), ("decoder", dec_path)):
            if p is None or not p.is_file():
                raise ModelLoadError(f"{source}: TAESD {label} file {str(p)!r} not found (both halves are needed)")
            parts[label] = load_state_dict_safely(p, allow_pickle)
        try:
            sd = ldm_convert.taesd_original_to_diffusers(parts["encoder"], parts["decoder"])
        except ValueError as exc:
            raise ModelLoadError(f"{source}: {exc}") from None
        fam = detect_vae_family(sd, family or tiny)
        cfg = infer_tiny_config(sd, fam)
        cfg.update(config or {})
        return _build(sd, cfg, fam, source, device, dtype, memory_budget)
    raw = load_state_dict_safely(path, allow_pickle)
    try:
        if taesd_layout(raw) == "diffusers":
            fam = detect_vae_family(raw, family or name_family_hint(path))
            cfg = infer_tiny_config(raw, fam)
            sd = raw
        else:
            fam = detect_vae_family(raw, family or checkpoint_family_hint(raw) or name_family_hint(path))
            sd = extract_vae_state_dict(raw)
            sd = ldm_convert.vae_ldm_to_diffusers(sd) if ldm_convert.is_ldm_vae(sd) else ldm_convert.normalize_diffusers_vae(sd)
            cfg = infer_kl_config(sd, fam)
    except ModelLoadError as exc:
        raise ModelLoadError(f"{source}: {exc}") from None
    except ValueError as exc:
        raise ModelLoadError(f"{source}: {exc}") from None
    cfg.update(config or {})
    return _build(sd, cfg, fam, source, device, dtype, memory_budget)


# --------------------------------------------------------------------------- listings
def vae_choices(vae_folders: list[Path], approx_folders: list[Path]) -> list[str]:
    """Names for a VAE picker: embedded default first, then files/folders, then TAESD pairs.

    Args:
        vae_folders: folders of VAE files (``models/vae``).
        approx_folders: folders of TAESD halves (``models/vae_approx``).
    """
    from ..weights import folders as model_paths

    names: list[str] = [DEFAULT_VAE_NAME] if default_vae_path() is not None else []
    names += model_paths.list_models("vae", SAFE_EXTENSIONS + PICKLE_EXTENSIONS, vae_folders)
    names += model_paths.list_model_dirs("vae", "config.json", vae_folders)
    files = set(model_paths.list_models("vae_approx", SAFE_EXTENSIONS + PICKLE_EXTENSIONS, approx_folders))
    for t in TAESD_NAMES:
        if any(f.startswith(f"{t}_encoder.") for f in files) and any(f.startswith(f"{t}_decoder.") for f in files):
            names.append(t)
    return names


def resolve_vae_choice(name: str, vae_folders: list[Path], approx_folders: list[Path]) -> Path:
    """Path behind a :func:`vae_choices` name (confined to the folders; see ``model_paths``)."""
    from ..weights import folders as model_paths

    if name == DEFAULT_VAE_NAME:
        found = default_vae_path()
        if found is None:
            raise ModelLoadError(f"{DEFAULT_VAE_NAME}: the embedded default VAE is not installed")
        return found
    if name in TAESD_NAMES:
        for ext in SAFE_EXTENSIONS + PICKLE_EXTENSIONS:
            try:
                return model_paths.resolve_in(approx_folders, f"{name}_decoder{ext}")
            except model_paths.ModelPathError:
                continue
        raise ModelLoadError(f"{name}: no {name}_decoder file in {[str(f) for f in approx_folders]}")
    return model_paths.resolve_in(vae_folders, name)
