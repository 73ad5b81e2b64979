"""Sampler overhead: our k-diffusion-style loop vs diffusers' EulerDiscreteScheduler on the same UNet.

A tiny random UNet2DConditionModel (the diffusers test-suite config, 1.4 M parameters) runs 20 Euler
steps on a 1x4xHxW latent three ways in the same process: bare UNet forwards (the floor), our
``latent_ops.sampling.diffusion.sample`` (``simple`` schedule, which equals diffusers' ``trailing`` spacing),
and a manual diffusers scheduler loop. Both samplers start from the same noise and must agree.
The pure per-step cost of our loop is also measured with a free (identity) model.
``--unet sd15`` uses the SD1.5 UNet architecture (shipped config, random weights) instead; on a
GPU (``--device cuda --dtype fp16``) every clock reading waits for the queued kernels.

    python benchmarks/bench_sampler.py [--size 64] [--steps 20] [--repeats 3] [--threads 1 2]
    python benchmarks/bench_sampler.py --device cuda --dtype fp16 --unet sd15 --batch 1 4
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import _device
import torch


def build_unet(kind: str = "tiny"):  # noqa: ANN201
    from diffusers import UNet2DConditionModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        if kind == "sd15":
            config = Path(__file__).resolve().parents[1] / "latent_ops" / "configs" / "sd15-unet"
            return UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(config)).eval()
        return UNet2DConditionModel(
            block_out_channels=(32, 64), layers_per_block=2, sample_size=32, in_channels=4, out_channels=4,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32,
        ).eval()


def timed(fns: dict, repeats: int, device: torch.device | None = None) -> dict[str, tuple[float, float, object]]:
    """Interleaved repeats (so a noisy neighbour hits every variant alike): name -> (median wall s,
    median process CPU s, last output); on a GPU the clock waits for the queued kernels."""
    walls: dict[str, list[float]] = {k: [] for k in fns}
    cpus: dict[str, list[float]] = {k: [] for k in fns}
    device = device or torch.device("cpu")
    outs: dict[str, object] = {}
    for _ in range(repeats):
        for name, fn in fns.items():
            w0, c0 = _device.clock(device), time.process_time()
            outs[name] = fn()
            walls[name].append(_device.clock(device) - w0)
            cpus[name].append(time.process_time() - c0)
    return {k: (statistics.median(walls[k]), statistics.median(cpus[k]), outs[k]) for k in fns}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=64, help="latent height/width (use 32 on a busy machine)")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--unet", choices=("tiny", "sd15"), default="tiny", help="tiny test UNet or the SD1.5 architecture")
    ap.add_argument("--batch", type=int, nargs="+", default=[1])
    _device.add_arguments(ap, dtype=True)
    args = ap.parse_args()
    device, dtype = _device.resolve(args.device), _device.dtype_of(args.dtype)
    for batch in args.batch:
        run(args, device, dtype, batch)


def run(args: argparse.Namespace, device: torch.device, dtype: torch.dtype, batch: int) -> None:
    """One latent batch size: bare forwards, ours, diffusers' loop, and the free-model overheads."""

    from diffusers import EulerDiscreteScheduler

    from latent_ops.checkpoints.text_encoders import UNetBackbone
    from latent_ops.latent_format import SD15
    from latent_ops.sampling.denoisers import DiscreteSampling
    from latent_ops.sampling.diffusion import DiffusionModel, sample

    unet = build_unet(args.unet)
    model = DiffusionModel(UNetBackbone(unet, device=device, dtype=dtype), DiscreteSampling.from_betas(), SD15,
                           device=device, name=f"{args.unet}-unet")
    g = torch.Generator().manual_seed(0)
    ctx = torch.randn(1, 77, unet.config.cross_attention_dim, generator=g)
    cond = [[ctx, {}]]
    shape = (batch, 4, args.size, args.size)
    noise = torch.randn(shape, generator=g)
    ctx_dev, noise_dev = ctx.to(device, dtype).expand(batch, -1, -1), noise.to(device)
    steps = args.steps
    sch = EulerDiscreteScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                 timestep_spacing="trailing")
    sch.set_timesteps(steps)
    t_fixed = sch.timesteps[0]

    def bare() -> None:
        x = noise_dev.to(dtype)
        with torch.no_grad():
            for _ in range(steps):
                unet(x, t_fixed, encoder_hidden_states=ctx_dev, return_dict=False)

    def ours() -> torch.Tensor:
        out = sample(model, {"samples": torch.zeros(shape)}, cond, cond, seed=0, steps=steps, cfg=1.0,
                     sampler_name="euler", scheduler="simple", noise=noise, callback=lambda d, t: None)
        return out["samples"] * SD15.scale  # back to model space

    def theirs() -> torch.Tensor:
        sch.set_timesteps(steps, device=device)
        x = noise_dev * (1 + sch.sigmas[0] ** 2) ** 0.5
        with torch.no_grad():
            for t in sch.timesteps:
                eps = unet(sch.scale_model_input(x, t).to(dtype), t, encoder_hidden_states=ctx_dev, return_dict=False)[0]
                x = sch.step(eps.float(), t, x, return_dict=False)[0]
        return x.cpu()

    free = DiffusionModel(lambda x, t, c, **e: torch.zeros_like(x), DiscreteSampling.from_betas(), SD15, device=device)

    def ours_free() -> None:
        sample(free, {"samples": torch.zeros(shape)}, cond, cond, seed=0, steps=steps, cfg=1.0,
               sampler_name="euler", scheduler="simple", noise=noise, callback=lambda d, t: None)

    def theirs_free() -> None:
        sch.set_timesteps(steps, device=device)
        x = noise_dev * (1 + sch.sigmas[0] ** 2) ** 0.5
        for t in sch.timesteps:
            x = sch.step(torch.zeros_like(x), t, sch.scale_model_input(x, t), return_dict=False)[0]

    print(f"{_device.describe(device)}, {dtype}\n{args.unet} UNet2DConditionModel "
          f"({sum(p.numel() for p in unet.parameters()) / 1e6:.2f} M params), "
          f"latent {tuple(shape)}, {steps} euler steps, cfg 1, median of {args.repeats} interleaved runs")
    for threads in args.threads if device.type == "cpu" else [torch.get_num_threads()]:
        torch.set_num_threads(threads)
        bare(), ours(), theirs()  # warm-up
        r = timed({"bare UNet forwards": bare, "latent_ops sample": ours, "diffusers Euler loop": theirs},
                  args.repeats, device)
        f = timed({"ours": ours_free, "diffusers": theirs_free}, max(args.repeats, 7), device)
        call_wall, call_cpu = r["bare UNet forwards"][0] / steps, r["bare UNet forwards"][1] / steps
        err = float((r["latent_ops sample"][2] - r["diffusers Euler loop"][2]).abs().max())
        print(f"\n[{threads} thread(s)] one model call {call_wall * 1e3:.1f} ms wall, {call_cpu * 1e3:.1f} ms CPU; "
              f"ours vs diffusers max |diff| {err:.2e}")
        for name, (w, c, _) in r.items():
            print(f"  {name:22s} wall {w:7.3f} s  CPU {c:7.3f} s")
        for name, (w, c, _) in f.items():
            print(f"  sampler overhead, {name:9s} (free model): wall {w / steps * 1e6:6.0f} us/step = "
                  f"{w / steps / call_wall * 100:.3f}% of a call; CPU {c / steps * 1e6:6.0f} us/step = "
                  f"{c / steps / call_cpu * 100:.3f}% of a call's CPU")
        ow, oc = r["latent_ops sample"][:2]
        tw, tc = r["diffusers Euler loop"][:2]
        print(f"  total ours / diffusers: wall {ow / tw:.3f}, CPU {oc / tc:.3f}")


if __name__ == "__main__":
    main()
