"""Device and dtype choice (latent_ops.devices) and where weights and outputs go.

Everything here runs on a CPU-only machine: CUDA and MPS are simulated by monkeypatching torch's
availability queries (the code paths that name the device are the real ones), weights are sent to
the ``meta`` device as a stand-in for a second device, and bfloat16 stands in for a second dtype.
The host-synchronisation tests count value reads (``item``, ``tolist``, ``cpu``, ``bool``,
``float``, ...) with a ``TorchFunctionMode`` and check the count does not grow with the number of
steps, frames or tiles; the GPU figures themselves are in ``tests/test_gpu.py``.
"""

from __future__ import annotations

import collections
import json
import subprocess
import sys
import threading
import traceback
from pathlib import Path

import pytest
import torch
from torch.overrides import TorchFunctionMode

from latent_ops import devices
from latent_ops.devices import DeviceError
from latent_ops.sampling.registry import SAMPLERS

ROOT = Path(__file__).resolve().parents[1]
META = torch.device("meta")


@pytest.fixture
def no_env(monkeypatch) -> None:
    monkeypatch.delenv(devices.DEVICE_ENV, raising=False)
    monkeypatch.delenv(devices.DTYPE_ENV, raising=False)


@pytest.fixture
def fake_cuda(monkeypatch):
    """Pretend torch has CUDA with ``n`` devices of compute capability ``cap``: ``fake_cuda(n, cap)``."""
    def install(n: int = 1, cap: tuple[int, int] = (8, 0)) -> None:
        monkeypatch.setattr(torch.backends.cuda, "is_built", lambda: True)
        monkeypatch.setattr(torch.cuda, "is_available", lambda: n > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: n)
        monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: cap)

    return install


@pytest.fixture
def no_gpu(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


# ----------------------------------------------------------------------------- names -> devices
def test_names_resolve_to_devices(fake_cuda) -> None:
    fake_cuda(2)
    assert devices.resolve_device("cpu") == torch.device("cpu")
    assert devices.resolve_device(" CUDA ") == torch.device("cuda")
    assert devices.resolve_device("cuda:1") == torch.device("cuda", 1)
    assert devices.resolve_device("auto") == torch.device("cuda", 0)
    assert devices.resolve_device(None) == torch.device("cuda", 0)
    assert devices.resolve_device(META) == META  # torch.device objects of other types pass as they are


def test_auto_without_a_gpu_is_the_cpu(no_gpu) -> None:
    assert devices.resolve_device("auto") == torch.device("cpu")
    assert devices.auto_dtype(torch.device("cpu")) == torch.float32


def test_auto_prefers_mps_when_there_is_no_cuda(no_gpu, monkeypatch) -> None:
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert devices.resolve_device("auto") == torch.device("mps")
    assert devices.resolve_device("mps") == torch.device("mps")
    assert devices.auto_dtype(torch.device("mps")) == torch.float16


@pytest.mark.parametrize("spec", ["gpu", "cuda:x", "mps:1", "xla", "", "cuda:-1"])
def test_unknown_device_names_are_one_line_errors(spec: str) -> None:
    with pytest.raises(DeviceError, match="unknown device; expected one of auto, cpu, cuda, cuda:N, mps") as err:
        devices.resolve_device(spec, source="--device")
    assert "\n" not in str(err.value) and str(err.value).startswith("--device")
    assert isinstance(err.value, ValueError)


def test_unavailable_cuda_is_a_one_line_error_with_the_reason(no_gpu, monkeypatch) -> None:
    with pytest.raises(DeviceError, match=r"^--device 'cuda' is not available: .*; use cpu or auto$"):
        devices.resolve_device("cuda", source="--device")
    monkeypatch.setattr(torch.backends.cuda, "is_built", lambda: False)
    with pytest.raises(DeviceError, match="built without CUDA"):
        devices.resolve_device(torch.device("cuda"))
    with pytest.raises(DeviceError, match="no usable Apple MPS"):
        devices.resolve_device("mps")


def test_a_cuda_index_past_the_last_device_is_refused(fake_cuda) -> None:
    fake_cuda(1)
    with pytest.raises(DeviceError, match=r"'cuda:3' is not available: only 1 CUDA device\(s\) here \(cuda:0..cuda:0\)"):
        devices.resolve_device("cuda:3")
    fake_cuda(0)
    with pytest.raises(DeviceError, match="no CUDA GPU is visible"):
        devices.resolve_device("cuda")


def test_dtype_names_and_auto(fake_cuda) -> None:
    cpu = torch.device("cpu")
    assert [devices.resolve_dtype(n, cpu) for n in ("fp32", "fp16", "bf16", "auto", None)] == [
        torch.float32, torch.float16, torch.bfloat16, torch.float32, torch.float32]
    assert devices.resolve_dtype("BFloat16", cpu) == torch.bfloat16 and devices.resolve_dtype("half", cpu) == torch.float16
    assert devices.resolve_dtype(torch.bfloat16, cpu) == torch.bfloat16
    fake_cuda(1, (8, 6))  # Ampere and later: bfloat16
    assert devices.resolve_dtype("auto", torch.device("cuda", 0)) == torch.bfloat16
    fake_cuda(1, (7, 5))  # Turing: float16 (no native bfloat16)
    assert devices.resolve_dtype("auto", torch.device("cuda", 0)) == torch.float16


@pytest.mark.parametrize("spec", ["fp8", "int8", "float64", torch.float64, 3])
def test_bad_dtypes_are_one_line_errors(spec: object) -> None:
    with pytest.raises(DeviceError, match="dtype") as err:
        devices.resolve_dtype(spec, torch.device("cpu"))  # type: ignore[arg-type]
    assert "\n" not in str(err.value)


# ----------------------------------------------------------------------------- the library default
def test_default_is_auto_then_env_then_using(no_env, no_gpu, monkeypatch) -> None:
    assert devices.compute_device() == torch.device("cpu") and devices.compute_dtype() == torch.float32
    monkeypatch.setenv(devices.DTYPE_ENV, "bf16")
    assert devices.compute_dtype() == torch.bfloat16
    with devices.using(META, "fp16"):
        assert devices.compute_device() == META and devices.compute_dtype() == torch.float16
        with devices.using(dtype="fp32"):  # None keeps the outer device
            assert devices.compute_device() == META and devices.compute_dtype() == torch.float32
        assert devices.compute_dtype() == torch.float16
    assert devices.compute_device() == torch.device("cpu") and devices.compute_dtype() == torch.bfloat16
    assert devices.intermediate_device() == torch.device("cpu")


def test_a_bad_environment_variable_is_named_in_the_error(no_env, no_gpu, monkeypatch) -> None:
    monkeypatch.setenv(devices.DEVICE_ENV, "cuda:2")
    with pytest.raises(DeviceError, match=r"^LATENT_OPS_DEVICE 'cuda:2' is not available"):
        devices.compute_device()
    with pytest.raises(DeviceError, match="LATENT_OPS_DEVICE"), devices.using():  # checked on entry
        pass
    with devices.using("cpu"):  # an explicit choice wins over the environment
        assert devices.compute_device() == torch.device("cpu")
    monkeypatch.setenv(devices.DEVICE_ENV, "cpu")
    monkeypatch.setenv(devices.DTYPE_ENV, "fp12")
    with pytest.raises(DeviceError, match=r"^LATENT_OPS_DTYPE 'fp12': unknown dtype"), devices.using():
        pass


def test_using_checks_on_entry_and_restores_on_error(no_env, no_gpu) -> None:
    with pytest.raises(DeviceError, match="'cuda' is not available"), devices.using("cuda"):
        pytest.fail("the block must not run")
    with pytest.raises(RuntimeError, match="boom"), devices.using(META, "bf16"):
        raise RuntimeError("boom")
    assert devices.compute_device() == torch.device("cpu") and devices.compute_dtype() == torch.float32


def test_the_choice_is_per_thread(no_env, no_gpu) -> None:
    seen: list[torch.device] = []
    with devices.using(META):
        worker = threading.Thread(target=lambda: seen.append(devices.compute_device()))
        worker.start()
        worker.join()
        assert devices.compute_device() == META
    assert seen == [torch.device("cpu")]  # a new thread starts from the default, not from this block


def test_describe_and_synchronize_on_the_cpu() -> None:
    assert devices.describe(torch.device("cpu")) == "cpu"
    devices.synchronize(torch.device("cpu"))  # nothing to wait for; must not raise


# ----------------------------------------------------------------------------- nodes and loaders
def test_comfy_adapter_falls_back_to_the_library_default(no_env, no_gpu) -> None:
    from latent_ops_nodes import comfy_adapter

    assert comfy_adapter.compute_device() == torch.device("cpu")
    with devices.using(META, "bf16"):
        assert comfy_adapter.compute_device() == META
        assert comfy_adapter.compute_dtype() == torch.bfloat16
        assert comfy_adapter.intermediate_device() == torch.device("cpu")


def _placement(module: torch.nn.Module) -> set[tuple[str, torch.dtype]]:
    return {(p.device.type, p.dtype) for p in module.parameters()}


def test_checkpoint_loader_node_puts_every_network_on_the_compute_device(no_env) -> None:
    from latent_ops_nodes.sampling import LatentOpsCheckpointLoader

    with devices.using(META, "bf16"):
        model, clip, vae = LatentOpsCheckpointLoader().load("latent-ops-default")
    assert _placement(model.backbone.unet) == {("meta", torch.bfloat16)}
    assert model.device == META
    assert _placement(vae.module) == {("meta", torch.bfloat16)} and (vae.device, vae.dtype) == (META, torch.bfloat16)
    cond = clip.encode("A")[0][0]  # CONDITIONING lives on the intermediate device, as ComfyUI's does
    assert cond.device.type == "cpu" and cond.dtype == torch.float32


def test_vae_loader_node_auto_follows_the_library_default(no_env) -> None:
    from latent_ops_nodes.vae import LatentOpsVAELoader

    with devices.using(META, "fp16"):
        (auto,) = LatentOpsVAELoader().load("latent-ops-default", dtype="auto")
        (fixed,) = LatentOpsVAELoader().load("latent-ops-default", dtype="fp32")  # an explicit widget wins
    assert _placement(auto.module) == {("meta", torch.float16)}
    assert _placement(fixed.module) == {("meta", torch.float32)}


def test_embedded_checkpoint_honours_device_and_dtype() -> None:
    from latent_ops.checkpoints import loading

    model, text_encoder, vae = loading.load_checkpoint(loading.EMBEDDED_DIR, device=META, dtype=torch.bfloat16)
    assert _placement(model.backbone.unet) == {("meta", torch.bfloat16)} and model.device == META
    assert _placement(vae.module) == {("meta", torch.bfloat16)}
    assert text_encoder.encode("B")[0][0].device.type == "cpu"


@pytest.fixture(scope="module")
def embedded_pair() -> tuple:
    from latent_ops.checkpoints import loading

    return (loading.load_checkpoint(loading.EMBEDDED_DIR),
            loading.load_checkpoint(loading.EMBEDDED_DIR, dtype=torch.bfloat16))


def test_outputs_come_back_float32_on_the_intermediate_device_whatever_the_compute_dtype(embedded_pair) -> None:
    from latent_ops.sampling import diffusion

    results = []
    for model, te, vae in embedded_pair:
        latent = {"samples": torch.zeros(2, 4, 8, 8)}
        out = diffusion.sample(model, latent, te.encode("A"), te.encode(""), seed=3, steps=4, cfg=3.0,
                               sampler_name="euler", scheduler="normal")["samples"]
        image = vae.decode(out)
        assert out.device.type == image.device.type == "cpu"
        assert out.dtype == image.dtype == torch.float32 and image.shape == (2, 32, 32, 3)
        results.append((out, image))
    assert _placement(embedded_pair[1][0].backbone.unet) == {("cpu", torch.bfloat16)}
    (lat32, img32), (lat16, img16) = results
    assert not torch.equal(lat32, lat16)  # the bfloat16 network really ran...
    assert (img32 - img16).abs().mean() < 0.05  # ...and still draws the same picture


# ----------------------------------------------------------------------------- the command line
class Probe:
    """An output node that records the device and dtype the library default gives while it runs."""

    CATEGORY = "test"
    RETURN_TYPES = ()
    FUNCTION = "probe"
    OUTPUT_NODE = True
    seen: list = []

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {}}

    def probe(self) -> dict:
        Probe.seen.append((devices.compute_device(), devices.compute_dtype()))
        return {"ui": {}}


def _probe_run(tmp_path: Path, capsys, *flags: str) -> tuple[int, str, list]:
    from latent_ops.workflow import cli

    wf = tmp_path / "probe.json"
    wf.write_text(json.dumps({"1": {"class_type": "Probe", "inputs": {}}}))
    Probe.seen = []
    code = cli.main(["run", str(wf), "--out", str(tmp_path / "out"), "--no-progress", *flags], {"Probe": Probe})
    return code, capsys.readouterr().err, Probe.seen


def test_cli_sets_the_library_default_around_the_run(tmp_path: Path, capsys, no_env, no_gpu) -> None:
    code, err, seen = _probe_run(tmp_path, capsys, "--device", "cpu", "--dtype", "bf16")
    assert (code, seen) == (0, [(torch.device("cpu"), torch.bfloat16)]), err
    code, _, seen = _probe_run(tmp_path, capsys)
    assert (code, seen) == (0, [(torch.device("cpu"), torch.float32)])  # auto on a machine without a GPU
    assert devices.compute_dtype() == torch.float32  # nothing leaks out of the run


@pytest.mark.parametrize("flags", [("--device", "cuda"), ("--device", "cuda:1"), ("--device", "tpu")])
def test_cli_refuses_an_unavailable_device_in_one_line_with_exit_2(tmp_path: Path, capsys, no_env, no_gpu,
                                                                    flags: tuple[str, str]) -> None:
    code, err, seen = _probe_run(tmp_path, capsys, *flags)
    assert code == 2 and seen == []
    assert err.count("\n") == 1 and err.startswith(f"latent-ops: device '{flags[1]}'"), err


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: --device cuda is available")
def test_installed_script_exits_2_for_device_cuda_without_cuda(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "latent-ops"
    cmd = [str(script)] if script.exists() else [sys.executable, "-c", "from latent_ops_nodes.cli import main; main()"]
    proc = subprocess.run([*cmd, "run", str(ROOT / "workflows" / "txt2img_samplers.json"), "--device", "cuda"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "'cuda' is not available" in proc.stderr, proc.stderr


# ----------------------------------------------------------------------------- host synchronisation
_READS = {torch.Tensor.item, torch.Tensor.tolist, torch.Tensor.cpu, torch.Tensor.numpy, torch.Tensor.__bool__,
          torch.Tensor.__float__, torch.Tensor.__int__, torch.Tensor.__index__}


class HostReads(TorchFunctionMode):
    """Counts the tensor calls that read values on the host (each one synchronises with a GPU),
    by the library line that made them."""

    def __init__(self) -> None:
        super().__init__()
        self.where: collections.Counter = collections.Counter()

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        if func in _READS:
            frame = traceback.extract_stack(limit=2)[0]
            self.where[f"{Path(frame.filename).name}:{frame.lineno} {func.__name__}"] += 1
        return func(*args, **(kwargs or {}))


def _backbone(x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, **extra: object) -> torch.Tensor:
    return 0.1 * x + cond.mean(dim=(1, 2)).view(-1, 1, 1, 1)


def _sampler_reads(monkeypatch, name: str, steps: int) -> collections.Counter:
    """Host reads inside the sampling loop (``run_sampler``) of a ``steps``-step run of ``name``."""
    from latent_ops.latent_format import SD15
    from latent_ops.sampling import diffusion
    from latent_ops.sampling.denoisers import DiscreteSampling

    counter = HostReads()
    inner = diffusion.sampling.run_sampler

    def counted(*args: object, **kwargs: object) -> torch.Tensor:
        with counter:
            return inner(*args, **kwargs)

    monkeypatch.setattr(diffusion.sampling, "run_sampler", counted)
    model = diffusion.DiffusionModel(_backbone, DiscreteSampling.from_betas(), SD15)
    diffusion.sample(model, {"samples": torch.zeros(2, 4, 8, 8)}, [[torch.ones(1, 1, 8), {}]],
                     [[torch.zeros(1, 1, 8), {}]], seed=1, steps=steps, cfg=5.0, sampler_name=name,
                     scheduler="normal")
    monkeypatch.setattr(diffusion.sampling, "run_sampler", inner)
    return counter.where


@pytest.mark.parametrize("name", SAMPLERS.names())
def test_sampler_loop_reads_nothing_on_the_host_per_step(monkeypatch, name: str) -> None:
    few, many = _sampler_reads(monkeypatch, name, 10), _sampler_reads(monkeypatch, name, 20)
    assert many - few == collections.Counter(), f"host reads grow with steps: {dict(many - few)}"
    assert sum(many.values()) <= 4, dict(many)  # the per-run checks of the sigmas, nothing more


def test_a_denoiser_call_stays_on_the_device() -> None:
    """The whole guided model call (conditioning plan, sigma -> timestep table, CFG) runs on ``meta``
    tensors, where any host read or device-to-host copy raises: so it makes none."""
    from latent_ops.latent_format import SD15
    from latent_ops.sampling import diffusion
    from latent_ops.sampling.denoisers import DiscreteSampling

    for ms in (DiscreteSampling.from_betas(), DiscreteSampling.from_betas(continuous=True)):
        model = diffusion.DiffusionModel(_backbone, ms, SD15, device=META)
        den = model.guided([[torch.ones(1, 1, 8), {}]], [[torch.zeros(1, 1, 8), {}]], 5.0)
        out = den(torch.zeros(2, 4, 8, 8, device=META), torch.full((2,), 3.0, device=META))
        assert out.device == META and out.shape == (2, 4, 8, 8)


def test_walk_reads_nothing_on_the_host_per_frame() -> None:
    from latent_ops import walk

    keys = torch.randn(3, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    counts = []
    for frames in (16, 64):
        with HostReads() as counter:
            walk.walk(keys, frames, easing="ease_in_out", loop=True)
        counts.append(counter.where)
    assert counts[0] == counts[1], (dict(counts[0]), dict(counts[1]))


def test_tiles_read_nothing_on_the_host_per_tile(tiny_kl, gen) -> None:
    from latent_ops.vae import tiling

    vae = tiny_kl(gen, chans=(8, 8))
    z = torch.randn(1, 4, 32, 32, generator=gen)
    counts = []
    for tile in (16, 8):  # 4 tiles, then 16
        with HostReads() as counter:
            tiling.run(vae, "decode", z, tiling.Plan("tiles", (tile, tile), 4))
        counts.append(counter.where)
    assert counts[0] == counts[1], (dict(counts[0]), dict(counts[1]))
