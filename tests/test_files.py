"""Confined input/output folders, ComfyUI's filename counter, atomic no-overwrite writes, PNG text
chunks and ComfyUI's .latent format."""

from __future__ import annotations

import json
import os
import zlib

import numpy as np
import pytest
import torch
from PIL import Image, PngImagePlugin

from latent_ops.media import files, png
from latent_ops.media import folders as folders_mod


@pytest.fixture
def folders(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    with files.using(input_dir=tmp_path / "in", output_dir=tmp_path / "out", temp_dir=tmp_path / "tmp") as f:
        yield f


def test_resolve_input_accepts_names_and_subfolders(folders) -> None:
    (folders.input_dir / "sub").mkdir()
    (folders.input_dir / "sub" / "a.png").write_bytes(b"x")
    (folders.input_dir / "b.png").write_bytes(b"y")
    assert files.resolve_input("b.png") == (folders.input_dir / "b.png").resolve()
    assert files.resolve_input("sub/a.png").read_bytes() == b"x"
    assert files.resolve_input("sub\\a.png").read_bytes() == b"x"
    assert files.list_inputs() == ["b.png"]
    assert files.list_inputs(frozenset({".latent"})) == []


@pytest.mark.parametrize(("name", "needle"), [
    ("../secret.txt", "'..'"),
    ("sub/../../secret.txt", "'..'"),
    ("..\\secret.txt", "'..'"),
    ("/etc/passwd", "absolute"),
    ("C:/Windows/win.ini", "absolute"),
    ("", "non-empty"),
    ("a\0b", "NUL"),
    ("missing.png", "not found"),
])
def test_resolve_input_refuses_escapes_and_missing_files(folders, name: str, needle: str) -> None:
    (folders.input_dir.parent / "secret.txt").write_text("s")
    with pytest.raises(files.FileAccessError, match=needle):
        files.resolve_input(name)


def test_symlink_pointing_out_of_the_input_folder_is_refused(folders) -> None:
    outside = folders.input_dir.parent / "secret.txt"
    outside.write_text("s")
    os.symlink(outside, folders.input_dir / "link.png")
    os.symlink(folders.input_dir.parent, folders.input_dir / "up")
    with pytest.raises(files.FileAccessError, match="outside"):
        files.resolve_input("link.png")
    with pytest.raises(files.FileAccessError, match="outside"):
        files.resolve_input("up/secret.txt")


def test_output_counter_follows_comfyui(folders) -> None:
    out = folders.output_dir
    assert files.output_path("ComfyUI", "png").filename == "ComfyUI_00001_.png"
    for name in ("ComfyUI_00003_.png", "ComfyUI_00007_.latent", "ComfyUIx_00050_.png", "ComfyUI_abc_.png", "Other_00100_.png"):
        (out / name).write_bytes(b"")
    target = files.output_path("ComfyUI", "png")
    assert (target.filename, target.subfolder, target.type) == ("ComfyUI_00008_.png", "", "output")
    sub = files.output_path("latents/run", "latent")
    assert sub.path == out / "latents" / "run_00001_.latent" and sub.subfolder == "latents"
    assert sub.ui() == {"filename": "run_00001_.latent", "subfolder": "latents", "type": "output"}
    assert files.output_path("img_%width%x%height%", "png", width=64, height=32).filename == "img_64x32_00001_.png"
    assert files.output_path("p", "png", temp=True).path.parent == folders.temp_dir
    assert files.output_path("dir/", "png").path == out / "dir" / "_00001_.png"


@pytest.mark.parametrize("prefix", ["../evil", "/tmp/evil", "a/../../evil", "", "..\\evil"])
def test_output_prefix_cannot_escape(folders, prefix: str) -> None:
    with pytest.raises(files.FileAccessError):
        files.output_path(prefix, "png")


def test_output_prefix_through_a_symlinked_folder_is_refused(folders, tmp_path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.symlink(elsewhere, folders.output_dir / "link")
    with pytest.raises(files.FileAccessError, match="outside"):
        files.output_path("link/x", "png")


def test_write_atomic_never_overwrites_and_leaves_nothing_on_error(folders) -> None:
    path = folders.output_dir / "a.bin"
    files.write_atomic(path, b"first")
    with pytest.raises(FileExistsError):
        files.write_atomic(path, b"second")
    assert path.read_bytes() == b"first"

    def failing(fh) -> None:
        fh.write(b"partial")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        files.write_atomic(folders.output_dir / "b.bin", failing)
    assert sorted(p.name for p in folders.output_dir.iterdir()) == ["a.bin"]
    files.write_atomic(path, b"third", overwrite=True)
    assert path.read_bytes() == b"third"


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_written_files_get_the_umask_permissions_not_mkstemps_0600(folders, umask) -> None:
    from latent_ops.media import images

    old = os.umask(umask)
    try:
        assert files.new_file_mode() == 0o666 & ~umask
        png = files.write_atomic(folders.output_dir / "a.png", b"x")
        gif = folders.output_dir / "a.gif"
        images.save_gif(torch.zeros(2, 4, 4, 3), gif)
    finally:
        os.umask(old)
    assert (png.stat().st_mode & 0o777) == (gif.stat().st_mode & 0o777) == 0o666 & ~umask


def test_png_metadata_round_trip(folders) -> None:
    prompt = {"1": {"class_type": "X", "inputs": {"text": "ünïcode"}}}
    workflow = {"nodes": [], "links": [], "note": "é"}
    image = torch.linspace(0, 1, 4 * 5 * 3).reshape(4, 5, 3)
    path = files.save_png(image, folders.output_dir / "m.png", prompt, {"workflow": workflow})
    chunks = files.read_png_text(path.read_bytes())
    assert json.loads(chunks["prompt"]) == prompt and json.loads(chunks["workflow"]) == workflow
    with Image.open(path) as img:  # PIL reads the same chunks ComfyUI's editor reads
        assert json.loads(img.text["prompt"]) == prompt
        pixels = np.asarray(img)
    expected = np.clip(255.0 * image.numpy(), 0, 255).astype(np.uint8)  # ComfyUI truncates
    np.testing.assert_array_equal(pixels, expected)


def test_read_png_text_handles_compressed_chunks_and_garbage(tmp_path) -> None:
    info = PngImagePlugin.PngInfo()
    info.add_itxt("workflow", '{"a": "ü"}', zip=True)
    info.add_text("prompt", "{}", zip=True)
    Image.new("RGB", (2, 2)).save(tmp_path / "c.png", pnginfo=info)
    chunks = files.read_png_text((tmp_path / "c.png").read_bytes())
    assert chunks == {"workflow": '{"a": "ü"}', "prompt": "{}"}
    with pytest.raises(files.FileAccessError):
        files.read_png_text(b"GIF89a")
    bad = files.PNG_SIGNATURE + b"\x00\x00\x00\x0bzTXtkey\x00\x00notzlib" + b"\x00" * 4
    with pytest.raises(files.FileAccessError, match="corrupt"):
        files.read_png_text(bad)
    bomb = zlib.compress(b"a" * 5000)
    body = b"key\x00\x00" + bomb
    chunk = len(body).to_bytes(4, "big") + b"zTXt" + body + b"\x00" * 4
    with pytest.raises(files.FileAccessError):
        files.read_png_text(files.PNG_SIGNATURE + chunk, budget=1000)


def test_latent_file_round_trip_and_legacy_scaling(folders) -> None:
    from safetensors import safe_open
    from safetensors.torch import save_file

    samples = torch.arange(2 * 4 * 3 * 5, dtype=torch.float32).reshape(2, 4, 3, 5)
    entry = files.save_latent(samples, "latents/x", {"1": {}}, {"workflow": {"w": 1}})
    path = folders.output_dir / entry["subfolder"] / entry["filename"]
    with safe_open(str(path), "pt") as fh:
        assert sorted(fh.keys()) == ["latent_format_version_0", "latent_tensor"]
        assert json.loads(fh.metadata()["prompt"]) == {"1": {}} and json.loads(fh.metadata()["workflow"]) == {"w": 1}
    torch.testing.assert_close(files.load_latent(path)["samples"], samples)
    legacy = folders.input_dir / "old.latent"
    save_file({"latent_tensor": samples}, str(legacy))
    torch.testing.assert_close(files.load_latent(legacy)["samples"], samples * (1.0 / 0.18215))
    (folders.input_dir / "junk.latent").write_bytes(b"not safetensors")
    with pytest.raises(files.FileAccessError, match="cannot read latent"):
        files.load_latent(folders.input_dir / "junk.latent")
    save_file({"other": samples}, str(folders.input_dir / "wrong.latent"))
    with pytest.raises(files.FileAccessError, match="latent_tensor"):
        files.load_latent(folders.input_dir / "wrong.latent")


def test_load_image_rgba_rgb_palette_and_frames(folders) -> None:
    rgba = np.zeros((3, 4, 4), dtype=np.uint8)
    rgba[..., 0] = 200
    rgba[..., 3] = np.array([[0, 51, 102, 255]] * 3, dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(folders.input_dir / "a.png")
    image, mask = files.load_image(folders.input_dir / "a.png")
    assert image.shape == (1, 3, 4, 3) and image.dtype == torch.float32
    torch.testing.assert_close(image[0, 0, 0], torch.tensor([200 / 255, 0.0, 0.0]))
    torch.testing.assert_close(mask[0, 0], torch.tensor([1.0, 1 - 51 / 255, 1 - 102 / 255, 0.0]))
    Image.new("RGB", (5, 6), (10, 20, 30)).save(folders.input_dir / "b.jpg", quality=100)
    image, mask = files.load_image(folders.input_dir / "b.jpg")
    assert image.shape == (1, 6, 5, 3) and mask.shape == (1, 64, 64) and mask.abs().sum() == 0
    pal = Image.new("P", (4, 4), 1)
    pal.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    pal.info["transparency"] = 1
    pal.save(folders.input_dir / "p.png", transparency=1)
    _, mask = files.load_image(folders.input_dir / "p.png")
    assert mask.shape == (1, 4, 4) and torch.all(mask == 1.0)
    frames = [Image.new("RGB", (4, 4), (i * 50, 0, 0)) for i in range(3)]
    frames[0].save(folders.input_dir / "anim.gif", save_all=True, append_images=frames[1:])
    image, mask = files.load_image(folders.input_dir / "anim.gif")
    assert image.shape == (3, 4, 4, 3) and mask.shape[0] == 3
    (folders.input_dir / "fake.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(files.FileAccessError, match="cannot read image"):
        files.load_image(folders.input_dir / "fake.png")


def test_save_images_checks_every_image_before_writing(folders) -> None:
    images = torch.rand(3, 4, 4, 3, generator=torch.Generator().manual_seed(0))
    images[2, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        files.save_images(images, "batch")
    assert list(folders.output_dir.iterdir()) == []
    entries = files.save_images(images[:2], "batch_%batch_num%")
    assert [e["filename"] for e in entries] == ["batch_0_00001_.png", "batch_1_00001_.png"]
    with pytest.raises(ValueError, match=r"\[B, H, W, 3\]"):
        files.save_images(images[0], "x")


def test_using_nests_and_restores(tmp_path) -> None:
    before = files.current()
    with files.using(input_dir=tmp_path / "a"):
        with files.using(output_dir=tmp_path / "b"):
            assert files.current().input_dir == tmp_path / "a" and files.current().output_dir == tmp_path / "b"
        assert files.current().output_dir == before.output_dir
    assert files.current() == before


def test_files_reexports_the_names_of_its_split_modules() -> None:
    """Callers keep using ``files.X`` for names that now live in media.folders and media.png."""
    from latent_ops.errors import FileAccessError

    for name in ("Folders", "OutputFile", "current", "using", "temp_dir", "safe_name", "resolve_input",
                 "list_inputs", "sha256", "next_counter", "output_path", "IMAGE_SUFFIXES"):
        assert getattr(files, name) is getattr(folders_mod, name), name
    assert files.read_png_text is png.read_png_text and files.PNG_SIGNATURE is png.PNG_SIGNATURE
    assert files.FileAccessError is FileAccessError
    assert set(files.__all__) <= set(dir(files))


def test_png_text_reader_needs_only_the_standard_library(tmp_path) -> None:
    """A PNG workflow opens without torch or Pillow: media.png and the workflow engine are stdlib only."""
    import subprocess
    import sys

    info = PngImagePlugin.PngInfo()
    info.add_text("prompt", json.dumps({"1": {"class_type": "X", "inputs": {}}}))
    Image.new("RGB", (2, 2)).save(tmp_path / "w.png", pnginfo=info)
    code = (
        "import sys; from latent_ops.workflow import load\n"
        f"wf = load({str(tmp_path / 'w.png')!r}, {{}})\n"
        "assert wf.source == 'png' and wf.prompt['1']['class_type'] == 'X', wf\n"
        "heavy = sorted(m for m in ('torch', 'numpy', 'PIL') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_input_fingerprint_and_problem(folders) -> None:
    path = folders.input_dir / "a.latent"
    path.write_bytes(b"one")
    first = files.input_fingerprint("a.latent")
    assert first == files.sha256(path) and len(first) == 64
    path.write_bytes(b"two")
    assert files.input_fingerprint("a.latent") not in (first, "missing:a.latent")
    assert files.input_fingerprint("gone.latent") == "missing:gone.latent"
    assert files.input_fingerprint("../a.latent") == "missing:../a.latent"
    assert files.input_problem("a.latent", "latent") is True
    problem = files.input_problem("../a.latent", "image")
    assert problem.startswith("Invalid image file: input name '../a.latent' contains '..'")
    assert files.input_problem("gone.latent", "latent").startswith("Invalid latent file: input file 'gone.latent'")
