"""latent_ops.space.plot: the map picture, thumbnail subsampling and lazy decoding."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from latent_ops import seeds, space
from latent_ops.space import plot as space_map

MAGENTA = torch.tensor([1.0, 0.0, 1.0])


def _solid(n: int, colour: torch.Tensor, side: int = 8) -> torch.Tensor:
    return colour.view(1, 1, 1, 3).expand(n, side, side, 3).clone()


def _count(img: torch.Tensor, rgb: tuple[int, int, int]) -> int:
    arr = np.rint(img[0].numpy() * 255).astype(np.uint8)
    return int((arr == np.array(rgb, dtype=np.uint8)).all(-1).sum())


def test_dots_only_shape_range_and_determinism(gen) -> None:
    coords = torch.randn(50, 2, generator=gen)
    img = space_map.map_image(coords, size=384, axis_labels=("PC1", "PC2"), title="t")
    assert img.shape == (1, 384, 384, 3) and img.dtype == torch.float32
    assert float(img.min()) >= 0.0 and float(img.max()) <= 1.0
    assert _count(img, (150, 150, 150)) > 50 * 4  # grey dots drawn
    assert torch.equal(img, space_map.map_image(coords, size=384, axis_labels=("PC1", "PC2"), title="t"))


def test_thumbnails_are_drawn(gen) -> None:
    coords = torch.randn(30, 3, generator=gen)  # 3-D: the first two columns are drawn
    images = _solid(30, MAGENTA)
    img = space_map.map_image(coords, images=images, size=512, max_thumbnails=10, thumb_size=40)
    assert _count(img, (255, 0, 255)) > 3 * 30 * 30  # several thumbnails of ~36x36 pixels
    none = space_map.map_image(coords, images=images, size=512, max_thumbnails=0)
    assert _count(none, (255, 0, 255)) == 0


def test_decode_called_once_for_the_subsample_only(gen) -> None:
    coords = torch.randn(2000, 2, generator=gen)
    calls: list[torch.Tensor] = []

    def decode(indices: torch.Tensor) -> torch.Tensor:
        calls.append(indices)
        return _solid(len(indices), MAGENTA)

    img = space_map.map_image(coords, decode=decode, max_thumbnails=40, size=512)
    assert len(calls) == 1
    idx = calls[0]
    assert 0 < len(idx) <= 40 and idx.dtype == torch.long
    assert torch.equal(idx, idx.sort().values) and len(set(idx.tolist())) == len(idx)
    assert _count(img, (255, 0, 255)) > 0
    again: list[torch.Tensor] = []
    space_map.map_image(coords, decode=lambda i: again.append(i) or _solid(len(i), MAGENTA), max_thumbnails=40, size=512)
    assert torch.equal(again[0], idx)  # same seed, same subset


def test_selected_thumbnails_do_not_overlap(gen) -> None:
    xy = torch.rand(500, 2, generator=gen) * 300
    chosen = space_map.select_thumbnails(xy, 1000, 30, seed=2)
    pts = xy[chosen]
    gap = (pts[:, None, :] - pts[None, :, :]).abs().max(-1).values
    gap.fill_diagonal_(1e9)
    assert float(gap.min()) >= 0.9 * 30
    assert len(space_map.select_thumbnails(xy, 5, 30, seed=2)) == 5


def test_thumbnail_order_is_the_seed_s_generator(gen) -> None:
    # points far apart never clash, so the first max_thumbnails of the seeded order are kept
    xy = torch.arange(40, dtype=torch.float64).repeat(2, 1).T * 100
    for seed in (0, 9, 2**32 - 1, 9 + 2**32, 2**64 - 1):
        torch_seed = seed if seed < 2**32 else seeds.seed32(seed)  # torch keeps 32 bits of a seed
        order = torch.randperm(40, generator=torch.Generator().manual_seed(torch_seed))
        assert space_map.select_thumbnails(xy, 6, 10, seed=seed).tolist() == sorted(order[:6].tolist())
    a = space_map.select_thumbnails(xy, 6, 10, seed=9)
    assert not torch.equal(a, space_map.select_thumbnails(xy, 6, 10, seed=9 + 2**32))
    with pytest.raises(ValueError, match="select_thumbnails: seed must be in"):
        space_map.select_thumbnails(xy, 6, 10, seed=2**64)
    with pytest.raises(ValueError, match="select_thumbnails: seed must be in"):
        space_map.map_image(xy, images=_solid(40, MAGENTA), seed=-1)


def test_labels_colour_dots_and_legend(gen) -> None:
    coords = torch.randn(40, 2, generator=gen)
    labels = torch.arange(4).repeat_interleave(10)
    img = space_map.map_image(coords, labels=labels, label_names=["a", "b", "c", "d"], size=400)
    for colour in space_map.PALETTE[:4]:
        assert _count(img, colour) > 20
    assert _count(img, space_map.PALETTE[4]) == 0


def test_projection_map_axis_labels_and_vae(gen, tmp_path) -> None:
    latents = torch.randn(60, 4, 4, 4, generator=gen)
    proj = space.project(latents)

    class FakeVAE:
        def __init__(self) -> None:
            self.decoded = 0

        def decode(self, z: torch.Tensor) -> torch.Tensor:
            self.decoded += len(z)
            return _solid(len(z), MAGENTA, side=16)

    vae = FakeVAE()
    img = space_map.projection_map(proj, vae=vae, latents=latents, max_thumbnails=12, size=400)
    assert 0 < vae.decoded <= 12 and img.shape == (1, 400, 400, 3)
    path = space_map.save_png(img, tmp_path / "map.png")
    back = np.asarray(Image.open(path).convert("RGB"))
    np.testing.assert_array_equal(back, np.clip(img[0].numpy() * 255, 0, 255).astype(np.uint8))
    assert proj.axis_labels[0].startswith("PC1 (") and proj.axis_labels[0].endswith("% var)")


def test_errors(gen) -> None:
    coords = torch.randn(10, 2, generator=gen)
    with pytest.raises(ValueError, match="coords"):
        space_map.map_image(torch.randn(10, generator=gen))
    with pytest.raises(ValueError, match="NaN"):
        space_map.map_image(torch.full((3, 2), float("nan")))
    with pytest.raises(ValueError, match="images"):
        space_map.map_image(coords, images=_solid(9, MAGENTA))
    with pytest.raises(ValueError, match="labels"):
        space_map.map_image(coords, labels=torch.zeros(11, dtype=torch.long))
    with pytest.raises(ValueError, match="not both"):
        space_map.map_image(coords, images=_solid(10, MAGENTA), decode=lambda i: _solid(len(i), MAGENTA))
    with pytest.raises(ValueError, match="decode"):
        space_map.map_image(coords, decode=lambda i: _solid(1, MAGENTA), max_thumbnails=5)
    with pytest.raises(ValueError, match="label_names"):
        space_map.map_image(coords, labels=torch.zeros(10, dtype=torch.long), label_names=["a", "b"])
    proj = space.project(torch.randn(10, 2, 2, 2, generator=gen))
    with pytest.raises(ValueError, match="together"):
        space_map.projection_map(proj, vae=object())
    with pytest.raises(ValueError, match="latents for a projection"):
        space_map.projection_map(proj, vae=object(), latents=torch.randn(4, 2, 2, 2, generator=gen))
    with pytest.raises(ValueError, match="not both"):
        space_map.projection_map(proj, images=_solid(10, MAGENTA), vae=object(), latents=torch.randn(10, 2, 2, 2, generator=gen))
