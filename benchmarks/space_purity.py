"""Cluster purity and the latent space map on the embedded model's data.

Encodes held-out glyphs (``n`` per class, an index range the VAE never trained on) and held-out
Twemoji with the embedded default VAE, then clusters the latents with k-means and reports purity:

* glyphs only, k = 36, against the glyph class;
* emoji only, k = number of emoji categories, against the category;
* glyphs + emoji, k = 2, against the kind (glyph vs emoji), and k chosen by silhouette.

Each purity is put next to the same clustering of the raw pixels and of random labels (chance).
Writes ``docs/space_map.png`` (PCA map, thumbnails decoded from the latents, dots coloured by
cluster), ``docs/space_centroids.png`` (decoded centroids of the glyph clusters) and
``docs/space_neighbors.png`` (a query image and its nearest latents).

Usage: ``python benchmarks/space_purity.py [--per-class 8] [--emoji 288] [--seed 7] [--out docs]``
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from latent_ops import space
from latent_ops.embedded import dataset
from latent_ops.media import images
from latent_ops.space import cluster, neighbors
from latent_ops.space import plot as space_map
from latent_ops.vae import loading as models


def _pixels(imgs: torch.Tensor) -> torch.Tensor:
    """uint8 ``[N, 3, S, S]`` -> IMAGE ``[N, S, S, 3]`` in [0, 1]."""
    return imgs.permute(0, 2, 3, 1).float() / 255.0


def _chance(truth: torch.Tensor, k: int, seed: int) -> float:
    labels = torch.randint(k, truth.shape, generator=torch.Generator().manual_seed(seed))
    return cluster.purity(labels, truth)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=8)
    parser.add_argument("--emoji", type=int, default=288)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", default="docs")
    parser.add_argument("--vae", help="VAE to use instead of the embedded default")
    args = parser.parse_args()
    torch.set_num_threads(1)
    path = args.vae or models.default_vae_path()
    if path is None:
        raise SystemExit("the embedded VAE (latent_ops/embedded/default/vae) is not there yet")
    vae = models.load_vae(path)
    gen = torch.Generator().manual_seed(args.seed)
    glyphs = dataset.build_glyphs(args.per_class, args.seed, offset=20_000_000)
    emoji = dataset.load_emoji(heldout=True)
    pick = torch.randperm(len(emoji), generator=gen)[: args.emoji].sort().values
    emoji_px, emoji_cat = _pixels(emoji.images[pick]), emoji.labels[pick]
    glyph_px = _pixels(glyphs.images)
    t0 = time.perf_counter()
    zg, ze = vae.encode(glyph_px), vae.encode(emoji_px)
    print(f"encoded {len(zg)} glyphs + {len(ze)} emoji to {tuple(zg.shape[1:])} in {time.perf_counter() - t0:.1f} s")
    z = torch.cat([zg, ze])
    px = torch.cat([glyph_px, emoji_px]).permute(0, 3, 1, 2).contiguous()  # pixels as [N, 3, S, S] "latents"
    kind = torch.cat([torch.zeros(len(zg), dtype=torch.long), torch.ones(len(ze), dtype=torch.long)])
    n_cat = int(torch.unique(emoji_cat).numel())
    tasks = [
        ("glyphs, k=36 vs glyph class", zg, glyph_px.permute(0, 3, 1, 2), glyphs.labels, 36),
        (f"emoji, k={n_cat} vs category", ze, emoji_px.permute(0, 3, 1, 2), emoji_cat, n_cat),
        ("glyphs+emoji, k=2 vs kind", z, px, kind, 2),
    ]
    print("purity (ARI in brackets): k-means of the latents, of the raw pixels, and of random labels")
    print(f"{'task':<34} {'feature':<14} {'latent':>15} {'pixels':>15} {'chance':>7}")
    for name, lat, pix, truth, k in tasks:
        for feature in space.FEATURES:
            lab_l = cluster.cluster(lat, k, feature=feature, seed=args.seed).labels
            lab_p = cluster.cluster(pix.contiguous(), k, feature=feature, seed=args.seed).labels
            cells = [f"{cluster.purity(lab, truth):.3f} ({cluster.adjusted_rand_index(lab, truth):+.3f})" for lab in (lab_l, lab_p)]
            print(f"{name:<34} {feature:<14} {cells[0]:>15} {cells[1]:>15} {_chance(truth, k, args.seed):7.3f}")
    auto = cluster.cluster(z, None, k_max=12, seed=args.seed)
    print(f"glyphs+emoji, k by silhouette: k={auto.k}, purity vs kind {cluster.purity(auto.labels, kind):.3f}, ARI {cluster.adjusted_rand_index(auto.labels, kind):+.3f}")
    print(auto.summary())

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    proj = space.project(z, "pca", 2)
    two = cluster.cluster(z, 2, seed=args.seed)
    names = [f"cluster {j} ({int((two.labels == j).sum())}: {int(((two.labels == j) & (kind == 0)).sum())} glyphs)" for j in range(2)]
    img = space_map.projection_map(proj, labels=two.labels, label_names=names, vae=vae, latents=z, max_thumbnails=150, size=768, seed=args.seed, title=f"PCA of {len(z)} latents: glyphs + emoji (embedded VAE)")
    print("wrote", space_map.save_png(img, out / "space_map.png"))
    g = cluster.cluster(zg, 36, seed=args.seed)
    majority = [glyphs.names[int(torch.mode(glyphs.labels[g.labels == j]).values)] for j in range(36)]
    sheet = images.grid(vae.decode(g.centroids), cols=12, labels=majority, scale=2)
    print("wrote", space_map.save_png(sheet, out / "space_centroids.png"))
    queries = torch.tensor([0, len(zg) + 3])
    nb = neighbors.nearest(z[queries], z, 7, metric="euclidean")
    rows = torch.cat([torch.cat([z[queries[i : i + 1]], nb.latents[i * 7 + 1 : i * 7 + 7]]) for i in range(2)])
    sheet = images.grid(vae.decode(rows), rows=2, labels=["query"] + [f"{d:.2f}" for d in nb.distances[0, 1:].tolist()] + ["query"] + [f"{d:.2f}" for d in nb.distances[1, 1:].tolist()], scale=2)
    print("wrote", space_map.save_png(sheet, out / "space_neighbors.png"))


if __name__ == "__main__":
    main()
