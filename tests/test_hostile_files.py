"""Hostile files against the media layer (issue 13): every bomb is refused before the large
allocation, folders are checked before they are created, counted names are taken race-free by
concurrent processes, ``.latent`` files are written streaming, and the smaller cases (counter
names, stale temporary files, the preview folder, ``%date:...%``, long prefixes).

Reproducers are built here, small (a 13000² PNG is 21 KB, an 800-frame GIF 18 KB). Where the
old behaviour was to allocate gigabytes, the case runs in a child process whose address space is
capped at its size after the imports plus a stated headroom (``resource.setrlimit``), so a
regression fails the test instead of exhausting the machine.
"""

from __future__ import annotations

import multiprocessing
import os
import stat
import struct
import subprocess
import sys
import textwrap
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageSequence

from latent_ops.media import files, folders

ROOT_INPUT = Path(__file__).resolve().parents[1] / "workflows" / "input"
_CAP = '''
import resource, sys
from pathlib import Path
def cap(headroom):
    """Cap this process's address space at its current size plus headroom bytes (soft limit)."""
    with open("/proc/self/status") as fh:
        size = next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmSize:"))
    resource.setrlimit(resource.RLIMIT_AS, (size + headroom, resource.RLIM_INFINITY))
def uncap():
    resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
'''


def run_capped(body: str, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    """Run ``body`` (which calls ``cap(headroom)`` after its imports) in a fresh Python."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MALLOC_ARENA_MAX": "2", "HF_HUB_OFFLINE": "1"}
    code = _CAP + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-W", "always", "-c", code, *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def bilevel_png(width: int, height: int, *extra: bytes) -> bytes:
    """A black 1-bit greyscale PNG, its pixel data compressed row block by row block (tiny on disk)."""
    row = b"\0" * (1 + (width + 7) // 8)
    packer, idat = zlib.compressobj(9), []
    for start in range(0, height, 1024):
        idat.append(packer.compress(row * min(1024, height - start)))
    idat.append(packer.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return files.PNG_SIGNATURE + chunk(b"IHDR", ihdr) + b"".join(extra) + chunk(b"IDAT", b"".join(idat)) + chunk(b"IEND", b"")


def many_frame_gif(width: int, height: int, frames: int) -> bytes:
    """A GIF whose every frame is the full ``width x height`` canvas but stores one pixel."""
    head = b"GIF89a" + struct.pack("<HHBBB", width, height, 0x80, 0, 0) + b"\0\0\0\xff\xff\xff"
    loop = b"\x21\xff\x0bNETSCAPE2.0\x03\x01\0\0\0"
    frame = (b"\x21\xf9\x04\x04\x01\0\0\0"  # graphic control: keep the frame, 10 ms
             + b"\x2c" + struct.pack("<HHHHB", 0, 0, 1, 1, 0)  # a 1x1 image at (0, 0)
             + b"\x02\x02\x44\x01\x00")  # LZW: clear, index 0, end
    return head + loop + frame * frames + b"\x3b"


@pytest.fixture
def folders_in(tmp_path):
    (tmp_path / "in").mkdir()
    with files.using(input_dir=tmp_path / "in", output_dir=tmp_path / "out", temp_dir=tmp_path / "tmp") as f:
        yield f


# ----------------------------------------------------------------------------- PNG text (defect 1)
def test_png_text_has_one_budget_for_all_chunks_together() -> None:
    eight_mib = zlib.compress(b"\0" * (8 << 20), 9)  # 8 KB on disk
    ten = b"".join(chunk(b"zTXt", b"k%d\0\0" % i + eight_mib) for i in range(10))
    with pytest.raises(files.FileAccessError, match=r"more than 67108864 bytes of text"):
        files.read_png_text(bilevel_png(1, 1, ten))
    # within the budget every chunk is read; keywords not asked for are skipped without inflating
    three = b"".join(chunk(b"zTXt", b"k%d\0\0" % i + eight_mib) for i in range(3))
    assert sorted(files.read_png_text(bilevel_png(1, 1, three))) == ["k0", "k1", "k2"]
    asked = files.read_png_text(bilevel_png(1, 1, ten, chunk(b"tEXt", b"prompt\0{}")), keys={"prompt"})
    assert asked == {"prompt": "{}"}


# ----------------------------------------------------------------------------- LoadImage bombs (defect 3)
_LOAD = '''
from latent_ops.media import files
cap({headroom})
try:
    files.load_image(Path(sys.argv[1]))
except files.FileAccessError as err:
    print("REFUSED", err)
'''


def test_a_13000_square_png_is_refused_before_decoding(tmp_path) -> None:
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(bilevel_png(13000, 13000))
    assert bomb.stat().st_size < 40_000
    started = time.perf_counter()
    proc = run_capped(_LOAD.format(headroom=1 << 30), str(bomb))
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "DecompressionBomb" not in proc.stderr  # a clean refusal, not Pillow's raw warning
    assert "REFUSED image 'bomb.png' is 13000x13000 = 169000000 pixels" in proc.stdout
    assert time.perf_counter() - started < 60


def test_an_800_frame_gif_is_refused_before_decoding(tmp_path) -> None:
    bomb = tmp_path / "frames.gif"
    bomb.write_bytes(many_frame_gif(1000, 1000, 800))
    with Image.open(bomb) as img:
        assert (img.size, img.n_frames) == ((1000, 1000), 800)
    proc = run_capped(_LOAD.format(headroom=1 << 30), str(bomb))
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "REFUSED image 'frames.gif' has 800 frame(s) of 1000x1000: 11.9 GiB" in proc.stdout


def _comfyui_load(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """ComfyUI's LoadImage loop (nodes.py, 0.3.64), written out as the reference for ordinary files."""
    from PIL import ImageOps

    images, masks, size = [], [], None
    with Image.open(path) as img:
        for frame in ImageSequence.Iterator(img):
            frame = ImageOps.exif_transpose(frame)
            if frame.mode == "I":
                frame = frame.point(lambda v: v * (1 / 255))
            rgb = frame.convert("RGB")
            size = size or rgb.size
            if rgb.size != size:
                continue
            images.append(torch.from_numpy(np.asarray(rgb, dtype=np.float32) / 255.0))
            if "A" in frame.getbands():
                masks.append(1.0 - torch.from_numpy(np.asarray(frame.getchannel("A"), dtype=np.float32) / 255.0))
            elif frame.mode == "P" and "transparency" in frame.info:
                alpha = np.asarray(frame.convert("RGBA").getchannel("A"), dtype=np.float32) / 255.0
                masks.append(1.0 - torch.from_numpy(alpha))
            else:
                masks.append(torch.zeros((64, 64), dtype=torch.float32))
    return torch.stack(images), torch.stack(masks)


def test_ordinary_images_load_exactly_as_before(tmp_path, gen) -> None:
    rgba = (torch.rand((5, 7, 4), generator=gen) * 255).to(torch.uint8).numpy()
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    Image.fromarray((np.arange(35).reshape(5, 7) * 1800).astype(np.int32), "I").save(tmp_path / "deep.tif")
    frames = [Image.fromarray(((rgba[..., :3].astype(int) + 40 * i) % 256).astype(np.uint8)).quantize(8) for i in range(3)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], transparency=0, disposal=2)
    for name in ("rgba.png", "deep.tif", "anim.gif", ROOT_INPUT / "example.png"):
        path = tmp_path / name
        image, mask = files.load_image(path)
        want_image, want_mask = _comfyui_load(path)
        assert torch.equal(image, want_image) and torch.equal(mask, want_mask), name


# ----------------------------------------------------------------------------- streaming .latent (defect 2)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int8, torch.bool])
def test_streamed_safetensors_are_the_bytes_safetensors_writes(dtype, gen, tmp_path) -> None:
    from safetensors import safe_open
    from safetensors.torch import save

    base = torch.randn((2, 4, 5, 3), generator=gen) * 10
    tensor = (base > 0) if dtype is torch.bool else base.to(dtype)
    tensors = {"latent_tensor": tensor.transpose(1, 3), "latent_format_version_0": torch.tensor([])}  # not contiguous
    for metadata in ({"prompt": '{"1": "é\\u0000"}'}, None):
        path = tmp_path / "a.latent"
        files.write_atomic(path, lambda fh, m=metadata: files.write_safetensors(fh, tensors, m, chunk=7), overwrite=True)
        reference = save({k: v.contiguous() for k, v in tensors.items()}, metadata=metadata)
        assert path.read_bytes() == reference
    many = {"prompt": "{}", "workflow": '{"nodes": []}', "é": "ü"}
    files.write_atomic(path, lambda fh: files.write_safetensors(fh, tensors, many), overwrite=True)
    with safe_open(str(path), "pt") as fh:
        assert fh.metadata() == many
        assert torch.equal(fh.get_tensor("latent_tensor"), tensors["latent_tensor"])


def test_save_latent_streams_without_a_second_copy(tmp_path) -> None:
    # 256 MiB of latent saved with 96 MiB of headroom: building the file in memory needs 2 x 256 MiB.
    proc = run_capped('''
        import json, torch
        from safetensors import safe_open
        from latent_ops.media import files
        samples = torch.arange(64 * 2**20, dtype=torch.float32).reshape(4, 4, 2048, 2048)
        with files.using(output_dir=sys.argv[1]):
            cap(96 * 2**20)
            entry = files.save_latent(samples, "big", prompt={"1": {"class_type": "SaveLatent"}})
            uncap()
        with safe_open(str(Path(sys.argv[1]) / entry["filename"]), "pt") as fh:
            assert torch.equal(fh.get_tensor("latent_tensor"), samples)
            assert json.loads(fh.metadata()["prompt"]) == {"1": {"class_type": "SaveLatent"}}
        print("OK", entry["filename"])
    ''', str(tmp_path / "out"))
    assert proc.returncode == 0 and "OK big_00001_.latent" in proc.stdout, proc.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["big_00001_.latent"]


# ----------------------------------------------------------------------------- concurrency (defect 4)
def _save_many(out: str, worker: int, barrier, count: int) -> None:
    with files.using(output_dir=out):
        barrier.wait()
        for i in range(count):
            files.save_latent(torch.full((1, 4, 2, 2), float(100 * worker + i)), "wc")
            files.save_images(torch.full((1, 2, 2, 3), (10 * worker + i) / 255), "sub/wc")


def test_concurrent_processes_with_one_prefix_keep_every_file(tmp_path) -> None:
    workers, count = 4, 12
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(workers)
    procs = [ctx.Process(target=_save_many, args=(str(tmp_path), w, barrier, count)) for w in range(workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0] * workers
    latents = sorted(tmp_path.glob("wc_*_.latent"))
    pngs = sorted((tmp_path / "sub").glob("wc_*_.png"))
    assert [p.name for p in latents] == [f"wc_{n:05}_.latent" for n in range(1, workers * count + 1)]
    assert [p.name for p in pngs] == [f"wc_{n:05}_.png" for n in range(1, workers * count + 1)]
    values = sorted(int(files.load_latent(p)["samples"][0, 0, 0, 0]) for p in latents)
    assert values == sorted(100 * w + i for w in range(workers) for i in range(count))
    shades = sorted(int(np.asarray(Image.open(p))[0, 0, 0]) for p in pngs)
    assert shades == sorted(10 * w + i for w in range(workers) for i in range(count))
    assert not list(tmp_path.rglob(".tmp-*"))


# ----------------------------------------------------------------------------- confinement (defects 7, 8)
def test_a_prefix_through_a_symlink_creates_no_folder_outside(folders_in, tmp_path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    folders_in.output_dir.mkdir()
    os.symlink(outside, folders_in.output_dir / "link")
    for save in (lambda: files.output_path("link/newsub/x", "png"),
                 lambda: files.save_latent(torch.zeros(1, 4, 2, 2), "link/newsub/deeper/x")):
        with pytest.raises(files.FileAccessError, match="outside"):
            save()
    assert list(outside.iterdir()) == []
    assert sorted(p.name for p in folders_in.output_dir.iterdir()) == ["link"]


def test_previews_go_to_a_private_folder_that_is_removed_at_exit(tmp_path) -> None:
    shared, planted = tmp_path / "shared_tmp", tmp_path / "planted"
    shared.mkdir()
    planted.mkdir()
    os.symlink(planted, shared / "latent_ops_temp")  # the old fixed name, planted by another user
    env = {**os.environ, "TMPDIR": str(shared), "OMP_NUM_THREADS": "1"}
    code = textwrap.dedent('''
        import os, stat, torch
        from latent_ops.media import files
        with files.using(output_dir="out"):
            entry = files.save_images(torch.zeros((1, 2, 2, 3)), "ComfyUI_temp_abcde", temp=True)[0]
            folder = files.temp_dir()
        print(folder, oct(stat.S_IMODE(folder.stat().st_mode)), (folder / entry["filename"]).is_file())
    ''')
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    folder, mode, written = proc.stdout.split()
    assert Path(folder).parent == shared and Path(folder).name.startswith("latent_ops_temp-")
    assert (mode, written) == ("0o700", "True")
    assert not Path(folder).exists()  # removed with its previews when the process ended
    assert list(planted.iterdir()) == []


# ----------------------------------------------------------------------------- smaller cases (12)
def test_counter_ignores_names_with_non_ascii_digits(folders_in) -> None:
    out = folders_in.output_dir
    out.mkdir()
    for name in ("wc_²_.latent", "wc_٣_.latent", "wc_00002_.latent"):
        (out / name).write_bytes(b"")
    assert files.next_counter(out, "wc") == 3
    assert files.save_latent(torch.zeros(1, 4, 2, 2), "wc")["filename"] == "wc_00003_.latent"


def test_stale_temporary_files_are_removed_on_the_first_write_into_a_folder(folders_in) -> None:
    out = folders_in.output_dir
    out.mkdir()
    names = {"stale": ".tmp-abcd_123.latent", "fresh": ".tmp-efgh4567.png", "not ours": ".tmp-other.latent",
             "no suffix": ".tmp-ijkl8901", "a folder": ".tmp-mnop2345.png"}
    for kind, name in names.items():
        (out / name).mkdir() if kind == "a folder" else (out / name).write_bytes(b"partial")
        if kind != "fresh":
            os.utime(out / name, (time.time() - 3600,) * 2)
    files.save_latent(torch.zeros(1, 4, 2, 2), "x")
    left = {p.name for p in out.iterdir()}
    assert left == {"x_00001_.latent", names["fresh"], names["not ours"], names["a folder"]}


def test_date_fields_follow_the_graph_editor() -> None:
    now = time.struct_time((2024, 3, 7, 9, 5, 4, 3, 67, 0))
    cases = {"yyyy-MM-dd": "2024-03-07", "yy/M/d h:m:s": "24/3/7 9:5:4", "hh.mm.ss": "09.05.04",
             "yyy y": "yyy y", "ddd": "077", "Date": "Date"}
    assert {k: folders.format_date(k, now) for k in cases} == cases
    widget = {("KSampler", "seed"): 42, ("Load", "image"): "a/b:c?.png"}.get
    text = "%date:yyyy-MM-dd%/s%KSampler.seed%_%Load.image%_%Missing.x%_%width%_%a.b.c%"
    assert folders.text_replacements(text, lambda n, w: widget((n, w)), now) == \
        "2024-03-07/s42_a_b_c_.png_%Missing.x%_%width%_%a.b.c%"


def test_date_fields_in_a_prefix_make_dated_folders(folders_in) -> None:
    before = time.strftime("%Y-%m-%d")
    target = files.save_latent(torch.zeros(1, 4, 2, 2), "%date:yyyy-MM-dd%/run")
    assert target["subfolder"] in {before, time.strftime("%Y-%m-%d")} and target["filename"] == "run_00001_.latent"


@pytest.mark.parametrize(("prefix", "needle"), [("a" * 10**6, "1000000 characters long"),
                                                ("sub/" + "b" * 300 + "/x", "300 bytes long")])
def test_long_prefixes_are_refused_with_a_short_message(folders_in, prefix: str, needle: str) -> None:
    with pytest.raises(files.FileAccessError, match=needle) as err:
        files.save_latent(torch.zeros(1, 4, 2, 2), prefix)
    assert len(str(err.value)) < 300
    assert not folders_in.output_dir.exists() or not any(folders_in.output_dir.iterdir())


def test_written_files_are_complete_and_normal(folders_in) -> None:
    entry = files.save_latent(torch.ones(1, 4, 2, 2), "ok")
    path = folders_in.output_dir / entry["filename"]
    assert stat.S_IMODE(path.stat().st_mode) == files.new_file_mode()
    assert torch.equal(files.load_latent(path)["samples"], torch.ones(1, 4, 2, 2))
