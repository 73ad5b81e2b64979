"""Offline loading of SD1.x / SD2.x / SDXL (and the embedded default) into (model, text encoder, VAE).

Sources, dispatched on what ``path`` is:

- the embedded default folder (``latent_ops/embedded/default``, or any folder whose
  ``model_index.json`` names a ``LatentOps*`` class): ``latent_ops.embedded.loader.load_embedded``
  returns ``(backbone, text_encoder, vae_module, config)``; ``config`` may hold ``prediction``,
  ``beta_schedule``, ``beta_start``, ``beta_end``, ``num_train_timesteps`` (scaled-linear SD
  defaults otherwise) and ``latent_format`` (else the VAE config's scale/shift are used);
- a diffusers pipeline folder (``model_index.json``, ``unet/``, ``text_encoder[_2]/``,
  ``tokenizer[_2]/``, ``vae/``, ``scheduler/``);
- a single ``.safetensors`` checkpoint in the original LDM layout: UNet and CLIP keys are
  converted with diffusers' converters onto the configs shipped in ``latent_ops/configs/``
  (``<family>-unet``, ``<family>-clip*``); tokenizers do not live in such files, so a CLIP
  tokenizer folder must be given (``tokenizer_dir``, ``<file stem>.tokenizer/`` beside the file,
  or ``$LATENT_OPS_CLIP_TOKENIZER``).

Nothing is downloaded: every ``from_pretrained`` gets ``local_files_only=True``. Only safetensors
weights are read (``use_safetensors=True``; a folder holding only pickled ``.bin`` weights is
refused), and each folder's config is checked against its weights before a module is built
(:mod:`latent_ops.weights.preflight`). Whatever a malformed file makes the parsers raise comes
out as a :class:`~latent_ops.errors.CheckpointError` naming the path.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..deps import require
from ..errors import CheckpointError
from ..latent_format import LatentFormat
from ..sampling.denoisers import DiscreteSampling
from ..sampling.diffusion import DiffusionModel, TextEncoder
from ..vae import loading as models
from ..vae.geometry import latent_format_from_config
from ..weights.files import model_loader
from ..weights.preflight import check_folder
from .text_encoders import ClipPart, ClipTextEncoder, UNetBackbone

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
EMBEDDED_DIR = Path(__file__).resolve().parents[1] / "embedded" / "default"
DEFAULT_NAME = "latent-ops-default"
CHECKPOINT_EXTENSIONS = (".safetensors", ".sft")

_FAMILY_MARKERS = (
    ("sdxl", "conditioner.embedders.1.model.ln_final.weight"),
    ("sd2", "cond_stage_model.model.ln_final.weight"),
    ("sd1", "cond_stage_model.transformer.text_model.final_layer_norm.weight"),
)


def embedded_available() -> bool:
    """True when the embedded default model has been shipped."""
    return (EMBEDDED_DIR / "model_index.json").is_file()


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: cannot read JSON ({exc})") from None


def sampling_from_config(cfg: dict, prediction: str | None = None) -> DiscreteSampling:
    """A :class:`DiscreteSampling` from a diffusers scheduler config (or the embedded config dict)."""
    pred = prediction or {"epsilon": "eps", "v_prediction": "v"}.get(cfg.get("prediction_type", "epsilon"),
                                                                     cfg.get("prediction", "eps"))
    if pred not in ("eps", "v"):
        raise CheckpointError(f"unsupported prediction type {pred!r} (expected eps or v)")
    return DiscreteSampling.from_betas(cfg.get("beta_schedule", "scaled_linear"),
                                       int(cfg.get("num_train_timesteps", 1000)),
                                       float(cfg.get("beta_start", 0.00085)), float(cfg.get("beta_end", 0.012)),
                                       prediction=pred)


@model_loader(CheckpointError)
def load_checkpoint(path: str | Path, *, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                    prediction: str | None = None, tokenizer_dir: str | Path | None = None,
                    config_dir: str | Path | None = None) -> tuple[DiffusionModel, TextEncoder, Any]:
    """Load ``(DiffusionModel, text encoder, latent_ops.vae.wrapper.VAE)`` from a folder or single file.

    Args: path: embedded/diffusers folder or ``.safetensors`` checkpoint. device, dtype: where and
        in which precision the networks run. prediction: override ``"eps"``/``"v"``.
        tokenizer_dir: CLIP tokenizer folder for single files. config_dir: a folder holding
        ``unet/``, ``text_encoder/``(``_2/``) configs that replace the shipped ones (tests, unusual
        models).
    Raises: CheckpointError (a ValueError) naming the path and what is wrong.
    """
    p = Path(path)
    if p.is_dir():
        index = p / "model_index.json"
        if not index.is_file():
            raise CheckpointError(f"{p}: not a model folder (no model_index.json)")
        if str(_read_json(index).get("_class_name", "")).startswith("LatentOps") or p.resolve() == EMBEDDED_DIR:
            return _load_embedded(p, device, dtype)
        return load_diffusers_folder(p, device=device, dtype=dtype, prediction=prediction)
    if p.is_file():
        return load_single_file(p, device=device, dtype=dtype, prediction=prediction,
                                tokenizer_dir=tokenizer_dir, config_dir=config_dir)
    raise CheckpointError(f"{p}: no such checkpoint file or folder")


def _load_embedded(folder: Path, device: torch.device | str,
                   dtype: torch.dtype) -> tuple[DiffusionModel, TextEncoder, Any]:
    from ..embedded.loader import load_embedded

    backbone, text_encoder, vae_module, cfg = load_embedded(folder, device, dtype)
    vcfg = vae_module.config
    fmt = cfg.get("latent_format")
    if not isinstance(fmt, LatentFormat):
        fmt = latent_format_from_config(vcfg, "embedded")
    from ..vae.wrapper import VAE

    vae = VAE(vae_module, fmt, "embedded", device=device, dtype=dtype)
    model = DiffusionModel(backbone, sampling_from_config(cfg), fmt, device=device, name=DEFAULT_NAME)
    return model, text_encoder, vae


def _clip_part(folder: Path, tok_name: str, te_name: str, layer: str, projection: bool) -> ClipPart:
    require("transformers", "Loading a CLIP text encoder")
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    cls = CLIPTextModelWithProjection if projection else CLIPTextModel
    check_folder(folder / te_name, lambda cfg: cls(cls.config_class.from_dict(cfg)), "model")
    try:
        tok = CLIPTokenizer.from_pretrained(folder / tok_name, local_files_only=True)
        model = cls.from_pretrained(folder / te_name, local_files_only=True, use_safetensors=True)
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{folder}: cannot load {te_name}/{tok_name} ({exc})") from None
    return ClipPart(tok, model, layer=layer, projection=projection)  # type: ignore[arg-type]


@model_loader(CheckpointError)
def load_diffusers_folder(folder: str | Path, *, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                          prediction: str | None = None) -> tuple[DiffusionModel, TextEncoder, Any]:
    """Load a diffusers SD1.x/SD2.x/SDXL pipeline folder (see the module docstring)."""
    require("diffusers", f"Loading the checkpoint folder {folder}")
    from diffusers import UNet2DConditionModel

    folder = Path(folder)
    for sub in ("unet", "text_encoder", "tokenizer", "vae"):
        if not (folder / sub).is_dir():
            raise CheckpointError(f"{folder}: missing sub-folder {sub!r} of a diffusers pipeline")
    check_folder(folder / "unet", UNet2DConditionModel.from_config, "diffusion_pytorch_model")
    try:
        unet = UNet2DConditionModel.from_pretrained(folder / "unet", local_files_only=True, use_safetensors=True)
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{folder}: cannot load unet ({exc})") from None
    sdxl = (folder / "text_encoder_2").is_dir()
    parts = [_clip_part(folder, "tokenizer", "text_encoder", "penultimate" if sdxl else "last", False)]
    if sdxl:
        parts.append(_clip_part(folder, "tokenizer_2", "text_encoder_2", "penultimate", True))
    vae = models.load_vae(folder / "vae", device=device, dtype=dtype)
    sched = folder / "scheduler" / "scheduler_config.json"
    ms = sampling_from_config(_read_json(sched) if sched.is_file() else {}, prediction)
    return _assemble(unet, parts, vae, ms, folder.name, device, dtype)


def _assemble(unet: Any, parts: list[ClipPart], vae: Any, ms: DiscreteSampling, name: str,
              device: torch.device | str, dtype: torch.dtype) -> tuple[DiffusionModel, TextEncoder, Any]:
    fmt = vae.latent_format
    if int(unet.config.in_channels) != fmt.channels:
        raise CheckpointError(f"{name}: UNet takes {unet.config.in_channels} channels but the VAE makes {fmt.channels}")
    width = sum(int(p.model.config.hidden_size) for p in parts)
    if width != int(unet.config.cross_attention_dim):
        raise CheckpointError(f"{name}: text encoders give {width}-dim tokens, UNet expects "
                              f"{unet.config.cross_attention_dim}")
    backbone = UNetBackbone(unet, downscale=vae.downscale_ratio, device=device, dtype=dtype)
    model = DiffusionModel(backbone, ms, fmt, device=device, name=name)
    return model, ClipTextEncoder(parts, device=device, name=f"{name}-clip"), vae


def detect_family(state_dict: dict) -> str:
    """``"sd1" | "sd2" | "sdxl"`` from the text-encoder keys of an LDM checkpoint."""
    for family, key in _FAMILY_MARKERS:
        if key in state_dict:
            return family
    raise CheckpointError("not an SD1.x/SD2.x/SDXL LDM checkpoint (no known text-encoder keys)")


def _v_heuristic(state_dict: dict) -> str:
    """SD2 768-v vs 512-base, as ComfyUI guesses it: std of one attention norm bias > 0.09 means v."""
    key = "model.diffusion_model.output_blocks.11.1.transformer_blocks.0.norm1.bias"
    t = state_dict.get(key)
    return "v" if t is not None and float(t.float().std()) > 0.09 else "eps"


def _tokenizer_dir(path: Path, tokenizer_dir: str | Path | None) -> Path:
    for cand in (tokenizer_dir, path.with_suffix(".tokenizer"), os.environ.get("LATENT_OPS_CLIP_TOKENIZER")):
        if cand and (Path(cand) / "vocab.json").is_file():
            return Path(cand)
    raise CheckpointError(f"{path}: single-file checkpoints carry no tokenizer; pass tokenizer_dir, put a CLIP "
                          f"tokenizer folder at {path.with_suffix('.tokenizer')}, or set LATENT_OPS_CLIP_TOKENIZER")


def _align_keys(module: torch.nn.Module, weights: dict) -> dict:
    """Add or strip ``text_model.`` so keys fit the module (transformers 5 dropped it on CLIPTextModel)."""
    own = set(module.state_dict())
    out = {}
    for k, v in weights.items():
        if k not in own:
            alt = k[len("text_model."):] if k.startswith("text_model.") else f"text_model.{k}"
            k = alt if alt in own else k
        out[k] = v
    return out


def _load_weights(build: Callable[[], torch.nn.Module], convert: Callable[[torch.nn.Module], dict], what: str,
                  path: Path) -> torch.nn.Module:
    """``build()`` with the weights ``convert(module)`` gives, checked on a ``meta`` build first.

    Every key and shape is compared before the real module is allocated, so a small file that
    claims to be an SDXL checkpoint costs no SDXL-sized allocation before it is refused.
    """
    with torch.device("meta"):
        skeleton = build()
    weights = _align_keys(skeleton, {k: v for k, v in convert(skeleton).items() if not k.endswith("position_ids")})
    own = skeleton.state_dict()
    missing = [k for k in own if k not in weights and not k.endswith("position_ids")]
    unexpected = [k for k in weights if k not in own]
    if missing or unexpected:
        raise CheckpointError(f"{path}: {what} keys do not match the config: missing {missing[:5]}, "
                              f"unexpected {unexpected[:5]}")
    bad = [f"{k}: file {tuple(v.shape)} vs model {tuple(own[k].shape)}" for k, v in weights.items()
           if tuple(v.shape) != tuple(own[k].shape)]
    if bad:
        raise CheckpointError(f"{path}: {what} tensor shapes do not match the config: {'; '.join(bad[:3])}")
    module = build()
    module.load_state_dict(weights, strict=False)
    return module


@model_loader(CheckpointError)
def load_single_file(path: str | Path, *, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                     prediction: str | None = None, tokenizer_dir: str | Path | None = None,
                     config_dir: str | Path | None = None) -> tuple[DiffusionModel, TextEncoder, Any]:
    """Load an LDM-layout SD1.x/SD2.x/SDXL ``.safetensors`` checkpoint (see the module docstring)."""
    for module in ("diffusers.loaders.single_file_utils", "transformers"):
        require(module, f"Loading the checkpoint {path}")
    from diffusers import UNet2DConditionModel
    from diffusers.loaders.single_file_utils import (
        convert_ldm_clip_checkpoint,
        convert_ldm_unet_checkpoint,
        convert_open_clip_checkpoint,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    path = Path(path)
    sd = models.load_state_dict_safely(path, allow_pickle=False)
    family = detect_family(sd)
    own = Path(config_dir) if config_dir else None

    def cfg_dir(sub: str, shipped: str) -> Path:
        return own / sub if own is not None else CONFIG_DIR / shipped

    ucfg = UNet2DConditionModel.load_config(cfg_dir("unet", f"{family if family != 'sd1' else 'sd15'}-unet"))
    unet = _load_weights(lambda: UNet2DConditionModel.from_config(ucfg),
                         lambda m: convert_ldm_unet_checkpoint(sd, m.config), "UNet", path)
    tok_dir = _tokenizer_dir(path, tokenizer_dir)
    tok = CLIPTokenizer.from_pretrained(tok_dir, local_files_only=True)
    bang = tok.convert_tokens_to_ids("!")  # OpenCLIP towers (SD2, SDXL's G) pad with "!" (id 0 in CLIP's vocab)
    pad_open = bang if isinstance(bang, int) and bang != tok.unk_token_id else None
    parts: list[ClipPart] = []
    def clip(cls: type, sub: str, shipped: str) -> Callable[[], torch.nn.Module]:
        return lambda: cls(CLIPTextConfig.from_pretrained(cfg_dir(sub, shipped)))

    if family == "sd1":
        te = _load_weights(clip(CLIPTextModel, "text_encoder", "sd15-clip"), lambda m: convert_ldm_clip_checkpoint(sd),
                           "CLIP", path)
        parts.append(ClipPart(tok, te, "last"))
    elif family == "sd2":
        te = _load_weights(clip(CLIPTextModel, "text_encoder", "sd2-clip"),
                           lambda m: convert_open_clip_checkpoint(m, sd, prefix="cond_stage_model.model."),
                           "OpenCLIP", path)
        parts.append(ClipPart(tok, te, "last", pad_id=pad_open))
    else:
        te1 = _load_weights(clip(CLIPTextModel, "text_encoder", "sdxl-clip-l"),
                            lambda m: convert_ldm_clip_checkpoint(sd), "CLIP-L", path)
        te2 = _load_weights(clip(CLIPTextModelWithProjection, "text_encoder_2", "sdxl-clip-g"),
                            lambda m: convert_open_clip_checkpoint(m, sd, prefix="conditioner.embedders.1.model."),
                            "CLIP-G", path)
        parts += [ClipPart(tok, te1, "penultimate"),
                  ClipPart(tok, te2, "penultimate", projection=True, pad_id=pad_open)]
    vae = models.load_vae(path, family="sdxl" if family == "sdxl" else "sd15", device=device, dtype=dtype)
    pred = prediction or (_v_heuristic(sd) if family == "sd2" else "eps")
    ms = DiscreteSampling.from_betas(prediction=pred)  # type: ignore[arg-type]
    return _assemble(unet, parts, vae, ms, path.stem, device, dtype)


def checkpoint_choices(checkpoint_folders: list[Path], diffusers_folders: list[Path]) -> list[str]:
    """Names for the loader node: the embedded default first, then files, then diffusers folders."""
    from ..weights import folders as model_paths

    names = [DEFAULT_NAME] if embedded_available() else []
    names += model_paths.list_models("checkpoints", CHECKPOINT_EXTENSIONS, checkpoint_folders)
    names += [n for n in model_paths.list_model_dirs("diffusers", "model_index.json", diffusers_folders)
              if n not in names]
    return names


def resolve_checkpoint(name: str, checkpoint_folders: list[Path], diffusers_folders: list[Path]) -> Path:
    """Path of a :func:`checkpoint_choices` name. Raises ValueError when it is not found."""
    from ..weights import folders as model_paths

    if name == DEFAULT_NAME:
        if not embedded_available():
            raise CheckpointError(f"{DEFAULT_NAME}: the embedded default model is not installed")
        return EMBEDDED_DIR
    try:
        return model_paths.resolve_in(checkpoint_folders, name)
    except ValueError:
        return model_paths.resolve_in(diffusers_folders, name)
