"""Train the embedded default model: a small VAE, then a class-conditional latent diffusion model.

Run ``python -m latent_ops.embedded.train --out DIR [--minutes-vae N] [--minutes-ldm N] [--seed S]``.
Stage 1 trains a diffusers ``AutoencoderKL`` (32x32x3 -> 8x8x4) on glyphs, emoji and photo crops
and saves it (fp16) with the measured latent ``scaling_factor``/``shift_factor``. Stage 2 reloads
that saved VAE, encodes the glyph set and trains a diffusers ``UNet2DModel`` (eps prediction,
1000-step scaled-linear betas, classifier-free-guidance dropout to a null class); at export the
class-embedding table moves into our text encoder and the UNet is saved with
``class_embed_type="identity"``. Every random draw uses an explicit ``torch.Generator``: the same
seed and thread count give the same weights, as long as no stage hits its minute cap.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from torch import Tensor

from ..sampling.denoisers import betas_for
from . import dataset as ds
from .text_encoder import ClassTextEncoder, default_vocabulary

log = logging.getLogger(__name__)

DEFAULT_OUT = Path(__file__).parent / "default"
PIPELINE_CLASS = "LatentOpsEmbeddedPipeline"
BETA_START, BETA_END, NUM_TRAIN_TIMESTEPS = 0.00085, 0.012, 1000


@dataclass(frozen=True)
class TrainConfig:
    """Every knob of a training run (saved into ``training.json``)."""

    seed: int = 0
    size: int = 32
    threads: int = 1
    glyphs_per_class: int = 200
    n_photos: int = 2000
    emoji_limit: int | None = None
    heldout_glyphs_per_class: int = 10
    heldout_photos: int = 256
    vae_blocks: tuple[int, ...] = (16, 32, 64)
    vae_groups: int = 8
    latent_channels: int = 4
    vae_steps: int = 3200
    vae_batch: int = 16
    vae_lr: float = 2e-3
    kl_weight: float = 3e-5
    vae_minutes: float = 13.0
    unet_blocks: tuple[int, ...] = (32, 64)
    unet_groups: int = 8
    attention_head_dim: int = 16
    unet_time_scale_shift: str = "scale_shift"
    min_snr_gamma: float = 5.0
    ldm_steps: int = 15000
    ldm_batch: int = 32
    ldm_lr: float = 3e-3
    ldm_grad_clip: float = 1.0
    ema_decay: float = 0.997
    cfg_dropout: float = 0.1
    ldm_minutes: float = 31.0
    warmup: int = 20


TINY = TrainConfig(glyphs_per_class=2, n_photos=16, emoji_limit=8, heldout_glyphs_per_class=1, heldout_photos=4, vae_blocks=(16, 16), vae_groups=8, vae_steps=3,
                   vae_batch=8, unet_blocks=(16, 32), unet_groups=8, attention_head_dim=8, ldm_steps=3,
                   ldm_batch=8, warmup=1)
"""A config that runs in seconds (tests); its weights are meaningless."""


def _lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up, then cosine decay to 10% of the peak learning rate."""
    if step < warmup:
        return (step + 1) / warmup
    frac = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * frac))


def make_vae(cfg: TrainConfig) -> torch.nn.Module:
    """A fresh ``AutoencoderKL`` with downscale ``2 ** (len(vae_blocks) - 1)``."""
    from diffusers import AutoencoderKL

    n = len(cfg.vae_blocks)
    return AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n, block_out_channels=cfg.vae_blocks, layers_per_block=1,
        latent_channels=cfg.latent_channels, norm_num_groups=cfg.vae_groups, sample_size=cfg.size,
    )


def make_unet(cfg: TrainConfig, latent_size: int, num_classes: int, identity: bool = False) -> torch.nn.Module:
    """The class-conditional denoiser; ``identity=True`` builds the exported (embedding-free) form."""
    from diffusers import UNet2DModel

    return UNet2DModel(
        sample_size=latent_size, in_channels=cfg.latent_channels, out_channels=cfg.latent_channels,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        block_out_channels=cfg.unet_blocks, layers_per_block=1, attention_head_dim=cfg.attention_head_dim,
        norm_num_groups=cfg.unet_groups, resnet_time_scale_shift=cfg.unet_time_scale_shift,
        class_embed_type="identity" if identity else None, num_class_embeds=None if identity else num_classes + 1,
    )


@torch.no_grad()
def seeded_init_(module: torch.nn.Module, generator: torch.Generator) -> None:
    """Re-initialise every parameter from ``generator`` (the constructors drew from the global RNG).

    Matrices and kernels: LeCun-uniform (variance 1 / fan-in); embedding tables: unit normal;
    biases: zero; other vectors (norm scales): one.
    """
    for name, p in module.named_parameters():
        if p.dim() > 1:
            p.copy_(torch.empty_like(p).uniform_(-1, 1, generator=generator) * math.sqrt(3.0 / p[0].numel()))
        elif name.endswith("bias"):
            p.zero_()
        else:
            p.fill_(1.0)
    for m in module.modules():  # class embeddings: unit normal (as nn.Embedding), so labels matter from step 0
        if isinstance(m, torch.nn.Embedding):
            m.weight.copy_(torch.randn(m.weight.shape, generator=generator))


def scaled_linear_betas(n: int = NUM_TRAIN_TIMESTEPS) -> Tensor:
    """Stable Diffusion's betas: ``linspace(sqrt(0.00085), sqrt(0.012), n) ** 2`` as float64 ``[n]``
    (:func:`latent_ops.sampling.denoisers.betas_for`'s ``"scaled_linear"``)."""
    return betas_for("scaled_linear", n, BETA_START, BETA_END)


def min_snr_weight(alphas_cumprod: Tensor, gamma: float) -> Tensor:
    """Min-SNR-gamma weights ``min(SNR, gamma) / SNR`` of an eps-prediction loss (Hang et al., 2023).

    Args:
        alphas_cumprod: ``alpha_bar_t`` of each sample ``[B]``, in ``(0, 1)``.
        gamma: the SNR cap; ``<= 0`` disables the weighting (all ones).

    Returns:
        Weights ``[B]`` in ``(0, 1]``: 1 where ``SNR <= gamma``, ``gamma / SNR`` above.
    """
    if gamma <= 0:
        return torch.ones_like(alphas_cumprod)
    snr = alphas_cumprod / (1 - alphas_cumprod)
    return snr.clamp(max=gamma) / snr


def _psnr(a: Tensor, b: Tensor) -> Tensor:
    """Per-image PSNR in dB of ``[N, 3, H, W]`` tensors in ``[-1, 1]``."""
    mse = ((a.clamp(-1, 1) - b.clamp(-1, 1)) / 2).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(1.0 / mse.clamp_min(1e-10))


@torch.no_grad()
def reconstruct(vae: torch.nn.Module, images: Tensor, batch: int = 256) -> Tensor:
    """Encode (posterior mode) and decode uint8 ``[N, 3, S, S]``; returns float ``[-1, 1]``."""
    outs = []
    for i in range(0, len(images), batch):
        x = ds.to_float(images[i : i + batch]).to(vae.dtype)
        outs.append(vae.decode(vae.encode(x).latent_dist.mode()).sample.float())
    return torch.cat(outs)


def heldout_psnr(vae: torch.nn.Module, seed: int, size: int, glyphs_per_class: int = 10, n_photos: int = 256,
                 emoji_limit: int | None = None) -> dict[str, float]:
    """Mean held-out PSNR (dB) per data kind (glyph, emoji, photo)."""
    out = {}
    for kind, s in ds.heldout_sets(seed, size, glyphs_per_class, n_photos, emoji_limit).items():
        out[kind] = float(_psnr(reconstruct(vae, s.images), ds.to_float(s.images)).mean())
    return out


def train_vae(cfg: TrainConfig, data: ds.ImageSet) -> tuple[torch.nn.Module, dict]:
    """Stage 1: MSE + ``kl_weight`` * mean KL, Adam, warm-up + cosine; stops at ``vae_minutes``."""
    gen = torch.Generator().manual_seed(cfg.seed * 1000 + 1)
    init = torch.Generator().manual_seed(cfg.seed * 1000 + 2)
    vae = make_vae(cfg)
    seeded_init_(vae, init)
    opt = torch.optim.Adam(vae.parameters(), lr=cfg.vae_lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_factor(s, cfg.vae_steps, cfg.warmup))
    vae.train()
    start, step, losses = time.monotonic(), 0, []
    while step < cfg.vae_steps and time.monotonic() - start < cfg.vae_minutes * 60:
        idx = torch.randint(len(data), (cfg.vae_batch,), generator=gen)
        x = ds.to_float(data.images[idx])
        post = vae.encode(x).latent_dist
        rec = vae.decode(post.sample(generator=gen)).sample
        kl = 0.5 * (post.mean.pow(2) + post.var - 1.0 - post.logvar).mean()
        loss = torch.nn.functional.mse_loss(rec, x) + cfg.kl_weight * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        step += 1
        if step % 50 == 0 or step == cfg.vae_steps:
            log.info("vae step %d/%d loss %.5f (%.1f min)", step, cfg.vae_steps,
                     sum(losses[-50:]) / len(losses[-50:]), (time.monotonic() - start) / 60)
    vae.eval()
    return vae, {"steps": step, "minutes": (time.monotonic() - start) / 60, "final_loss": losses[-1]}


@torch.no_grad()
def encode_all(vae: torch.nn.Module, images: Tensor, batch: int = 256) -> Tensor:
    """Raw latents (posterior mode, float32) of uint8 ``[N, 3, S, S]``."""
    return torch.cat([vae.encode(ds.to_float(images[i : i + batch]).to(vae.dtype)).latent_dist.mode().float()
                      for i in range(0, len(images), batch)])


def save_vae(vae: torch.nn.Module, folder: Path, latents: Tensor) -> tuple[float, float]:
    """Save fp16 with the measured ``scaling_factor = 1/std`` and ``shift_factor = mean`` of ``latents``."""
    shift, scale = float(latents.mean()), float(1.0 / latents.std())
    vae.register_to_config(scaling_factor=scale, shift_factor=shift)
    vae.to(torch.float16).save_pretrained(folder, safe_serialization=True)
    vae.to(torch.float32)
    return scale, shift


def load_vae_folder(folder: Path) -> torch.nn.Module:
    """The saved VAE as float32 in eval mode."""
    from diffusers import AutoencoderKL

    return AutoencoderKL.from_pretrained(folder).to(torch.float32).eval()


def train_ldm(cfg: TrainConfig, latents: Tensor, labels: Tensor, num_classes: int) -> tuple[torch.nn.Module, dict]:
    """Stage 2: eps-prediction on model-space latents ``[N, C, h, w]``; returns the EMA UNet."""
    gen = torch.Generator().manual_seed(cfg.seed * 1000 + 3)
    init = torch.Generator().manual_seed(cfg.seed * 1000 + 4)
    unet = make_unet(cfg, latents.shape[-1], num_classes)
    seeded_init_(unet, init)
    ema = {k: v.detach().clone() for k, v in unet.state_dict().items()}
    acp = torch.cumprod(1.0 - scaled_linear_betas(), 0).float()
    opt = torch.optim.AdamW(unet.parameters(), lr=cfg.ldm_lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_factor(s, cfg.ldm_steps, cfg.warmup))
    unet.train()
    start, step, losses, clipped = time.monotonic(), 0, [], 0
    while step < cfg.ldm_steps and time.monotonic() - start < cfg.ldm_minutes * 60:
        idx = torch.randint(len(latents), (cfg.ldm_batch,), generator=gen)
        x0, y = latents[idx], labels[idx].clone()
        y[torch.rand(cfg.ldm_batch, generator=gen) < cfg.cfg_dropout] = num_classes  # null class
        t = torch.randint(NUM_TRAIN_TIMESTEPS, (cfg.ldm_batch,), generator=gen)
        eps = torch.randn(x0.shape, generator=gen)
        a = acp[t].view(-1, 1, 1, 1)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * eps
        err = (unet(xt, t, class_labels=y).sample - eps).pow(2).flatten(1).mean(1)
        loss = (err * min_snr_weight(acp[t], cfg.min_snr_gamma)).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.ldm_grad_clip > 0:  # a rare huge gradient at a high learning rate can wreck the run for good
            norm = torch.nn.utils.clip_grad_norm_(unet.parameters(), cfg.ldm_grad_clip)
            clipped += int(norm > cfg.ldm_grad_clip)
        opt.step()
        sched.step()
        with torch.no_grad():
            decay = min(cfg.ema_decay, (1 + step) / (10 + step))
            for k, v in unet.state_dict().items():
                if v.dtype.is_floating_point:
                    ema[k].lerp_(v, 1 - decay)
                else:
                    ema[k].copy_(v)
        losses.append(float(loss.detach()))
        step += 1
        if step % 100 == 0 or step == cfg.ldm_steps:
            log.info("ldm step %d/%d loss %.5f (%.1f min)", step, cfg.ldm_steps,
                     sum(losses[-100:]) / len(losses[-100:]), (time.monotonic() - start) / 60)
    unet.load_state_dict(ema)
    unet.eval()
    return unet, {"steps": step, "minutes": (time.monotonic() - start) / 60, "final_loss": losses[-1],
                  "final_loss_mean_last_100": sum(losses[-100:]) / len(losses[-100:]), "clipped_steps": clipped}


def export_ldm(cfg: TrainConfig, unet: torch.nn.Module, out: Path, class_names: tuple[str, ...]) -> None:
    """Write ``unet/`` (identity class embedding), ``text_encoder/``, ``scheduler/`` and ``model_index.json``."""
    table = unet.class_embedding.weight.detach().float().clone()  # [classes + 1, time_embed_dim]
    exported = make_unet(cfg, unet.config.sample_size, len(class_names), identity=True)
    state = {k: v for k, v in unet.state_dict().items() if not k.startswith("class_embedding.")}
    exported.load_state_dict(state)
    exported.to(torch.float16).save_pretrained(out / "unet", safe_serialization=True)
    ClassTextEncoder(table, default_vocabulary(class_names), null_index=len(class_names),
                     class_names=class_names).save(out / "text_encoder")
    (out / "scheduler").mkdir(parents=True, exist_ok=True)
    (out / "scheduler" / "scheduler_config.json").write_text(json.dumps({
        "_class_name": "DDIMScheduler", "num_train_timesteps": NUM_TRAIN_TIMESTEPS, "beta_start": BETA_START,
        "beta_end": BETA_END, "beta_schedule": "scaled_linear", "prediction_type": "epsilon",
        "clip_sample": False, "set_alpha_to_one": False, "steps_offset": 1, "timestep_spacing": "leading",
    }, indent=2) + "\n")
    import diffusers

    (out / "model_index.json").write_text(json.dumps({
        "_class_name": PIPELINE_CLASS, "_diffusers_version": diffusers.__version__,
        "scheduler": ["diffusers", "DDIMScheduler"], "text_encoder": ["latent_ops", "ClassTextEncoder"],
        "unet": ["diffusers", "UNet2DModel"], "vae": ["diffusers", "AutoencoderKL"],
    }, indent=2) + "\n")


def _write_record(out: Path, key: str, value: dict) -> None:
    path = out / "training.json"
    record = json.loads(path.read_text()) if path.exists() else {}
    record[key] = value
    path.write_text(json.dumps(record, indent=2) + "\n")


def run_vae_stage(cfg: TrainConfig, out: Path) -> dict:
    """Build the mix, train the VAE, measure its latent statistics and held-out PSNR, save ``vae/``."""
    t0 = time.monotonic()
    data = ds.build_vae_mix(cfg.seed, cfg.glyphs_per_class, cfg.n_photos, cfg.size, cfg.emoji_limit)
    data_minutes = (time.monotonic() - t0) / 60
    log.info("vae data: %d images in %.1f min", len(data), data_minutes)
    vae, info = train_vae(cfg, data)
    glyphs = data.images[data.labels == 0]
    scale, shift = save_vae(vae, out / "vae", encode_all(vae, glyphs))
    info.update(data_minutes=data_minutes, n_images=len(data), scaling_factor=scale, shift_factor=shift,
                heldout_psnr=heldout_psnr(load_vae_folder(out / "vae"), cfg.seed, cfg.size, cfg.heldout_glyphs_per_class,
                                          cfg.heldout_photos, cfg.emoji_limit))
    _write_record(out, "vae", info)
    log.info("vae done: %s", info)
    return info


def run_ldm_stage(cfg: TrainConfig, out: Path) -> dict:
    """Encode the glyph set with the saved VAE and train + export the class-conditional denoiser."""
    t0 = time.monotonic()
    glyphs = ds.build_glyphs(cfg.glyphs_per_class, cfg.seed, cfg.size)
    vae = load_vae_folder(out / "vae")
    raw = encode_all(vae, glyphs.images)
    model = (raw - vae.config.shift_factor) * vae.config.scaling_factor
    data_minutes = (time.monotonic() - t0) / 60
    unet, info = train_ldm(cfg, model, glyphs.labels, len(glyphs.names))
    export_ldm(cfg, unet, out, glyphs.names)
    info.update(data_minutes=data_minutes, n_images=len(glyphs), classes=list(glyphs.names))
    _write_record(out, "ldm", info)
    log.info("ldm done: %s", info)
    return info


def train(cfg: TrainConfig, out: Path, stages: tuple[str, ...] = ("vae", "ldm")) -> dict:
    """Run the requested stages into ``out``; returns ``training.json``'s content."""
    torch.set_num_threads(cfg.threads)
    out.mkdir(parents=True, exist_ok=True)
    _write_record(out, "config", asdict(cfg) | {"torch": torch.__version__})
    if "vae" in stages:
        run_vae_stage(cfg, out)
    if "ldm" in stages:
        run_ldm_stage(cfg, out)
    return json.loads((out / "training.json").read_text())


def main(argv: list[str] | None = None) -> None:
    """CLI entry: ``python -m latent_ops.embedded.train``."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, required=True,
                   help="output folder (a new one: the shipped model is never overwritten in place)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--minutes-vae", type=float, default=TrainConfig.vae_minutes, help="VAE wall-clock cap")
    p.add_argument("--minutes-ldm", type=float, default=TrainConfig.ldm_minutes, help="denoiser wall-clock cap")
    p.add_argument("--vae-steps", type=int, default=TrainConfig.vae_steps)
    p.add_argument("--ldm-steps", type=int, default=TrainConfig.ldm_steps)
    p.add_argument("--ldm-lr", type=float, default=TrainConfig.ldm_lr, help="denoiser peak learning rate")
    p.add_argument("--ldm-batch", type=int, default=TrainConfig.ldm_batch)
    p.add_argument("--ldm-grad-clip", type=float, default=TrainConfig.ldm_grad_clip,
                   help="denoiser gradient-norm clip (0 = off)")
    p.add_argument("--min-snr-gamma", type=float, default=TrainConfig.min_snr_gamma,
                   help="Min-SNR-gamma loss weighting of the denoiser (0 = off)")
    p.add_argument("--time-scale-shift", choices=("default", "scale_shift"), default=TrainConfig.unet_time_scale_shift,
                   help="how the UNet's ResNets take the time/class embedding (scale_shift = AdaGN)")
    p.add_argument("--threads", type=int, default=TrainConfig.threads, help="torch threads (weights depend on it)")
    p.add_argument("--stage", choices=("all", "vae", "ldm"), default="all")
    p.add_argument("--tiny", action="store_true", help="a seconds-long smoke run (meaningless weights)")
    a = p.parse_args(argv)
    if a.out.resolve() == DEFAULT_OUT.resolve():
        p.error(f"--out {a.out} is the shipped model's folder; train into a new folder, check it with "
                "`python -m latent_ops.embedded.evaluate --model DIR`, then copy it over")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    base = TINY if a.tiny else TrainConfig()
    cfg = replace(base, seed=a.seed, threads=a.threads, vae_minutes=a.minutes_vae, ldm_minutes=a.minutes_ldm,
                  min_snr_gamma=a.min_snr_gamma, unet_time_scale_shift=a.time_scale_shift, ldm_grad_clip=a.ldm_grad_clip,
                  **({} if a.tiny else {"vae_steps": a.vae_steps, "ldm_steps": a.ldm_steps, "ldm_lr": a.ldm_lr,
                                        "ldm_batch": a.ldm_batch}))
    train(cfg, a.out, ("vae", "ldm") if a.stage == "all" else (a.stage,))


if __name__ == "__main__":
    main()
