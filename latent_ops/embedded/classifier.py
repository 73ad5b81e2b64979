"""A small CNN glyph classifier, trained on real rendered glyphs, used to judge generated samples."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torch import Tensor, nn

from . import dataset as ds

CLASSIFIER_OFFSET = 20_000_000
"""Glyph item indices used for classifier training (disjoint from model training and held-out)."""


class InkMap(nn.Module):
    """Colour- and polarity-free input: distance of each pixel from the background colour
    (median of the ring two pixels inside the border; the outer two pixels are ignored).

    ``[B, 3, H, W]`` in ``[-1, 1]`` -> ``[B, 1, H, W]`` in ``[0, 1]`` (glyphs have random
    foreground/background colours; the ink map keeps only the shape). Scaled by the 97th
    percentile, not the maximum, so a few bright artefacts (decoded images) do not blank it.
    """

    def forward(self, x: Tensor) -> Tensor:
        ring = torch.cat([x[:, :, 2], x[:, :, -3], x[:, :, :, 2], x[:, :, :, -3]], dim=2)  # [B, 3, 4W]
        bg = ring.median(dim=2).values[:, :, None, None]
        ink = (x - bg).norm(dim=1, keepdim=True)
        frame = torch.zeros_like(ink)
        frame[..., 2:-2, 2:-2] = 1.0
        ink = ink * frame  # decoders leave artefacts in the outer two pixels: ignore them
        scale = ink.flatten(1).quantile(0.97, dim=1).clamp_min(1e-3)[:, None, None, None]
        return (ink / scale).clamp(0.0, 1.0)


def make_classifier(num_classes: int = len(ds.GLYPH_CLASSES)) -> nn.Module:
    """Ink map, then conv(32)-pool-conv(64)-pool-conv(128)-pool-conv(128)-global-avg -> linear (``[B, 3, 32, 32]``)."""
    def block(cin: int, cout: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2)]

    return nn.Sequential(InkMap(), *block(1, 32), *block(32, 64), *block(64, 128), nn.Conv2d(128, 128, 3, padding=1),
                         nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, num_classes))


def train_classifier(seed: int = 0, n_per_class: int = 400, steps: int = 2000, batch: int = 64,
                     lr: float = 3e-3) -> tuple[nn.Module, dict]:
    """Train on real glyphs (items ``CLASSIFIER_OFFSET + i`` of dataset seed ``seed``), Adam + cosine.

    Returns:
        (classifier in eval mode, info dict with steps, images, minutes and the mean training loss
        over the first and the last tenth of the steps).
    """
    t0 = time.monotonic()
    data = ds.build_glyphs(n_per_class, seed, offset=CLASSIFIER_OFFSET)
    gen = torch.Generator().manual_seed(seed * 1000 + 7)
    init = torch.Generator().manual_seed(seed * 1000 + 8)
    model = make_classifier(len(data.names))
    from .train import seeded_init_

    seeded_init_(model, init)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    model.train()
    x_all = ds.to_float(data.images)
    losses = []
    for _ in range(steps):
        idx = torch.randint(len(data), (batch,), generator=gen)
        x = x_all[idx]
        blur = torch.rand(batch, 1, 1, 1, generator=gen) < 0.5  # robustness to decoded (soft) images
        x = torch.where(blur, nn.functional.avg_pool2d(x, 3, 1, 1, count_include_pad=False), x)
        x = x + 0.05 * torch.randn(x.shape, generator=gen)
        loss = nn.functional.cross_entropy(model(x), data.labels[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
    model.eval()
    k = max(1, steps // 10)
    return model, {"train_images": len(data), "steps": steps, "batch": batch,
                   "minutes": (time.monotonic() - t0) / 60,
                   "loss_first_tenth": sum(losses[:k]) / k, "loss_last_tenth": sum(losses[-k:]) / k}


@torch.no_grad()
def accuracy(model: nn.Module, images: Tensor, labels: Tensor) -> float:
    """Fraction of uint8 ``[N, 3, S, S]`` images classified as ``labels [N]``."""
    pred = torch.cat([model(ds.to_float(images[i : i + 256])).argmax(1) for i in range(0, len(images), 256)])
    return float((pred == labels).float().mean())


def save_classifier(model: nn.Module, info: dict, path: Path) -> None:
    """Write the weights (safetensors) and ``info`` (JSON sidecar ``<path>.json``)."""
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    Path(str(path) + ".json").write_text(json.dumps(info, indent=2) + "\n")


def load_classifier(path: Path) -> tuple[nn.Module, dict]:
    """Read what :func:`save_classifier` wrote; the model is in eval mode."""
    from safetensors.torch import load_file

    model = make_classifier()
    model.load_state_dict(load_file(str(path)))
    return model.eval(), json.loads(Path(str(path) + ".json").read_text())


def main(argv: list[str] | None = None) -> None:
    """``python -m latent_ops.embedded.classifier OUT.safetensors [--seed S]``: train and save."""
    p = argparse.ArgumentParser(description="Train the real-glyph judge classifier.")
    p.add_argument("out", type=Path)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    model, info = train_classifier(seed=a.seed)
    save_classifier(model, info | {"seed": a.seed}, a.out)


if __name__ == "__main__":
    main()
