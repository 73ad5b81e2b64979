"""Loading VAEs offline: file safety checks, format and family detection, configs shipped here.

Formats: diffusers folders (``config.json`` + ``diffusion_pytorch_model.safetensors``), single
``.safetensors`` files in the original LDM layout or diffusers layout (standalone VAE, or the VAE
inside a full checkpoint under ``first_stage_model.``/``vae.``), and TAESD encoder/decoder pairs
(``taesd_encoder.safetensors`` + ``taesd_decoder.safetensors``, also ``taesdxl_``, ``taesd3_``,
``taef1_``). The architecture is read from the tensor shapes on top of a config shipped in
``latent_ops/configs/``; nothing is fetched from a hub.

Families: ``sd15`` (SD1.x/SD2.x), ``sdxl``, ``sd3``, ``flux``, ``taesd``, ``taesdxl``, ``taesd3``,
``taef1``, ``embedded`` for the package's default VAE, and ``custom`` for other diffusers folders
whose scaling factor is not a known family's (their config's scale/shift/channels are used).
SD1.5 and SDXL VAEs (and SD3 and Flux VAEs) have identical shapes: the family comes from
``family=``, then from markers of a full checkpoint, then from the file name (``xl``, ``sd3``,
``flux``/``ae``), and defaults to ``sd15`` for 4-channel and ``flux`` for 16-channel VAEs.

Reading weight files safely (header checks, pickles refused by default) is in
:mod:`latent_ops.model_files`; ``ModelLoadError`` and ``load_state_dict_safely`` are re-exported.
"""


from __future__ import annotations

import json
import logging
import math
import re
from pathlib import Path

import torch
from torch import Tensor

from . import latent_format as lf
from . import ldm_convert
from .deps import require
from .model_files import PICKLE_EXTENSIONS, SAFE_EXTENSIONS, ModelLoadError, load_state_dict_safely
from .vae import VAE

__all__ = [
    "FAMILIES", "ModelLoadError", "default_vae_path", "detect_vae_family", "extract_vae_state_dict",
    "load_state_dict_safely", "load_vae", "resolve_vae_choice", "vae_choices",
]  # fmt: skip

log = logging.getLogger(__name__)

StateDict = dict[str, Tensor]

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
EMBEDDED_VAE_DIR = Path(__file__).resolve().parent / "embedded" / "default" / "vae"
DEFAULT_VAE_NAME = "latent-ops-default"

TAESD_NAMES = ("taesdxl", "taesd3", "taef1", "taesd")
"""TAESD variants, longest prefix first (``taesd`` is a prefix of ``taesdxl``)."""

KL_FAMILIES = ("sd15", "sdxl", "sd3", "flux")
FAMILIES = (*KL_FAMILIES, *TAESD_NAMES)
FAMILY_CONFIG = {
    "sd15": "sd15-vae",
    "sdxl": "sdxl-vae",
    "sd3": "sd3-vae",
    "flux": "flux-vae",
    "taesd": "taesd",
    "taesdxl": "taesdxl",
    "taesd3": "taesd3",
    "taef1": "taef1",
}
TAESD_FORMAT = {"taesd": "sd15", "taesdxl": "sdxl", "taesd3": "sd3", "taef1": "flux"}


# --------------------------------------------------------------------------- detection
def _taesd_kind(state_dict: StateDict) -> str | None:
    keys = list(state_dict)
    if keys and all(re.match(r"^\d+\.", k) for k in keys):
        return "original"
    if any(k.startswith(("encoder.layers.", "decoder.layers.")) for k in keys):
        return "diffusers"
    return None


def extract_vae_state_dict(state_dict: StateDict) -> StateDict:
    """The bare KL-VAE weights of a standalone VAE file or a full checkpoint (prefix removed).

    Raises:
        ModelLoadError: if no VAE weights are found.
    """
    bare_prefixes = ("encoder.", "decoder.", "quant_conv.", "post_quant_conv.")
    bare = {k: v for k, v in state_dict.items() if k.startswith(bare_prefixes)}
    if bare:
        return bare
    found = ldm_convert.split_by_prefix(state_dict, ldm_convert.VAE_PREFIXES)
    if found is None:
        sample = ", ".join(list(state_dict)[:3])
        raise ModelLoadError(
            f"no VAE weights found (expected 'encoder.conv_in.weight' or 'first_stage_model.encoder...'; "
            f"first keys: {sample})"
        )
    return found[1]


def checkpoint_family_hint(state_dict: StateDict) -> str | None:
    """Family implied by the non-VAE parts of a full checkpoint, or None."""
    keys = state_dict.keys()
    if any(k.startswith("conditioner.embedders.1.") for k in keys):
        return "sdxl"
    if any(".joint_blocks." in k for k in keys):
        return "sd3"
    if any(".double_blocks." in k for k in keys):
        return "flux"
    if any(k.startswith("cond_stage_model.") for k in keys):
        return "sd15"
    return None


def name_family_hint(path: str | Path) -> str | None:
    """Family implied by a file or folder name (``sdxl_vae``, ``taesd3_decoder``, ``ae``...)."""
    name = Path(path).name.lower()
    for t in TAESD_NAMES:
        if name.startswith(t):
            return t
    tokens = set(re.split(r"[^a-z0-9]+", Path(name).stem))
    if "sdxl" in tokens or "xl" in tokens or "sdxl" in name:
        return "sdxl"
    if "sd3" in name:
        return "sd3"
    if "flux" in name or tokens & {"ae", "f1"}:
        return "flux"
    return None


def _latent_channels(state_dict: StateDict) -> int:
    w = state_dict.get("decoder.conv_in.weight")
    if w is None or w.ndim != 4:
        raise ModelLoadError("KL VAE without a 4-D 'decoder.conv_in.weight'")
    return int(w.shape[1])


def _tiny_latent_channels(state_dict: StateDict) -> int:
    if _taesd_kind(state_dict) == "original":
        if "0.weight" in state_dict:  # an encoder file (a decoder file starts with a Clamp at 0)
            state_dict = ldm_convert.taesd_original_to_diffusers(state_dict, None)
        else:
            state_dict = ldm_convert.taesd_original_to_diffusers(None, state_dict)
    idx = sorted({int(k.split(".")[2]) for k in state_dict if k.startswith("encoder.layers.")})
    try:
        if idx:
            return int(state_dict[f"encoder.layers.{idx[-1]}.weight"].shape[0])
        return int(state_dict["decoder.layers.0.weight"].shape[1])
    except (KeyError, IndexError) as exc:
        raise ModelLoadError(f"TAESD weights without a readable first/last convolution ({exc!r})") from None


def detect_vae_family(state_dict: StateDict, hint: str | None = None) -> str:
    """Family of a VAE state dict (any supported layout, prefixed or bare).

    Args:
        state_dict: weights of a KL VAE, a full checkpoint, or a TAESD encoder/decoder.
        hint: preferred family among the shape-compatible ones (``"sdxl"`` for a 4-channel KL VAE).

    Returns:
        One of :data:`FAMILIES`.

    Raises:
        ModelLoadError: unknown layout, unsupported latent channels, or a hint that contradicts
            the shapes.
    """
    if hint is not None and hint not in FAMILIES:
        raise ModelLoadError(f"unknown VAE family {hint!r}; known: {list(FAMILIES)}")
    if _taesd_kind(state_dict) is not None:
        ch = _tiny_latent_channels(state_dict)
        options = {4: ("taesd", "taesdxl"), 16: ("taef1", "taesd3")}.get(ch)
    else:
        hint = hint or checkpoint_family_hint(state_dict)
        ch = _latent_channels(extract_vae_state_dict(state_dict))
        options = {4: ("sd15", "sdxl"), 16: ("flux", "sd3")}.get(ch)
        if hint in TAESD_NAMES:
            raise ModelLoadError(f"family {hint!r} given for a KL VAE (a TAESD family needs TAESD weights)")
    if options is None:
        raise ModelLoadError(f"unsupported latent channel count {ch}: known VAEs have 4 or 16")
    if hint is None:
        return options[0]
    if hint not in options:
        raise ModelLoadError(f"family {hint!r} does not fit these weights ({ch} latent channels: one of {list(options)})")
    return hint


# --------------------------------------------------------------------------- configs
def shipped_config(family: str) -> dict:
    """The diffusers config shipped for ``family`` (a fresh dict)."""
    if family not in FAMILY_CONFIG:
        raise ModelLoadError(f"unknown VAE family {family!r}; known: {list(FAMILY_CONFIG)}")
    return json.loads((CONFIG_DIR / FAMILY_CONFIG[family] / "config.json").read_text(encoding="utf-8"))


def infer_kl_config(state_dict: StateDict, family: str) -> dict:
    """``AutoencoderKL`` config for diffusers-layout weights: the family's shipped config with the
    shape-derived fields replaced (levels, channels, resnets, quant convs, attention).

    ``norm_num_groups`` cannot be read from shapes; it is ``gcd(32, *block_out_channels)`` (32
    for every released VAE). Pass ``config=`` to :func:`load_vae` for anything else.
    """
    cfg = shipped_config(family)
    n_levels, per = ldm_convert.count_levels(state_dict, ldm=False)
    try:
        up = [int(state_dict[f"decoder.up_blocks.{i}.resnets.0.conv1.weight"].shape[0]) for i in range(n_levels)]
        chans = up[::-1]
        in_ch = int(state_dict["encoder.conv_in.weight"].shape[1])
        out_ch = int(state_dict["decoder.conv_out.weight"].shape[0])
    except KeyError as exc:
        raise ModelLoadError(f"KL VAE is missing {exc.args[0]!r}") from None
    cfg.update(
        block_out_channels=chans,
        layers_per_block=per,
        down_block_types=["DownEncoderBlock2D"] * n_levels,
        up_block_types=["UpDecoderBlock2D"] * n_levels,
        latent_channels=_latent_channels(state_dict),
        in_channels=in_ch,
        out_channels=out_ch,
        use_quant_conv="quant_conv.weight" in state_dict,
        use_post_quant_conv="post_quant_conv.weight" in state_dict,
        mid_block_add_attention=any(".mid_block.attentions.0." in k for k in state_dict),
        norm_num_groups=math.gcd(32, *chans),
    )
    return cfg


def _tiny_runs(state_dict: StateDict, part: str) -> tuple[list[int], list[int]]:
    layers: dict[int, bool] = {}
    for k in state_dict:
        m = re.match(rf"^{part}\.layers\.(\d+)\.(conv\.)?", k)
        if m:
            layers[int(m[1])] = layers.get(int(m[1]), False) or bool(m[2])
    counts, chans, run = [], [], 0
    for i in sorted(layers):
        if layers[i]:
            if run == 0:
                chans.append(int(state_dict[f"{part}.layers.{i}.conv.0.weight"].shape[0]))
            run += 1
        elif run:
            counts.append(run)
            run = 0
    if run:
        counts.append(run)
    return counts, chans


def infer_tiny_config(state_dict: StateDict, family: str) -> dict:
    """``AutoencoderTiny`` config for diffusers-layout weights (block counts/channels from keys)."""
    cfg = shipped_config(family)
    enc_n, enc_c = _tiny_runs(state_dict, "encoder")
    dec_n, dec_c = _tiny_runs(state_dict, "decoder")
    if enc_n:
        cfg.update(num_encoder_blocks=enc_n, encoder_block_out_channels=enc_c)
    if dec_n:
        cfg.update(num_decoder_blocks=dec_n, decoder_block_out_channels=dec_c)
    cfg["latent_channels"] = _tiny_latent_channels(state_dict)
    return cfg


# --------------------------------------------------------------------------- building
def _latent_format(family: str, cfg: dict) -> lf.LatentFormat:
    channels = int(cfg["latent_channels"])
    if family in TAESD_FORMAT:
        base = lf.get(TAESD_FORMAT[family])
        return lf.LatentFormat(base.name, channels, base.downscale, base.scale, base.shift)
    down = 2 ** (len(cfg["block_out_channels"]) - 1)
    shift = cfg.get("shift_factor") or 0.0
    return lf.LatentFormat(family, channels, down, float(cfg.get("scaling_factor") or 1.0), float(shift))


def _build(
    state_dict: StateDict,
    cfg: dict,
    family: str,
    source: str,
    device: torch.device | str,
    dtype: torch.dtype,
    memory_budget: int | None,
) -> VAE:
    require("diffusers", f"Loading the VAE {source}")
    from diffusers import AutoencoderKL, AutoencoderTiny

    cls = AutoencoderTiny if cfg.get("_class_name") == "AutoencoderTiny" else AutoencoderKL
    init = {k: v for k, v in cfg.items() if not k.startswith("_")}
    if cls is AutoencoderTiny:
        init.pop("block_out_channels", None)  # deprecated alias of the encoder/decoder lists
    try:
        module = cls.from_config(init)
    except (TypeError, ValueError, ZeroDivisionError) as exc:
        raise ModelLoadError(f"{source}: invalid {cls.__name__} config ({exc})") from None
    missing, unexpected = [], []
    own = module.state_dict()
    for k in own:
        if k not in state_dict:
            missing.append(k)
    for k in state_dict:
        if k not in own:
            unexpected.append(k)
    if missing or unexpected:
        raise ModelLoadError(
            f"{source}: weights do not match a {family} {cls.__name__}: {len(missing)} missing "
            f"(e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]})"
        )
    bad = [f"{k}: file {tuple(state_dict[k].shape)} vs model {tuple(v.shape)}" for k, v in own.items() if state_dict[k].shape != v.shape]
    if bad:
        raise ModelLoadError(f"{source}: wrong tensor shapes for {family}: {'; '.join(bad[:3])}")
    module.load_state_dict({k: v.to(own[k].dtype) for k, v in state_dict.items()}, strict=True)
    fmt = _latent_format(family, cfg)
    return VAE(module, fmt, family, device=device, dtype=dtype, memory_budget=memory_budget)


def _taesd_pair(path: Path) -> tuple[Path | None, Path | None, str | None]:
    name = path.name.lower()
    m = re.match(r"^(taesdxl|taesd3|taef1|taesd)_(encoder|decoder)(\..+)$", name)
    if m is None:
        return None, None, None
    enc = path.with_name(f"{path.name[: len(m[1])]}_encoder{path.name[len(m[1]) + 8 :]}")
    dec = path.with_name(f"{path.name[: len(m[1])]}_decoder{path.name[len(m[1]) + 8 :]}")
    return enc, dec, m[1]


def default_vae_path() -> Path | None:
    """The embedded default VAE folder if it has been trained and shipped, else None."""
    return EMBEDDED_VAE_DIR if (EMBEDDED_VAE_DIR / "config.json").is_file() else None


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
        A :class:`latent_ops.vae.VAE`.

    Raises:
        ModelLoadError: missing/unsafe/corrupt files, unknown layouts, wrong keys or shapes.
    """
    path = Path(path)
    source = str(path)
    if path.is_dir():
        cfg_path = path / "config.json"
        if not cfg_path.is_file() and (path / "vae" / "config.json").is_file():
            path, cfg_path = path / "vae", path / "vae" / "config.json"
        try:
            cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ModelLoadError(f"{cfg_path}: cannot read diffusers config ({exc})") from None
        weights = [path / n for n in ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")]
        weights = [w for w in weights if w.is_file()]
        if not weights:
            raise ModelLoadError(f"{source}: no diffusion_pytorch_model.safetensors in the folder")
        sd = ldm_convert.normalize_diffusers_vae(load_state_dict_safely(weights[0], allow_pickle))
        cfg.update(config or {})
        fam = family or ("embedded" if path.resolve() == EMBEDDED_VAE_DIR.resolve() else _family_from_config(cfg))
        return _build(sd, cfg, fam, source, device, dtype, memory_budget)
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
        if _taesd_kind(raw) == "diffusers":
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


def _family_from_config(cfg: dict) -> str:
    if cfg.get("_class_name") == "AutoencoderTiny":
        return {4: "taesd", 16: "taef1"}.get(int(cfg.get("latent_channels", 4)), "taesd")
    scale = cfg.get("scaling_factor")
    for fam in KL_FAMILIES:
        f = lf.get(fam)
        if scale is not None and abs(float(scale) - f.scale) < 1e-6 and int(cfg.get("latent_channels", 4)) == f.channels:
            return fam
    return "custom"


# --------------------------------------------------------------------------- listings
def vae_choices(vae_folders: list[Path], approx_folders: list[Path]) -> list[str]:
    """Names for a VAE picker: embedded default first, then files/folders, then TAESD pairs.

    Args:
        vae_folders: folders of VAE files (``models/vae``).
        approx_folders: folders of TAESD halves (``models/vae_approx``).
    """
    from . import model_paths

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
    from . import model_paths

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
