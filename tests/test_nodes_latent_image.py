"""Empty latents of any family, animations and sprite sheets (nodes/latent.py, nodes/image.py)."""

from __future__ import annotations

import latent_ops_nodes
import pytest
import torch
from PIL import Image

from latent_ops.media import files


class FakeVAE:
    latent_channels = 16
    downscale_ratio = 4


def _node(node_id: str) -> object:
    return latent_ops_nodes.NODE_CLASS_MAPPINGS[node_id]()


def test_empty_latent_from_vae_and_widgets() -> None:
    node = _node("LatentOpsEmptyLatent")
    (out,) = node.execute(33, 64, 2, vae=FakeVAE())
    assert out["samples"].shape == (2, 16, 16, 8)
    assert torch.count_nonzero(out["samples"]) == 0
    (out,) = node.execute(64, 32, 1, channels=4, downscale=8)
    assert out["samples"].shape == (1, 4, 4, 8)
    with pytest.raises(ValueError, match="width=2"):
        node.execute(2, 64, 1, downscale=8)
    video = type("VideoVAE", (), {"latent_channels": 16, "downscale_ratio": (4, 8, 8)})()
    with pytest.raises(ValueError, match="empty_latent: vae must have int 'latent_channels' and 'downscale_ratio'"):
        node.execute(64, 64, 1, vae=video)


def test_save_animation_writes_gif_in_output_folder(tmp_path) -> None:
    frames = torch.linspace(0, 1, 5).view(5, 1, 1, 1).expand(5, 8, 12, 3).contiguous()
    node = _node("LatentOpsSaveAnimation")
    with files.using(output_dir=tmp_path):
        first = node.execute(frames, "walks/run", 10.0, True)
        second = node.execute(frames, "walks/run", 10.0, False, scale=3)
    names = [r["ui"]["images"][0]["filename"] for r in (first, second)]
    assert names == ["run_00001_.gif", "run_00002_.gif"]
    assert first["ui"]["images"][0]["subfolder"] == "walks"
    with Image.open(tmp_path / "walks" / names[0]) as gif:
        assert gif.n_frames == 5 and gif.size == (12, 8)
        assert gif.info.get("loop") == 0
    with Image.open(tmp_path / "walks" / names[1]) as gif:
        assert gif.size == (36, 24) and "loop" not in gif.info
    assert sorted(p.name for p in (tmp_path / "walks").iterdir()) == names  # no temp files left


def test_save_animation_refuses_escaping_prefix(tmp_path) -> None:
    node = _node("LatentOpsSaveAnimation")
    with files.using(output_dir=tmp_path / "out"), pytest.raises(ValueError, match="filename_prefix"):
        node.execute(torch.zeros(2, 4, 4, 3), "../escape", 5.0, True)
    assert not (tmp_path / "escape_00001_.gif").exists()


def test_split_sprite_sheet_row_major() -> None:
    sheet = torch.zeros(1, 4, 6, 3)
    for r in range(2):
        for c in range(3):
            sheet[0, r * 2:(r + 1) * 2, c * 2:(c + 1) * 2] = (r * 3 + c) / 10
    tiles, count = _node("LatentOpsSplitImage").execute(sheet, 2, 2)
    assert count == 6 and tiles.shape == (6, 2, 2, 3)
    assert torch.allclose(tiles[:, 0, 0, 0], torch.arange(6) / 10)
    tiles, count = _node("LatentOpsSplitImage").execute(sheet, 2, 2, limit=4)
    assert count == 4
