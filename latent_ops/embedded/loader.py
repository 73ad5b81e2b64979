"""Load the embedded default model folder (``latent_ops/embedded/default``) or one written by ``train``.

The folder is diffusers-shaped: ``vae/`` (AutoencoderKL), ``unet/`` (UNet2DModel with
``class_embed_type="identity"``), ``text_encoder/`` (our :class:`ClassTextEncoder`), ``scheduler/``
and ``model_index.json`` whose ``_class_name`` is ``LatentOpsEmbeddedPipeline``. The backbone
call is ``unet(x, t, class_labels=cond[:, 0, :]).sample`` (eps prediction).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..deps import require
from ..latent_format import LatentFormat
from ..sampling.denoisers import betas_for
from ..vae.geometry import latent_format_from_config
from ..weights.files import model_loader
from ..weights.preflight import check_folder
from .text_encoder import ClassTextEncoder

DEFAULT_DIR: Path = Path(__file__).resolve().parent / "default"
"""The shipped embedded model folder."""

PIPELINE_CLASS = "LatentOpsEmbeddedPipeline"


def is_embedded_folder(path: str | Path) -> bool:
    """True when ``path/model_index.json`` names ``LatentOpsEmbeddedPipeline``."""
    index = Path(path) / "model_index.json"
    if not index.is_file():
        return False
    try:
        return json.loads(index.read_text(encoding="utf-8")).get("_class_name") == PIPELINE_CLASS
    except (OSError, ValueError):
        return False


class EmbeddedBackbone:
    """``backbone(x [B, C, h, w] model space, timestep [B] in 0..999, cond [B, T, D]) -> eps [B, C, h, w]``.

    The T tokens of ``cond`` are averaged into the class embedding (the text encoder emits T = 1).
    """

    def __init__(self, unet: torch.nn.Module) -> None:
        self.unet = unet
        self.embedding_dim = int(unet.config.block_out_channels[0]) * 4

    def __call__(self, x: Tensor, timestep: Tensor, cond: Tensor | None, **extra: Any) -> Tensor:
        if cond is None:
            raise ValueError("embedded backbone: cond is required (encode '' for unconditional)")
        if cond.dim() != 3 or cond.shape[-1] != self.embedding_dim:
            raise ValueError(f"embedded backbone: cond must be [B, T, {self.embedding_dim}], got {tuple(cond.shape)}")
        if cond.shape[0] not in (1, x.shape[0]):
            raise ValueError(f"embedded backbone: cond batch {cond.shape[0]} does not match x batch {x.shape[0]}")
        p = next(self.unet.parameters())
        emb = cond.to(p.device, p.dtype).mean(1).expand(x.shape[0], -1)
        t = torch.as_tensor(timestep, device=p.device).reshape(-1).expand(x.shape[0])
        with torch.no_grad():
            out = self.unet(x.to(p.device, p.dtype), t, class_labels=emb).sample
        return out.to(x.dtype)


@dataclass
class EmbeddedParts:
    """Everything the samplers and loaders need from an embedded folder.

    Iterating yields ``(backbone, text_encoder, vae, config)`` where ``config`` is the scheduler
    config plus ``"latent_format"`` (what :func:`latent_ops.checkpoints.load_checkpoint` unpacks).
    """

    backbone: EmbeddedBackbone
    text_encoder: ClassTextEncoder
    vae: torch.nn.Module
    vae_dir: Path
    latent_format: LatentFormat
    scheduler_config: dict
    betas: Tensor
    alphas_cumprod: Tensor
    prediction: str = "eps"
    folder: Path = field(default_factory=lambda: DEFAULT_DIR)

    def __iter__(self) -> Iterator[Any]:
        return iter((self.backbone, self.text_encoder, self.vae,
                     {**self.scheduler_config, "latent_format": self.latent_format}))


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"load_embedded: cannot read {path} ({exc})") from None


def betas_from_config(cfg: dict) -> Tensor:
    """Float64 betas ``[num_train_timesteps]`` of a scheduler config, built by
    :func:`latent_ops.sampling.denoisers.betas_for` (ValueError for an unknown ``beta_schedule``)."""
    return betas_for(cfg.get("beta_schedule", "scaled_linear"), int(cfg["num_train_timesteps"]),
                     float(cfg["beta_start"]), float(cfg["beta_end"]))


def latent_format_from_vae_config(cfg: dict) -> LatentFormat:
    """``LatentFormat("embedded", ...)`` from an AutoencoderKL config (channels, f, scale, shift)."""
    return latent_format_from_config(cfg, "embedded")


@model_loader()
def load_embedded(folder: str | Path = DEFAULT_DIR, device: torch.device | str = "cpu",
                  dtype: torch.dtype = torch.float32) -> EmbeddedParts:
    """Load an embedded-model folder (networks on ``device`` in ``dtype``, eval mode; the text
    encoder is a look-up table whose CONDITIONING stays on the CPU, as ComfyUI's does).

    Raises:
        ModelLoadError: (a ValueError) not an embedded folder, missing parts, pickled weights, an
            unsupported config or one that does not fit its weights
            (:func:`latent_ops.weights.preflight.check_folder`), naming the folder.
    """
    require("diffusers", f"Loading the embedded model {folder}")
    from diffusers import AutoencoderKL, UNet2DModel

    folder = Path(folder)
    if not is_embedded_folder(folder):
        raise ValueError(f"load_embedded: {folder} is not an embedded model folder "
                         f"(model_index.json with _class_name {PIPELINE_CLASS!r})")
    for part in ("vae", "unet", "text_encoder", "scheduler"):
        if not (folder / part).is_dir():
            raise ValueError(f"load_embedded: {folder} has no {part}/ folder")
    sched = _read(folder / "scheduler" / "scheduler_config.json")
    if sched.get("prediction_type", "epsilon") != "epsilon":
        raise ValueError(f"load_embedded: only epsilon prediction is supported, got {sched.get('prediction_type')!r}")
    for part, cls in (("vae", AutoencoderKL), ("unet", UNet2DModel)):  # safetensors, a config that fits them
        check_folder(folder / part, cls.from_config, "diffusion_pytorch_model")
    safe = {"torch_dtype": dtype, "use_safetensors": True, "local_files_only": True}
    vae = AutoencoderKL.from_pretrained(folder / "vae", **safe).to(device).eval()
    unet = UNet2DModel.from_pretrained(folder / "unet", **safe).to(device).eval()
    if unet.config.class_embed_type != "identity":
        raise ValueError(f"load_embedded: unet class_embed_type must be 'identity', got {unet.config.class_embed_type!r}")
    text_encoder = ClassTextEncoder.load(folder / "text_encoder")
    backbone = EmbeddedBackbone(unet)
    if text_encoder.embedding_dim != backbone.embedding_dim:
        raise ValueError(f"load_embedded: text encoder width {text_encoder.embedding_dim} != unet "
                         f"time-embedding width {backbone.embedding_dim}")
    betas = betas_from_config(sched)
    return EmbeddedParts(backbone=backbone, text_encoder=text_encoder, vae=vae, vae_dir=folder / "vae",
                         latent_format=latent_format_from_vae_config(dict(vae.config)), scheduler_config=sched,
                         betas=betas, alphas_cumprod=torch.cumprod(1.0 - betas, 0), folder=folder)
