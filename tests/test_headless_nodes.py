"""Headless stand-ins for ComfyUI core nodes: IDs, inputs and behaviour as ComfyUI's."""

from __future__ import annotations

import json
import math

import latent_ops_nodes
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from latent_ops_nodes.headless import HEADLESS_NODE_CLASS_MAPPINGS as H
from PIL import Image

from latent_ops.media import files
from latent_ops.workflow import Engine, object_info


class FakeVAE:
    """Encode = 8x8 average pool to 4 channels; decode = nearest upsample of the first 3 channels."""

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        assert pixels.shape[-1] == 3
        x = F.avg_pool2d(pixels.movedim(-1, 1), 8)
        return torch.cat([x, x.mean(1, keepdim=True)], 1)

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        return F.interpolate(latent[:, :3], scale_factor=8, mode="nearest").movedim(1, -1).clamp(0, 1)


@pytest.fixture
def folders(tmp_path):
    with files.using(input_dir=tmp_path / "in", output_dir=tmp_path / "out", temp_dir=tmp_path / "tmp") as f:
        f.input_dir.mkdir()
        yield f


def test_registry_has_comfyui_ids_and_inputs() -> None:
    reg = latent_ops_nodes.headless_registry()
    expected = {
        "LoadImage": ["image"], "SaveImage": ["images", "filename_prefix"], "PreviewImage": ["images"],
        "EmptyLatentImage": ["width", "height", "batch_size"], "VAEEncode": ["pixels", "vae"],
        "VAEDecode": ["samples", "vae"], "LatentFromBatch": ["samples", "batch_index", "length"],
        "RepeatLatentBatch": ["samples", "amount"], "LatentBatch": ["samples1", "samples2"],
        "SaveLatent": ["samples", "filename_prefix"], "LoadLatent": ["latent"],
    }
    for node_id, names in expected.items():
        assert reg[node_id] is H[node_id]
        assert list(H[node_id].INPUT_TYPES()["required"]) == names, node_id
    assert {k for k, c in H.items() if getattr(c, "OUTPUT_NODE", False)} == {"SaveImage", "PreviewImage", "SaveLatent"}
    width = H["EmptyLatentImage"].INPUT_TYPES()["required"]["width"][1]
    assert (width["default"], width["min"], width["max"], width["step"]) == (512, 16, 16384, 8)
    info = object_info("SaveImage", H["SaveImage"], "Save Image")
    assert info["input"]["hidden"] == {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}
    assert info["input_order"] == {"required": ["images", "filename_prefix"], "hidden": ["prompt", "extra_pnginfo"]}
    assert info["output_node"] is True and info["output"] == [] and info["category"] == "image"


def test_empty_latent_image() -> None:
    (latent,) = H["EmptyLatentImage"]().generate(96, 64, 3)
    assert latent["samples"].shape == (3, 4, 8, 12) and latent["samples"].abs().sum() == 0
    assert set(latent) == {"samples"}


def test_latent_from_batch_sets_absolute_batch_index_and_slices_masks(gen) -> None:
    samples = torch.randn(5, 4, 2, 2, generator=gen)
    mask = torch.rand(5, 1, 2, 2, generator=gen)
    latent = {"samples": samples, "noise_mask": mask}
    (out,) = H["LatentFromBatch"]().frombatch(latent, 1, 3)
    torch.testing.assert_close(out["samples"], samples[1:4])
    torch.testing.assert_close(out["noise_mask"], mask[1:4])
    assert out["batch_index"] == [1, 2, 3] and "batch_index" not in latent
    (clamped,) = H["LatentFromBatch"]().frombatch(latent, 9, 4)  # index past the end: last item
    assert clamped["batch_index"] == [4] and clamped["samples"].shape[0] == 1
    (again,) = H["LatentFromBatch"]().frombatch({**latent, "batch_index": [10, 11, 12, 13, 14]}, 2, 10)
    assert again["batch_index"] == [12, 13, 14]
    (single,) = H["LatentFromBatch"]().frombatch({"samples": samples, "noise_mask": mask[:1]}, 2, 1)
    torch.testing.assert_close(single["noise_mask"], mask[:1])


def test_repeat_latent_batch_extends_batch_index_with_offsets(gen) -> None:
    samples = torch.randn(2, 4, 2, 2, generator=gen)
    (out,) = H["RepeatLatentBatch"]().repeat({"samples": samples}, 3)
    torch.testing.assert_close(out["samples"], torch.cat([samples] * 3))
    assert "batch_index" not in out
    (indexed,) = H["RepeatLatentBatch"]().repeat({"samples": samples, "batch_index": [2, 5]}, 3)
    assert indexed["batch_index"] == [2, 5, 6, 9, 10, 13]  # offset = max - min + 1 = 4
    mask = torch.rand(2, 1, 2, 2, generator=gen)
    (masked,) = H["RepeatLatentBatch"]().repeat({"samples": samples, "noise_mask": mask}, 2)
    torch.testing.assert_close(masked["noise_mask"], torch.cat([mask, mask]))


def test_latent_batch_concatenates_and_resizes_like_common_upscale(gen) -> None:
    a = torch.randn(2, 4, 4, 6, generator=gen)
    b = torch.randn(1, 4, 8, 8, generator=gen)
    (out,) = H["LatentBatch"]().batch({"samples": a, "batch_index": [3, 4]}, {"samples": b})
    # Independent reference: centre-crop b from aspect 1 to aspect 1.5 (keep 8 x 5.33 -> rows 1..6), then bilinear.
    old_w, old_h, new_aspect = 8, 8, 6 / 4
    y = round((old_h - old_h * ((old_w / old_h) / new_aspect)) / 2)
    ref = F.interpolate(b[:, :, y:old_h - y, :], size=(4, 6), mode="bilinear")
    torch.testing.assert_close(out["samples"], torch.cat([a, ref]))
    assert out["batch_index"] == [3, 4, 0]
    with pytest.raises(ValueError, match="channels"):
        H["LatentBatch"]().batch({"samples": a}, {"samples": torch.zeros(1, 16, 4, 6)})


def test_vae_encode_drops_alpha_and_decode_folds_video() -> None:
    vae = FakeVAE()
    pixels = torch.rand(2, 16, 24, 4, generator=torch.Generator().manual_seed(1))
    (latent,) = H["VAEEncode"]().encode(vae, pixels)
    torch.testing.assert_close(latent["samples"], vae.encode(pixels[..., :3]))
    (image,) = H["VAEDecode"]().decode(vae, latent)
    assert image.shape == (2, 16, 24, 3)

    class VideoVAE(FakeVAE):
        def decode(self, latent: torch.Tensor) -> torch.Tensor:
            return torch.zeros(1, 5, 8, 8, 3)

    (frames,) = H["VAEDecode"]().decode(VideoVAE(), latent)
    assert frames.shape == (5, 8, 8, 3)


def test_load_image_lists_inputs_validates_and_tracks_changes(folders) -> None:
    rgba = np.full((8, 8, 4), 255, dtype=np.uint8)
    rgba[..., 3] = 0
    Image.fromarray(rgba, "RGBA").save(folders.input_dir / "a.png")
    (folders.input_dir / "notes.txt").write_text("x")
    node = H["LoadImage"]
    spec = node.INPUT_TYPES()["required"]["image"]
    assert spec[0] == ["a.png"] and spec[1]["image_upload"] is True
    image, mask = node().load_image("a.png")
    assert image.shape == (1, 8, 8, 3) and torch.all(mask == 1.0)
    before = node.IS_CHANGED("a.png")
    Image.fromarray(rgba[..., :3], "RGB").save(folders.input_dir / "a.png")
    assert node.IS_CHANGED("a.png") != before
    assert node.VALIDATE_INPUTS("a.png") is True
    assert "Invalid image file" in node.VALIDATE_INPUTS("../a.png")


def test_load_image_with_an_empty_input_folder_keeps_a_valid_combo(folders) -> None:
    assert H["LoadImage"].INPUT_TYPES()["required"]["image"][0] == [""]


def test_save_and_preview_image_write_pngs_with_metadata(folders) -> None:
    images = torch.linspace(0, 1, 2 * 4 * 4 * 3).reshape(2, 4, 4, 3)
    prompt = {"1": {"class_type": "SaveImage", "inputs": {}}}
    result = H["SaveImage"]().save_images(images, "shots/run", prompt, {"workflow": {"nodes": []}})
    entries = result["ui"]["images"]
    assert entries == [{"filename": "run_00001_.png", "subfolder": "shots", "type": "output"},
                       {"filename": "run_00002_.png", "subfolder": "shots", "type": "output"}]
    data = (folders.output_dir / "shots" / "run_00002_.png").read_bytes()
    chunks = files.read_png_text(data)
    assert json.loads(chunks["prompt"]) == prompt and json.loads(chunks["workflow"]) == {"nodes": []}
    preview = H["PreviewImage"]().save_images(images[:1], None, None)["ui"]["images"][0]
    assert preview["type"] == "temp" and preview["filename"].startswith("ComfyUI_temp_")
    assert (folders.temp_dir / preview["filename"]).is_file()
    assert "prompt" not in files.read_png_text((folders.temp_dir / preview["filename"]).read_bytes())


def test_save_latent_then_load_latent(folders, gen) -> None:
    samples = torch.randn(2, 4, 3, 3, generator=gen)
    result = H["SaveLatent"]().save({"samples": samples}, "latents/x", {"p": 1}, None)
    entry = result["ui"]["latents"][0]
    assert entry == {"filename": "x_00001_.latent", "subfolder": "latents", "type": "output"}
    (folders.output_dir / "latents" / entry["filename"]).rename(folders.input_dir / "x.latent")
    assert H["LoadLatent"].INPUT_TYPES()["required"]["latent"][0] == ["x.latent"]
    (loaded,) = H["LoadLatent"]().load("x.latent")
    torch.testing.assert_close(loaded["samples"], samples)
    assert H["LoadLatent"].VALIDATE_INPUTS("nope.latent").startswith("Invalid latent file")


def test_headless_graph_runs_through_the_engine(folders) -> None:
    prompt = {
        "1": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 48, "batch_size": 2}},
        "2": {"class_type": "RepeatLatentBatch", "inputs": {"samples": ["1", 0], "amount": 2}},
        "3": {"class_type": "LatentFromBatch", "inputs": {"samples": ["2", 0], "batch_index": 1, "length": 2}},
        "4": {"class_type": "LatentBatch", "inputs": {"samples1": ["3", 0], "samples2": ["1", 0]}},
        "5": {"class_type": "SaveLatent", "inputs": {"samples": ["4", 0], "filename_prefix": "t"}},
    }
    result = Engine(latent_ops_nodes.headless_registry()).run(prompt, extra_pnginfo={"workflow": {"v": 1}})
    latent = result.outputs["4"][0]
    assert latent["samples"].shape == (4, 4, 6, 8) and latent["batch_index"] == [1, 2, 0, 1]
    path = folders.output_dir / result.ui["5"]["latents"][0]["filename"]
    assert math.isclose(files.load_latent(path)["samples"].abs().sum().item(), 0.0)
