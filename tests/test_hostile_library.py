"""Hostile inputs through the library: each one a clean, quick, memory-bounded refusal.

Every case is a small generated reproducer of a defect found by trying the library as a hostile
user would (issue 13). Cases that could allocate or loop without bound run in a child process
whose address space is capped at what it uses after its imports and set-up plus
:data:`EXTRA` (so "refused before it costs more than ~1 GB beyond the legitimate work" is what
is tested), and report the exception's type, message and the seconds the call took. A clean
refusal is a one-line ``ValueError`` (a ``LatentOpsError`` for files and models) that names the
input and the value, quoted briefly, within :data:`SECONDS`.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest
import torch

from latent_ops import interp, progress, walk
from latent_ops.noise import make_noise

EXTRA = 1 << 30
"""Address space a capped case may use beyond its set-up."""
SECONDS = 10.0
"""Time one refusal may take."""

_CHILD = """
import json, resource, sys, time
{setup}
size = next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith("VmSize"))
resource.setrlimit(resource.RLIMIT_AS, (size + {extra}, size + {extra}))
for call in {calls!r}:
    start = time.monotonic()
    try:
        exec(call)
        out = {{"type": None}}
    except BaseException as exc:  # noqa: BLE001 - the parent judges what came out
        out = {{"type": type(exc).__name__, "value_error": isinstance(exc, ValueError), "message": str(exc)}}
    out["seconds"] = time.monotonic() - start
    print(json.dumps(out), flush=True)
"""


def refusals(setup: str, *calls: str, timeout: float = 60.0) -> list[dict]:
    """Run each of ``calls`` after ``setup`` in one capped child; what each raised, as dicts."""
    code = _CHILD.format(setup=textwrap.dedent(setup), calls=list(calls), extra=EXTRA)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MALLOC_ARENA_MAX": "2", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=timeout * len(calls), env=env)
    lines = proc.stdout.strip().splitlines()
    assert proc.returncode == 0 and len(lines) == len(calls), proc.stderr[-2000:]
    return [json.loads(line) for line in lines]


def refusal(setup: str, call: str) -> dict:
    """:func:`refusals` of one call."""
    return refusals(setup, call)[0]


def assert_clean(out: dict, *needles: str, error: str | None = None) -> None:
    """A one-line ValueError (of class ``error`` if given) naming every needle, quick and short."""
    assert out["type"] is not None, "the hostile input was accepted"
    assert out["value_error"], f"{out['type']}: {out['message'][:300]}"
    if error is not None:
        assert out["type"] == error, out
    message = out["message"]
    assert "\n" not in message and len(message) < 400, message[:400]
    for needle in needles:
        assert needle in message, message
    assert out["seconds"] < SECONDS, out


# --------------------------------------------------------------------------- 6: traverse channel ranges
def test_traverse_channel_ranges_are_bounded_before_they_are_expanded() -> None:
    # Was: '0-100000000' built a 7.4 GB list then died; '0-3000000' printed a 25.9 MB error.
    texts = ["0-100000000", "0-3000000", "99999999999999999999-0", "0,1,2,3," * 300]
    outs = refusals("from latent_ops.traverse import parse_indices", *(f"parse_indices({t!r}, 4)" for t in texts))
    for out in outs:
        assert_clean(out, "channels")


def test_traverse_library_sizes_are_bounded() -> None:
    setup = "import torch; from latent_ops import traverse as T; x, big = torch.randn(2, 4, 8, 8), torch.randn(1, 4, 512, 512)"
    steps, channels, batch = refusals(
        setup, "T.traverse(x, steps=10**9, range_mode='interval')", "T.traverse_channels(x, [0] * 10**6)",
        # 1024 channels x 4096 steps of a 4 x 512 x 512 latent: 16 TiB, refused before allocating.
        "T.traverse_channels(big, [0, 1, 2, 3] * 256, steps=4096, mode='interval')")
    assert_clean(steps, "steps", "10")
    assert_clean(channels, "channels", "1000000", "1024")
    assert_clean(batch, "traversal batch", "elements")


# --------------------------------------------------------------------------- 10: bounded, interruptible loops
def test_grid_and_split_sizes_are_bounded() -> None:
    # Was: ImageGrid with 1 MB labels ran past 300 s; a 1x1-tile split of a 512 x 512 sheet gave
    # 262144 images (SaveImage wrote 13,375 files of them in 300 s).
    setup = "import torch; from latent_ops.media import images; im, one = torch.rand(4, 32, 32, 3), torch.rand(1, 512, 512, 3)"
    labels, sheet, split = refusals(setup, "images.labelled_grid(im, labels='\\n'.join(['σ' * 2**20] * 4))",
                                    "images.labelled_grid(one, columns=4096, scale=16, pad=256)",
                                    "images.split_grid(one, 1, 1)")
    assert_clean(labels, "labels[0]", "1048576 characters", "1024")
    assert_clean(sheet, "grid", "pixels")
    assert_clean(split, "split_grid", "262144", "4096")
    from latent_ops.media import images

    assert images.split_grid(torch.rand(1, 512, 512, 3), 1, 1, limit=100).shape == (100, 1, 1, 3)


def test_stacked_variations_are_capped() -> None:
    # Was: 200,000 stacked variations took 96 s and ignored Ctrl-C for 60 s.
    setup = ("from latent_ops.noise import make_noise; text = ', '.join(f'{i}:0.01' for i in range(200000)); "
             "pairs = [(i, 0.01) for i in range(200000)]")
    for out in refusals(setup, "make_noise((1, 4, 8, 8), 1, variations=text)",
                        "make_noise((1, 4, 8, 8), 1, variations=pairs)"):
        assert_clean(out, "variations", "200000", "1024")


def _interrupt_after(calls: int):  # noqa: ANN202 - a progress hook
    """A progress hook that raises Interrupted on its ``calls``-th call (a user pressing Ctrl-C)."""
    seen = [0]

    def hook(done: int, total: int) -> None:
        seen[0] += 1
        if seen[0] >= calls:
            raise progress.Interrupted("stop")

    hook.seen = seen  # type: ignore[attr-defined]
    return hook


def test_stacked_variations_stop_when_interrupted() -> None:
    hook = _interrupt_after(5)
    with progress.reporting(hook), pytest.raises(progress.Interrupted):
        make_noise((1, 4, 8, 8), 1, variations=[(i, 0.01) for i in range(1000)])
    assert hook.seen[0] == 5


def test_cluster_refuses_hours_of_work_up_front() -> None:
    # Was: Cluster with k_max 1024 and n_init 64 ran past 240 s.
    setup = "import torch; from latent_ops.space import cluster; x = torch.randn(1100, 4, 8, 8)"
    for out in refusals(setup, "cluster.cluster(x, None, k_max=1024, n_init=64)", "cluster.cluster(x, 1024, n_init=64)",
                        "cluster.kmeans(x.flatten(1), 1024, n_init=64)"):
        assert_clean(out, "estimated work", "n_init=64", "k_max")


def test_kmeans_and_silhouette_stop_when_interrupted(gen: torch.Generator) -> None:
    from latent_ops.space import cluster

    x = torch.randn(400, 16, generator=gen)
    for calls in (2, 20):  # inside k-means++ and inside the Lloyd iterations
        with progress.reporting(_interrupt_after(calls)), pytest.raises(progress.Interrupted):
            cluster.kmeans(x, 16, n_init=1, max_iter=100, tol=0.0)
    with progress.reporting(_interrupt_after(1)), pytest.raises(progress.Interrupted):
        cluster.silhouette_score(x, torch.arange(400) % 3, chunk=16)


def test_walk_stops_when_interrupted(gen: torch.Generator) -> None:
    keyframes = torch.randn(3, 4, 64, 64, generator=gen)
    with progress.reporting(_interrupt_after(1)), pytest.raises(progress.Interrupted):
        walk.walk(keyframes, 4000)


def test_grid_drawing_stops_when_interrupted() -> None:
    from latent_ops.media import images

    hook = _interrupt_after(3)
    with progress.reporting(hook), pytest.raises(progress.Interrupted):
        images.grid(torch.rand(16, 8, 8, 3), labels=[f"label {i}" for i in range(16)])


def test_check_keeps_the_last_position_and_is_silent_without_a_hook() -> None:
    progress.check()  # no hook: nothing happens
    calls: list[tuple[int, int]] = []
    with progress.reporting(lambda d, t: calls.append((d, t))):
        progress.check()
        progress.report(3, 7)
        progress.check()
    assert calls == [(0, 1), (3, 7), (3, 7)]


def test_a_library_loop_stops_within_a_second_of_an_interrupt() -> None:
    # The engine's hook raises once its interrupt event is set (Ctrl-C in the CLI).
    stop = threading.Event()

    def hook(done: int, total: int) -> None:
        if stop.is_set():
            raise progress.Interrupted("stop")

    timer = threading.Timer(0.2, stop.set)
    timer.start()
    import time

    start = time.monotonic()
    with progress.reporting(hook), pytest.raises(progress.Interrupted):
        make_noise((1, 4, 128, 128), 1, variations=[(i, 0.01) for i in range(1024)])
    assert time.monotonic() - start < 1.5
    timer.cancel()


# --------------------------------------------------------------------------- 12: API misuse
def test_slerp_of_an_empty_batch_is_empty_like_lerp() -> None:
    a = torch.zeros(0, 4, 8, 8)
    for granularity in ("sample", "pixel"):
        out = interp.slerp(a, a, 0.5, granularity=granularity)
        assert out.shape == a.shape and out.dtype == a.dtype
    assert interp.slerp(a, a, torch.zeros(0)).shape == a.shape
    assert interp.slerp_weights(a, a, 0.5)[0].shape == (0, 1, 1, 1)
    assert interp.lerp(a, a, 0.5).shape == a.shape


@pytest.mark.parametrize("func", [interp.lerp, interp.slerp])
def test_interp_refuses_none_and_accepts_numpy(func, gen: torch.Generator) -> None:  # noqa: ANN001
    a, b = torch.randn(2, 4, 8, 8, generator=gen), torch.randn(2, 4, 8, 8, generator=gen)
    name = func.__name__
    with pytest.raises(ValueError, match=rf"^{name}: t must be a float or a \(2,\) tensor, got None$"):
        func(a, b, None)
    with pytest.raises(ValueError, match=rf"^{name}: t must be .*got 'half'$"):
        func(a, b, "half")
    with pytest.raises(ValueError, match=rf"^{name}: a must be a tensor \(or numpy array\), got NoneType$"):
        func(None, b, 0.5)
    with pytest.raises(ValueError, match=rf"^{name}: b must be a tensor \(or numpy array\), got list$"):
        func(a, [1.0], 0.5)
    out = func(a.numpy(), b.numpy(), np.float64(0.25))
    assert isinstance(out, torch.Tensor) and torch.equal(out, func(a, b, 0.25))
    assert torch.equal(func(a, b, np.array([0.0, 1.0])), func(a, b, torch.tensor([0.0, 1.0])))


def test_walk_refuses_none_and_accepts_numpy(gen: torch.Generator) -> None:
    k = torch.randn(3, 4, 8, 8, generator=gen)
    assert torch.equal(walk.walk(k.numpy(), np.int64(9)), walk.walk(k, 9))
    assert torch.equal(walk.walk_weights(k.numpy(), 5), walk.walk_weights(k, 5))
    with pytest.raises(ValueError, match="^walk: keyframes must be a tensor .*got NoneType$"):
        walk.walk(None, 5)
    with pytest.raises(ValueError, match="^walk: frames must be an int >= 2, got None$"):
        walk.walk(k, None)
    with pytest.raises(ValueError, match="^walk: power must be a finite number > 0, got None$"):
        walk.walk(k, 5, easing="ease_in", power=None)
    with pytest.raises(ValueError, match="^walk: easing must be one of .*got None$"):
        walk.walk(k, 5, easing=None)
    with pytest.raises(ValueError, match=r"^walk: the frames .* = 256000000000 elements, at most 2147483648"):
        walk.walk(k, 10**9)


@pytest.mark.parametrize("shape", [(1, 4.5, 8, 8), (1, 4, 8.25, 8), (1, True, 8, 8), (1, 4, 8, "8"), (1, None, 8, 8)])
def test_make_noise_refuses_non_integral_sizes(shape: tuple) -> None:
    # Was: (1, 4.5, 8, 8) silently gave 4 channels.
    with pytest.raises(ValueError, match=r"^noise shape must be a sequence of whole numbers, got \(1, "):
        make_noise(shape, 1)


def test_make_noise_accepts_whole_sizes_of_any_integer_type() -> None:
    want = make_noise((1, 4, 8, 8), 7)
    for shape in [(1, 4.0, 8, 8), torch.Size([1, 4, 8, 8]), (np.int64(1), np.int32(4), 8, 8)]:
        assert torch.equal(make_noise(shape, 7), want)
    out = refusal("from latent_ops.noise import make_noise", "make_noise((10**6, 4, 1024, 1024), 1)")
    assert_clean(out, "make_noise", "elements")


# --------------------------------------------------------------------------- models: shared builders
def _sibling(name: str):  # noqa: ANN202 - a test module
    """Another test module of this folder (its builders), loaded by path (tests are not a package)."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(f"_hostile_{name}", Path(__file__).with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def vae_folder(tmp_path_factory):  # noqa: ANN201 - a Path
    """A tiny diffusers VAE folder (config.json + diffusion_pytorch_model.safetensors)."""
    folder = tmp_path_factory.mktemp("vae")
    _sibling("test_models").tiny_kl(torch.Generator().manual_seed(0)).save_pretrained(folder)
    return folder


def _with_config(folder, out, **change):  # noqa: ANN001, ANN202 - a Path
    """A copy of a model folder at ``out`` whose config.json has ``change`` applied (inf written as 1e400)."""
    import shutil

    shutil.copytree(folder, out)
    cfg = {**json.loads((folder / "config.json").read_text()), **change}
    (out / "config.json").write_text(json.dumps(cfg).replace("Infinity", "1e400"))
    return out


# --------------------------------------------------------------------------- 9: trusted VAE config.json
def test_vae_config_is_checked_before_the_module_is_built(vae_folder, tmp_path) -> None:
    # Was: block_out_channels 16384 tried a 9.6 GB allocation; layers_per_block 100000 ran 161 s to 7.6 GB.
    cases = [
        ({"block_out_channels": [16384] * 4}, ["config.json", "block_out_channels", "16384", "1..4096"]),
        ({"layers_per_block": 100000}, ["config.json", "layers_per_block=100000", "0..32"]),
        ({"latent_channels": float("inf")}, ["config.json", "latent_channels=inf"]),
        ({"block_out_channels": [8] * 100000}, ["config.json", "block_out_channels has 100000 entries"]),
        # within the bounds but not what the weights are: compared on a meta build, nothing allocated
        ({"block_out_channels": [4096] * 4}, ["wrong tensor shapes", "config.json", "(4096, 3, 3, 3)"]),
    ]
    folders = [_with_config(vae_folder, tmp_path / f"vae{i}", **change) for i, (change, _) in enumerate(cases)]
    setup = "from diffusers import AutoencoderKL, AutoencoderTiny; from latent_ops.vae import loading"  # imports untimed
    outs = refusals(setup, *(f"loading.load_vae({str(f)!r})" for f in folders))
    for out, (_, needles) in zip(outs, cases, strict=True):
        assert_clean(out, *needles, error="ModelLoadError")


def test_vae_config_bounds_admit_every_shipped_config() -> None:
    from pathlib import Path

    from latent_ops.vae import loading

    shipped = sorted((Path(loading.__file__).parents[1] / "configs").glob("*vae*/config.json"))
    shipped += sorted((Path(loading.__file__).parents[1] / "configs").glob("tae*/config.json"))
    assert len(shipped) >= 8
    for path in shipped:
        loading.check_config(json.loads(path.read_text()), str(path))


def test_model_folder_config_must_fit_its_weights(tmp_path) -> None:
    # The same defect through diffusers' from_pretrained (diffusers folders, the embedded model).
    from diffusers import UNet2DModel

    folder = tmp_path / "unet"
    UNet2DModel(block_out_channels=(8, 8), norm_num_groups=8, layers_per_block=1, sample_size=8,
                down_block_types=("DownBlock2D",) * 2, up_block_types=("UpBlock2D",) * 2).save_pretrained(folder)
    wide = _with_config(folder, tmp_path / "wide", block_out_channels=[2048, 2048])
    deep = _with_config(folder, tmp_path / "deep", layers_per_block=100000)
    setup = "from diffusers import UNet2DModel; from latent_ops.weights.preflight import check_folder"
    call = "check_folder({!r}, UNet2DModel.from_config, 'diffusion_pytorch_model')"
    honest, wide_out, deep_out = refusals(setup, *(call.format(str(f)) for f in (folder, wide, deep)))
    assert honest["type"] is None  # the honest folder passes
    assert_clean(wide_out, "config.json", "parameters", "weights hold", error="ModelLoadError")
    assert_clean(deep_out, "config.json", "layers_per_block=100000", error="ModelLoadError")


# --------------------------------------------------------------------------- 11: malformed model files
def _safetensors(path, header: bytes, data: bytes = b"") -> None:  # noqa: ANN001
    path.write_bytes(len(header).to_bytes(8, "little") + header + data)


def _malformed(root):  # noqa: ANN001, ANN202 - {name: path}
    """Small files and folders that made the loaders raise plain TypeError, OverflowError,
    RecursionError, AttributeError and ValueError without naming the file."""
    entry = {"w": {"dtype": "F32", "shape": [1], "data_offsets": ["a", "b"]}}
    _safetensors(root / "offsets.safetensors", json.dumps(entry).encode(), b"\0" * 4)  # TypeError
    inf = json.dumps({"w": {"dtype": "F32", "shape": [1e400], "data_offsets": [0, 4]}})
    _safetensors(root / "inf.safetensors", inf.replace("Infinity", "1e400").encode(), b"\0" * 4)  # OverflowError
    _safetensors(root / "deep.safetensors", b"[" * 100000 + b"]" * 100000)  # RecursionError
    from safetensors.torch import save_file

    for name, config in (("list", "[1, 2]"), ("scale", json.dumps({"scaling_factor": "abc"})),
                         ("nested", '{"a": ' + "[" * 100000 + "]" * 100000 + "}")):
        folder = root / f"config_{name}"  # AttributeError, ValueError, RecursionError
        folder.mkdir()
        save_file({"a": torch.zeros(1)}, str(folder / "diffusion_pytorch_model.safetensors"))
        (folder / "config.json").write_text(config)
    return {p.name: p for p in sorted(root.iterdir())}


def test_malformed_model_files_are_load_errors_naming_the_file(tmp_path) -> None:
    from latent_ops.errors import ModelLoadError
    from latent_ops.vae import loading

    for name, path in _malformed(tmp_path).items():
        with pytest.raises(ModelLoadError) as err:
            loading.load_vae(path)
        message = str(err.value)
        assert name in message and "\n" not in message and len(message) < 400, message


def test_malformed_checkpoints_are_checkpoint_errors_naming_the_file(tmp_path) -> None:
    from safetensors.torch import save_file

    from latent_ops import checkpoints
    from latent_ops.errors import CheckpointError, ModelLoadError

    for name, path in _malformed(tmp_path).items():
        if path.suffix:  # single files; folders are not checkpoints without model_index.json
            with pytest.raises(ModelLoadError, match=name):
                checkpoints.load_checkpoint(path)
    # An SD1 marker with junk UNet keys: the converter's KeyError/IndexError comes out as the file's error.
    marker = "cond_stage_model.transformer.text_model.final_layer_norm.weight"
    junk = {marker: torch.zeros(4), "model.diffusion_model.input_blocks.99.0.weight": torch.zeros(())}
    save_file(junk, str(tmp_path / "junk.safetensors"))
    with pytest.raises(CheckpointError, match=r"junk\.safetensors") as err:
        checkpoints.load_checkpoint(tmp_path / "junk.safetensors")
    assert "\n" not in str(err.value)


def test_a_tiny_file_claiming_to_be_a_checkpoint_allocates_nothing(tmp_path) -> None:
    # Was: the full SD1.5 UNet (3.4 GB) and CLIP were built before the file's keys were compared.
    from safetensors.torch import save_file

    path = tmp_path / "claim.safetensors"
    save_file({"cond_stage_model.transformer.text_model.final_layer_norm.weight": torch.zeros(768)}, str(path))
    setup = "import transformers, diffusers.loaders.single_file_utils; from latent_ops import checkpoints"
    out = refusal(setup, f"checkpoints.load_checkpoint({str(path)!r})")
    assert_clean(out, "claim.safetensors", "UNet keys do not match", error="CheckpointError")


# --------------------------------------------------------------------------- 12: pickles
def test_diffusers_folder_with_pickled_weights_is_refused(tmp_path) -> None:
    # Was: a benign pickled .bin inside a diffusers folder was loaded by diffusers.
    from latent_ops import checkpoints
    from latent_ops.errors import ModelLoadError

    folder = _sibling("test_checkpoints").make_folder(tmp_path)
    checkpoints.load_checkpoint(folder)  # the safetensors folder loads
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(folder / "unet")
    (folder / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    unet.save_pretrained(folder / "unet", safe_serialization=False)
    assert (folder / "unet" / "diffusion_pytorch_model.bin").is_file()
    with pytest.raises(ModelLoadError, match=r"unet: refusing pickled weights \['diffusion_pytorch_model\.bin'\]"):
        checkpoints.load_checkpoint(folder)
    from transformers import CLIPTextModel

    unet.save_pretrained(folder / "unet")  # safetensors again; now the text encoder is a pickle
    te = CLIPTextModel.from_pretrained(folder / "text_encoder")
    (folder / "text_encoder" / "model.safetensors").unlink()
    torch.save(te.state_dict(), folder / "text_encoder" / "pytorch_model.bin")  # transformers 5 saves no pickles
    with pytest.raises(ModelLoadError, match=r"text_encoder: refusing pickled weights \['pytorch_model\.bin'\]"):
        checkpoints.load_checkpoint(folder)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("version", ["2.5.1", "2.5.1+cu121", "2.1.0", "1.13.1", "garbage"])
def test_pickles_need_a_torch_without_the_weights_only_bypass(tmp_path, monkeypatch, version: str) -> None:
    # torch < 2.6 has a torch.load(weights_only=True) bypass (CVE-2025-32434): no pickle path there.
    from latent_ops.vae import loading
    from latent_ops.weights import files

    path = tmp_path / "ok.ckpt"
    torch.save({"w": torch.zeros(2)}, path)
    assert set(files.load_state_dict_safely(path, allow_pickle=True)) == {"w"}
    monkeypatch.setattr(torch, "__version__", version)
    with pytest.raises(files.ModelLoadError, match=rf"ok\.ckpt: refusing to read a pickle with torch {re.escape(version)}: .*"
                                                   r"CVE-2025-32434"):
        files.load_state_dict_safely(path, allow_pickle=True)
    with pytest.raises(files.ModelLoadError, match="CVE-2025-32434"):
        loading.load_vae(path, allow_pickle=True)
    files.check_pickle_torch("x", "2.6.0")  # the first fixed release passes
    files.check_pickle_torch("x", "2.13.0+cpu")


# --------------------------------------------------------------------------- the helpers themselves
def test_excerpt_quotes_briefly_and_says_how_long() -> None:
    from latent_ops.limits import excerpt

    assert excerpt("abc") == "'abc'"
    assert excerpt("x" * 10**6, 5) == "'xxxxx'... (1000000 characters)"
    assert excerpt(list(range(10**6))) == "[0, 1, 2, 3, 4, 5, 6, 7, ...] (1000000 items)"
    assert excerpt((1, 2)) == "(1, 2)" and excerpt(None) == "None"
    assert excerpt({"k": "v" * 500}, 10) == "{'k': 'vvv... (509 characters)"


def test_check_at_most_and_check_elements() -> None:
    from latent_ops.errors import LatentOpsError
    from latent_ops.limits import check_at_most, check_elements

    check_at_most("f", "n", 5, 5)
    with pytest.raises(LatentOpsError, match=r"^f: n is 6, at most 5 is allowed; do less$"):
        check_at_most("f", "n", 6, 5, "do less")
    check_elements("f", "x", (2, 3), limit=6)
    with pytest.raises(LatentOpsError, match=r"^f: x would have shape \(2, 4\) = 8 elements, at most 6 are allowed$"):
        check_elements("f", "x", (2, 4), limit=6)


def test_kmeans_work_counts_restarts_candidates_and_silhouettes() -> None:
    import math

    from latent_ops.space.cluster import kmeans_work

    assert kmeans_work(10, 3, [2], 1) == int(10 * 3 * (2 * (3 + math.log(2)) + 1))
    assert kmeans_work(10, 3, [2], 4) == int(4 * 10 * 3 * (2 * (3 + math.log(2)) + 1))
    assert kmeans_work(10, 3, range(2, 4), 1) == int(10 * 3 * (2 * (3 + math.log(2)) + 1 + 3 * (3 + math.log(3)) + 1))
    assert kmeans_work(100, 3, [2], 1, silhouette_sample=20) - kmeans_work(100, 3, [2], 1) == 20 * 20 * 3 // 16
    # the default clustering of a shipped-size batch is far inside the bound
    from latent_ops.limits import MAX_KMEANS_WORK

    assert kmeans_work(1000, 4 * 64 * 64, range(2, 11), 4, 2000) < MAX_KMEANS_WORK


def test_model_errors_keeps_library_errors_and_names_the_file_otherwise() -> None:
    from latent_ops.errors import CheckpointError, LatentOpsError, ModelLoadError
    from latent_ops.weights.files import model_errors, model_loader

    original = LatentOpsError("x.safetensors: already clear")
    with pytest.raises(LatentOpsError) as err, model_errors("x.safetensors"):
        raise original
    assert err.value is original
    with pytest.raises(ModelLoadError, match=r"^x\.safetensors: cannot load \(OverflowError: 'big'\)$"), \
            model_errors("x.safetensors"):
        raise OverflowError("big")
    with pytest.raises(ModelLoadError, match=r"^load: x\.safetensors is odd$"), model_errors("x.safetensors"):
        raise ValueError("load: x.safetensors is odd")  # names the file already: only the class changes
    with pytest.raises(KeyboardInterrupt), model_errors("x.safetensors"):
        raise KeyboardInterrupt  # not a file's fault

    @model_loader(CheckpointError)
    def load(path: str, n: int) -> int:
        """Doc."""
        return [1][n]

    assert load("a.sft", 0) == 1 and load.__doc__ == "Doc."
    with pytest.raises(CheckpointError, match=r"^a\.sft: cannot load \(IndexError: 'list index out of range'\)$"):
        load("a.sft", 3)


def test_preflight_reads_sharded_weights_and_bounds_nested_configs(tmp_path) -> None:
    from safetensors.torch import save_file

    from latent_ops.errors import ModelLoadError
    from latent_ops.weights import preflight

    save_file({"a": torch.zeros(2, 3)}, str(tmp_path / "part-1.safetensors"))
    save_file({"b": torch.zeros(4)}, str(tmp_path / "part-2.safetensors"))
    index = {"weight_map": {"a": "part-1.safetensors", "b": "part-2.safetensors"}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    files = preflight.weight_files(tmp_path, "model")
    assert [f.name for f in files] == ["part-1.safetensors", "part-2.safetensors"]
    preflight.check_fits(torch.nn.Linear(3, 2, bias=True), files, "m")  # 8 parameters <= 10 values
    with pytest.raises(ModelLoadError, match=r"^m: the config describes a Linear of 12 parameters but the weights hold 10"):
        preflight.check_fits(torch.nn.Linear(3, 3), files, "m")
    preflight.check_config_sizes({"text_config": {"num_hidden_layers": 128, "vocab_size": 49408}}, "c")
    with pytest.raises(ModelLoadError, match=r"^c: config text_config\.num_hidden_layers=129 is out of bounds \(at most 128\)$"):
        preflight.check_config_sizes({"text_config": {"num_hidden_layers": 129}}, "c")
    with pytest.raises(ModelLoadError, match=r"^c: config sizes has 65 entries, at most 64$"):
        preflight.check_config_sizes({"sizes": [1] * 65}, "c")
    with pytest.raises(ModelLoadError, match=r"^c: config scale=nan is not a finite number$"):
        preflight.check_config_sizes({"scale": float("nan")}, "c")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match=r"empty: no model\.safetensors in the folder$"):
        preflight.weight_files(tmp_path / "empty", "model")
