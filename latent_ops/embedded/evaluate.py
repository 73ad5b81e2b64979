"""Measure the embedded model and write its metrics, grids and model card.

Run ``python -m latent_ops.embedded.evaluate [--model DIR]``. It measures

* VAE reconstruction PSNR on held-out glyphs, emoji and photos;
* a small CNN trained on real glyphs (:mod:`.classifier`): its accuracy on held-out real glyphs,
  on their VAE reconstructions, and on class-conditional samples (20 DDIM steps, CFG 4, our
  own sampler below, plus the project's k-diffusion ``euler`` sampler through
  :func:`latent_ops.checkpoints.load_checkpoint`);
* ``samples.png`` (one row per seed, one column per class) and ``slerp.png`` (lerp row above slerp
  row for glyph, emoji and photo pairs, t = 0..1), next to the model card.

Results go to ``metrics.json`` and ``README.md`` (the model card) in the model folder.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from . import dataset as ds
from .classifier import accuracy, load_classifier, save_classifier, train_classifier
from .loader import DEFAULT_DIR, EmbeddedParts, load_embedded
from .model_card import write_model_card

log = logging.getLogger(__name__)


@torch.no_grad()
def ddim_sample(parts: EmbeddedParts, cond: Tensor, uncond: Tensor, steps: int, cfg: float,
                generator: torch.Generator) -> Tensor:
    """Deterministic DDIM (eta = 0) with classifier-free guidance, no clipping.

    Args:
        parts: the loaded model.
        cond, uncond: embeddings ``[B, 1, D]``.
        steps: number of model evaluations (timesteps evenly spaced from 999 to 0).
        cfg: guidance scale (1 = no guidance).
        generator: CPU generator for the initial noise.

    Returns:
        Raw VAE latents ``[B, C, h, w]``.
    """
    b, fmt = cond.shape[0], parts.latent_format
    h = parts.backbone.unet.config.sample_size
    acp = parts.alphas_cumprod.float()
    x = torch.randn((b, fmt.channels, h, h), generator=generator)
    ts = torch.linspace(len(acp) - 1, 0, steps).round().long()
    for i, t in enumerate(ts):
        tt = torch.full((2 * b,), float(t))
        e_c, e_u = parts.backbone(torch.cat([x, x]), tt, torch.cat([cond, uncond])).chunk(2)
        eps = e_u + cfg * (e_c - e_u)
        a = acp[t]
        x0 = (x - (1 - a).sqrt() * eps) / a.sqrt()
        a_prev = acp[ts[i + 1]] if i + 1 < len(ts) else torch.tensor(1.0)
        x = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps
    return fmt.process_out(x)


@torch.no_grad()
def decode(parts: EmbeddedParts, raw: Tensor) -> Tensor:
    """Raw latents -> uint8 images ``[B, 3, S, S]``."""
    img = parts.vae.decode(raw.float()).sample.clamp(-1, 1)
    return ((img + 1) * 127.5).round().to(torch.uint8)


@torch.no_grad()
def encode(parts: EmbeddedParts, images: Tensor) -> Tensor:
    """uint8 ``[B, 3, S, S]`` -> raw latents (posterior mode)."""
    return parts.vae.encode(ds.to_float(images)).latent_dist.mode()


def class_samples(parts: EmbeddedParts, n_per_class: int, steps: int, cfg: float, seed: int) -> tuple[Tensor, Tensor]:
    """``n_per_class`` samples of every class with :func:`ddim_sample`; returns (uint8 images, labels)."""
    te = parts.text_encoder
    names = te.known_words
    labels = torch.arange(len(names)).repeat(n_per_class)
    cond = torch.cat([te.embed(names[i]) for i in labels.tolist()])
    uncond = te.embed("").expand_as(cond)
    gen = torch.Generator().manual_seed(seed)
    raw = torch.cat([ddim_sample(parts, cond[i : i + 72], uncond[i : i + 72], steps, cfg, gen)
                     for i in range(0, len(cond), 72)])
    return decode(parts, raw), labels


def kdiffusion_accuracy(folder: Path, classifier: torch.nn.Module, names: list[str], n_per_class: int,
                        steps: int, cfg: float, seed: int) -> float:
    """Accuracy of samples drawn through the project's user path (``load_checkpoint`` + ``sample``, euler)."""
    from ..checkpoints.loading import load_checkpoint
    from ..sampling.diffusion import sample

    model, te, vae = load_checkpoint(folder)
    h = load_embedded(folder).backbone.unet.config.sample_size
    correct = total = 0
    neg = te.encode("")
    for k, name in enumerate(names):
        lat = {"samples": torch.zeros(n_per_class, model.latent_format.channels, h, h)}
        out = sample(model, lat, te.encode(name), neg, seed=seed + k, steps=steps, cfg=cfg, sampler_name="euler",
                     scheduler="normal", callback=lambda done, total: None)
        img = vae.decode(out["samples"])  # [B, H, W, 3] in [0, 1]
        u8 = (img.permute(0, 3, 1, 2) * 255).round().to(torch.uint8)
        correct += int((classifier_predict(classifier, u8) == k).sum())
        total += n_per_class
    return correct / total


def classifier_predict(classifier: torch.nn.Module, images: Tensor) -> Tensor:
    """Predicted class indices of uint8 ``[B, 3, S, S]``."""
    with torch.no_grad():
        return classifier(ds.to_float(images)).argmax(1)


def _grid(images: Tensor, cols: int, scale: int = 1, gap: int = 1) -> Image.Image:
    """uint8 ``[N, 3, S, S]`` -> one PIL image, row-major, white gaps."""
    n, _, s, _ = images.shape
    rows = (n + cols - 1) // cols
    out = np.full((rows * (s + gap) - gap, cols * (s + gap) - gap, 3), 255, np.uint8)
    for i in range(n):
        r, c = divmod(i, cols)
        out[r * (s + gap) : r * (s + gap) + s, c * (s + gap) : c * (s + gap) + s] = images[i].permute(1, 2, 0).numpy()
    im = Image.fromarray(out)
    return im.resize((im.width * scale, im.height * scale), Image.NEAREST) if scale > 1 else im


def slerp_pairs(seed: int) -> list[tuple[Tensor, Tensor]]:
    """Endpoint pairs (uint8 ``[3, S, S]``): glyph A->B, 3->8, emoji smile->cat, apple->globe, photo crops."""
    g = ds.build_glyphs(1, seed + 99)
    by = {name: g.images[i] for i, name in enumerate(g.names)}
    folder = {p.stem: p for p, _ in ds.emoji_files()}

    def emoji(code: str) -> Tensor:
        return torch.from_numpy(ds.emoji_image(folder[code]).transpose(2, 0, 1).copy())

    ph = ds.build_photos(2, seed + 99, heldout=True)
    return [(by["A"], by["B"]), (by["3"], by["8"]), (emoji("1f600"), emoji("1f431")),
            (emoji("1f34e"), emoji("1f30d")), (ph.images[0], ph.images[1])]


def slerp_grid(parts: EmbeddedParts, seed: int, n_t: int = 9) -> Image.Image:
    """For each pair a lerp row then a slerp row of decoded latents at ``t = linspace(0, 1, n_t)``."""
    from ..interp import lerp, slerp

    rows = []
    ts = torch.linspace(0, 1, n_t)
    for a, b in slerp_pairs(seed):
        za, zb = encode(parts, torch.stack([a, b])).chunk(2)
        za, zb = za.expand(n_t, -1, -1, -1), zb.expand(n_t, -1, -1, -1)
        rows.append(decode(parts, lerp(za, zb, ts)))
        rows.append(decode(parts, slerp(za, zb, ts)))
    return _grid(torch.cat(rows), n_t, scale=2)


def evaluate(folder: Path, seed: int = 0, n_per_class: int = 5, steps: int = 20, cfg: float = 4.0,
             kdiffusion: bool = True, classifier_path: Path | None = None) -> dict:
    """Run every measurement; write ``metrics.json``, ``samples.png``, ``slerp.png`` into ``folder``.

    ``classifier_path``: reuse the judge classifier saved there (``python -m
    latent_ops.embedded.classifier``, same seed: identical weights), or train and save it there.
    """
    t0 = time.monotonic()
    parts = load_embedded(folder)
    train_rec = json.loads((folder / "training.json").read_text()) if (folder / "training.json").is_file() else {}
    vcfg = train_rec.get("config", {})
    size = int(vcfg.get("size", 32))
    from .train import heldout_psnr

    metrics: dict = {"heldout_psnr_db": heldout_psnr(parts.vae, int(vcfg.get("seed", seed)), size)}
    log.info("psnr %s", metrics["heldout_psnr_db"])
    if classifier_path is not None and Path(classifier_path).is_file():
        clf, clf_info = load_classifier(classifier_path)
    else:
        clf, clf_info = train_classifier(seed=seed)
        if classifier_path is not None:
            save_classifier(clf, clf_info | {"seed": seed}, classifier_path)
    metrics["classifier"] = clf_info
    held = ds.heldout_sets(int(vcfg.get("seed", seed)), size, glyphs_per_class=10, n_photos=1)["glyph"]
    metrics["classifier"]["heldout_real_acc"] = accuracy(clf, held.images, held.labels)
    rec = decode(parts, encode(parts, held.images))
    metrics["classifier"]["vae_reconstruction_acc"] = accuracy(clf, rec, held.labels)
    imgs, labels = class_samples(parts, n_per_class, steps, cfg, seed)
    metrics["samples"] = {"sampler": "ddim (eta 0, no clipping)", "steps": steps, "cfg": cfg,
                          "n": len(labels), "accuracy": accuracy(clf, imgs, labels)}
    for c in (1.0, 2.0):
        im_c, lab_c = class_samples(parts, 2, steps, c, seed + 1)
        metrics["samples"][f"accuracy_cfg{c:g}_n{len(lab_c)}"] = accuracy(clf, im_c, lab_c)
    log.info("samples %s", metrics["samples"])
    if kdiffusion:
        metrics["samples_kdiffusion_euler"] = {
            "steps": steps, "cfg": cfg, "n_per_class": 2, "scheduler": "normal",
            "accuracy": kdiffusion_accuracy(folder, clf, parts.text_encoder.known_words, 2, steps, cfg, seed)}
    n_cls = len(parts.text_encoder.known_words)
    _grid(imgs[: n_cls * min(4, n_per_class)], n_cls).save(folder / "samples.png", optimize=True)
    slerp_grid(parts, seed).save(folder / "slerp.png", optimize=True)
    metrics["evaluate_minutes"] = (time.monotonic() - t0) / 60
    metrics["threads"] = torch.get_num_threads()
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def main(argv: list[str] | None = None) -> None:
    """CLI entry: ``python -m latent_ops.embedded.evaluate``."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", type=Path, default=DEFAULT_DIR)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-per-class", type=int, default=5)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--cfg", type=float, default=4.0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--classifier", type=Path, default=None, help="cache file for the judge classifier")
    p.add_argument("--no-kdiffusion", action="store_true", help="skip the project-sampler cross-check")
    p.add_argument("--no-card", action="store_true", help="do not rewrite README.md")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(a.threads)
    metrics = evaluate(a.model, a.seed, a.n_per_class, a.steps, a.cfg, not a.no_kdiffusion, a.classifier)
    if not a.no_card:
        write_model_card(a.model, metrics)


if __name__ == "__main__":
    main()
