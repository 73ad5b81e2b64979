"""The GPU goals of issue 15, checked wherever CUDA exists (the module is skipped elsewhere).

Goals (SD1.5-architecture networks with random weights from the shipped configs, TF32 off):

- the embedded model samples on CUDA and agrees with the CPU within float tolerance;
  ``latent-ops run workflows/txt2img_samplers.json --device cuda`` works;
- the sampler loop makes no host synchronisation per step (``torch.cuda.set_sync_debug_mode``);
- sampler: <= 1.00x a diffusers scheduler loop over the same UNet, and <= 1 % over bare UNet
  calls per step (20 Euler steps, 512 px, fp16, batch 1 and 4);
- VAE decode <= 1.00x diffusers at batch 1 and 8, fp16 and bf16 (512 px), same output;
- tiled 4096 px SD decode (``decode_tiled(z, 64, 64, 16)`` under a 1.5 GB budget) peaks at
  <= 1.5 GB of activations at >= 40 dB against the exact decode;
- walk: >= 0.25 of copy bandwidth (64 frames of 4x128x128);
- ``a1111_nv`` matches ``torch.randn`` on CUDA within 1.1e-5 up to the GPU's resident thread count.

Timing goals allow 1 % for measurement noise (medians of interleaved runs). For a dry run of the
code on a machine without CUDA, ``LATENT_OPS_GPU_TEST_DEVICE=cpu`` runs the same tests on the CPU
with small sizes (the figures then mean nothing).
"""

from __future__ import annotations

import copy
import math
import os
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

DEVICE = torch.device(os.environ.get("LATENT_OPS_GPU_TEST_DEVICE", "cuda"))
if DEVICE.type == "cuda" and not torch.cuda.is_available():
    pytest.skip("no CUDA device: the GPU goals of issue 15 run only where CUDA exists", allow_module_level=True)

DRY = DEVICE.type != "cuda"  # a dry run of the code on the CPU: small sizes, figures not asserted
ROOT = Path(__file__).resolve().parents[1]
NOISE = 1.01  # timing goals: 1 % for measurement noise
LATENT = 8 if DRY else 64  # latent px (512 px images)
STEPS = 4 if DRY else 20
REPEATS = 1 if DRY else 7


@pytest.fixture(autouse=True)
def no_tf32() -> Iterator[None]:
    """Full float32 matmuls (the CPU's precision) while a test runs."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _sync() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize(DEVICE)


def _medians(fns: dict[str, Callable[[], object]], repeats: int = REPEATS) -> dict[str, float]:
    """Median seconds of each function, run interleaved after one warm-up round, clocks synchronised."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for i in range(repeats + 1):
        for name, fn in fns.items():
            _sync()
            start = time.perf_counter()
            fn()
            _sync()
            if i:
                times[name].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}


def _goal(ratio: float, limit: float, what: str) -> None:
    print(f"{what}: {ratio:.3f} (goal {limit})")
    if not DRY:
        assert ratio <= limit * NOISE, f"{what}: {ratio:.3f} > {limit}"


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float((a.float() - b.float()).pow(2).mean())
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


# ----------------------------------------------------------------------------- embedded model, CLI
def test_embedded_model_samples_on_cuda_like_the_cpu() -> None:
    from latent_ops.checkpoints import loading
    from latent_ops.sampling import diffusion

    results = []
    for device in (torch.device("cpu"), DEVICE):
        model, te, vae = loading.load_checkpoint(loading.EMBEDDED_DIR, device=device)
        assert {p.device.type for p in model.backbone.unet.parameters()} == {device.type}
        out = diffusion.sample(model, {"samples": torch.zeros(2, 4, 8, 8)}, te.encode("A"), te.encode(""), seed=7,
                               steps=12, cfg=3.0, sampler_name="dpmpp_2m", scheduler="karras")["samples"]
        image = vae.decode(out)
        assert out.device.type == image.device.type == "cpu"
        results.append((out, image))
    (lat_cpu, img_cpu), (lat_dev, img_dev) = results
    assert (lat_cpu - lat_dev).abs().max() <= 2e-4  # measured 1.8e-5 on an H200
    assert (img_cpu - img_dev).abs().max() <= 2e-3


def test_nodes_put_weights_on_the_gpu_and_outputs_on_the_cpu() -> None:
    from latent_ops_nodes.sampling import LatentOpsCheckpointLoader, LatentOpsSampler, LatentOpsTextEncode
    from latent_ops_nodes.vae import LatentOpsVAEDecode

    from latent_ops import devices

    with devices.using(DEVICE, "bf16" if not DRY else "fp32"):
        model, clip, vae = LatentOpsCheckpointLoader().load("latent-ops-default")
        (pos,), (neg,) = LatentOpsTextEncode().encode(clip, "B"), LatentOpsTextEncode().encode(clip, "")
        (latent,) = LatentOpsSampler().sample(model, 1, 8, 3.0, "euler", "normal", pos, neg,
                                              {"samples": torch.zeros(1, 4, 8, 8)}, 1.0, "comfy", 0, 0.0)
        (image,) = LatentOpsVAEDecode().decode(latent, vae, 0, 64)
    assert {p.device.type for p in model.backbone.unet.parameters()} == {DEVICE.type}
    assert {p.device.type for p in vae.module.parameters()} == {DEVICE.type}
    assert latent["samples"].device.type == image.device.type == "cpu" and torch.isfinite(image).all()


def test_latent_ops_run_with_device_cuda(tmp_path: Path) -> None:
    workflow = ROOT / "workflows" / "txt2img_samplers.json"
    script = Path(sys.executable).parent / "latent-ops"
    cmd = [str(script)] if script.exists() else [sys.executable, "-c", "from latent_ops_nodes.cli import main; main()"]
    outs = {}
    for device in ("cpu", str(DEVICE)):
        out = tmp_path / device.replace(":", "_")
        proc = subprocess.run([*cmd, "run", str(workflow), "--input-dir", str(ROOT / "workflows" / "input"),
                               "--out", str(out), "--no-progress", "--device", device, "--dtype", "fp32"],
                              capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stderr[-3000:]
        outs[device] = sorted(out.rglob("*.png"))
    import numpy as np
    from PIL import Image

    assert [p.name for p in outs["cpu"]] == [p.name for p in outs[str(DEVICE)]] and outs["cpu"]
    for a, b in zip(outs["cpu"], outs[str(DEVICE)], strict=True):
        pa, pb = (torch.from_numpy(np.asarray(Image.open(p).convert("RGB"), dtype=np.float32) / 255) for p in (a, b))
        assert _psnr(pa, pb) >= 30, a.name


# ----------------------------------------------------------------------------- sampler
def _sd15_unet(dtype: torch.dtype):  # noqa: ANN202
    from diffusers import UNet2DConditionModel

    config = UNet2DConditionModel.load_config(ROOT / "latent_ops" / "configs" / "sd15-unet")
    if DRY:
        config = {**config, "block_out_channels": [32, 64, 64, 64], "cross_attention_dim": 32,
                  "attention_head_dim": 8, "layers_per_block": 1}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        unet = UNet2DConditionModel.from_config(config).eval()
    return torch.nn.Module.to(unet, DEVICE, dtype)


@pytest.fixture(scope="module")
def unet_fp16():  # noqa: ANN201
    return _sd15_unet(torch.float32 if DRY else torch.float16)


def _euler_runs(unet, batch: int, steps: int = STEPS) -> dict[str, Callable[[], torch.Tensor]]:  # noqa: ANN001
    """Bare UNet calls, our sampler and a diffusers Euler loop over the same UNet, same noise (cfg 1)."""
    from diffusers import EulerDiscreteScheduler

    from latent_ops.checkpoints.text_encoders import UNetBackbone
    from latent_ops.latent_format import SD15
    from latent_ops.sampling.denoisers import DiscreteSampling
    from latent_ops.sampling.diffusion import DiffusionModel, sample

    dtype = next(unet.parameters()).dtype
    model = DiffusionModel(UNetBackbone(unet, device=DEVICE, dtype=dtype), DiscreteSampling.from_betas(), SD15,
                           device=DEVICE)
    g = torch.Generator().manual_seed(0)
    ctx = torch.randn(1, 77, unet.config.cross_attention_dim, generator=g)
    shape = (batch, 4, LATENT, LATENT)
    noise = torch.randn(shape, generator=g)
    ctx_dev, noise_dev = ctx.to(DEVICE, dtype).expand(batch, -1, -1), noise.to(DEVICE)
    sch = EulerDiscreteScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                 timestep_spacing="trailing")
    sch.set_timesteps(steps, device=DEVICE)
    t0 = sch.timesteps[0]

    def bare() -> torch.Tensor:
        x = noise_dev.to(dtype)
        with torch.no_grad():
            for _ in range(steps):
                out = unet(x, t0, encoder_hidden_states=ctx_dev, return_dict=False)[0]
        return out

    def ours() -> torch.Tensor:
        return sample(model, {"samples": torch.zeros(shape)}, [[ctx, {}]], [[ctx, {}]], seed=0, steps=steps,
                      cfg=1.0, sampler_name="euler", scheduler="simple", noise=noise,
                      callback=lambda d, t: None)["samples"] * SD15.scale

    def theirs() -> torch.Tensor:
        sch.set_timesteps(steps, device=DEVICE)
        x = noise_dev * (1 + sch.sigmas[0] ** 2) ** 0.5
        with torch.no_grad():
            for t in sch.timesteps:
                eps = unet(sch.scale_model_input(x, t).to(dtype), t, encoder_hidden_states=ctx_dev, return_dict=False)[0]
                x = sch.step(eps.float(), t, x, return_dict=False)[0]
        return x.cpu()

    return {"bare": bare, "ours": ours, "diffusers": theirs}


@pytest.mark.parametrize("batch", [1, 4])
def test_sampler_speed_goals(unet_fp16, batch: int) -> None:
    runs = _euler_runs(unet_fp16, batch)
    a, b = runs["ours"](), runs["diffusers"]()
    assert float((a - b).norm() / b.norm()) <= 1e-2  # the same sampling, fp16 rounding apart
    t = _medians(runs)
    _goal(t["ours"] / t["diffusers"], 1.00, f"sampler / diffusers loop, batch {batch}")
    _goal((t["ours"] - t["bare"]) / t["bare"] * 100, 1.0, f"sampler overhead over bare UNet calls, % (batch {batch})")


def test_sampler_loop_does_not_synchronise_per_step(unet_fp16, monkeypatch) -> None:
    if DRY:
        pytest.skip("sync debug mode is CUDA's")
    from latent_ops.sampling import diffusion

    counts: list[int] = []
    inner = diffusion.sampling.run_sampler

    def counted(*args: object, **kwargs: object) -> torch.Tensor:
        torch.cuda.set_sync_debug_mode("warn")
        try:
            with warnings.catch_warnings(record=True) as seen:
                warnings.simplefilter("always")
                out = inner(*args, **kwargs)
        finally:
            torch.cuda.set_sync_debug_mode("default")
        counts.append(len(seen))
        return out

    monkeypatch.setattr(diffusion.sampling, "run_sampler", counted)
    for steps in (10, 20):
        _euler_runs(unet_fp16, 1, steps)["ours"]()
    assert counts[1] == counts[0], f"synchronising calls grow with steps: {counts}"


# ----------------------------------------------------------------------------- VAE
def _sd15_vae(dtype: torch.dtype):  # noqa: ANN202
    """SD1.5 VAE architecture with N(0, 1/fan_in) weights (as benchmarks/bench_vae.py), on the GPU."""
    from diffusers import AutoencoderKL

    from latent_ops.vae import families

    cfg = {k: v for k, v in families.shipped_config("sd15").items() if not k.startswith("_")}
    if DRY:
        cfg = {**cfg, "block_out_channels": [32, 32, 32, 32]}
    module = AutoencoderKL.from_config(cfg)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.ndim > 1:
                p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(math.prod(p.shape[1:])))
            elif "norm" in name and name.endswith("weight"):
                p.fill_(1.0)
            else:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.01)
    return torch.nn.Module.to(module.eval().requires_grad_(False), DEVICE, dtype)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("batch", [1, 8])
def test_vae_decode_speed_goal(dtype: torch.dtype, batch: int) -> None:
    from latent_ops.latent_format import SD15
    from latent_ops.vae.wrapper import VAE

    dtype = torch.float32 if DRY else dtype
    theirs_module = _sd15_vae(dtype)
    ours = VAE(copy.deepcopy(theirs_module), SD15, "sd15", device=DEVICE, dtype=dtype)
    z = torch.randn(batch, 4, LATENT, LATENT, generator=torch.Generator().manual_seed(1))

    def theirs() -> torch.Tensor:
        with torch.inference_mode():
            y = theirs_module.decode(z.to(DEVICE, dtype)).sample
            return ((y.float() + 1) / 2).clamp(0, 1).movedim(1, -1).cpu()

    assert _psnr(ours.decode(z), theirs()) >= 40
    t = _medians({"ours": lambda: ours.decode(z), "diffusers": theirs})
    _goal(t["ours"] / t["diffusers"], 1.00, f"VAE decode / diffusers, batch {batch}, {dtype}")


def test_tiled_4096_decode_memory_and_fidelity_goal() -> None:
    from latent_ops.latent_format import SD15
    from latent_ops.vae.wrapper import VAE

    dtype = torch.float32 if DRY else torch.float16
    vae = VAE(_sd15_vae(dtype), SD15, "sd15", device=DEVICE, dtype=dtype, memory_budget=int(1.5e9))
    size = LATENT if DRY else 512
    z = torch.randn(1, 4, size, size, generator=torch.Generator().manual_seed(2))
    exact = vae.decode_tiled(z, 64, 64, 16, strategy="exact")
    if DEVICE.type == "cuda":
        torch.cuda.reset_peak_memory_stats(DEVICE)
        before = torch.cuda.memory_allocated(DEVICE)
    tiled = vae.decode_tiled(z, 64, 64, 16)
    psnr = _psnr(tiled, exact)
    print(f"tiled {8 * size} px decode: PSNR {psnr:.1f} dB vs exact")
    if DEVICE.type == "cuda":
        peak = torch.cuda.max_memory_allocated(DEVICE) - before
        print(f"tiled 4096 px decode: peak {peak / 1e9:.2f} GB of activations (goal <= 1.5)")
        assert peak <= 1.5e9
    if not DRY:
        assert psnr >= 40


# ----------------------------------------------------------------------------- walk, noise
def test_walk_bandwidth_goal() -> None:
    from latent_ops.walk import walk

    frames, shape = 64, (4, 128, 128)
    gen = torch.Generator().manual_seed(0)
    keys = torch.randn(2, *shape, generator=gen).to(DEVICE)
    src = torch.randn(frames, *shape, generator=gen).to(DEVICE)
    dst, out = torch.empty_like(src), torch.empty_like(src)
    t = _medians({"copy": lambda: dst.copy_(src), "walk": lambda: walk(keys, frames, out=out)}, max(REPEATS, 30))
    _goal(t["walk"] / t["copy"], 4.0, "walk time / copy time (goal: >= 0.25 of copy bandwidth)")


def test_a1111_nv_matches_cuda_randn_up_to_the_resident_thread_count() -> None:
    if DRY:
        pytest.skip("compares against CUDA's own randn")
    from latent_ops.noise.philox import PhiloxGenerator

    props = torch.cuda.get_device_properties(DEVICE)
    limit = props.multi_processor_count * props.max_threads_per_multi_processor
    for seed, n in ((0, 4 * 64 * 64), (123456789, limit)):
        ours = PhiloxGenerator(seed).randn((n,))
        cuda = torch.randn((n,), generator=torch.Generator(DEVICE).manual_seed(seed), device=DEVICE).cpu()
        assert (ours - cuda).abs().max() <= 1.1e-5, (seed, n)
