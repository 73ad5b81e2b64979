"""latent_ops.noise.latent: noise as a LATENT, shaped from an image size or from another latent."""

from __future__ import annotations

import pytest
import torch

from latent_ops import noise


@pytest.mark.parametrize(
    ("size", "expected"),
    [((512, 512, 1, 4, 8), (1, 4, 64, 64)), ((70, 41, 2, 4, 8), (2, 4, 5, 8)), ((1024, 576, 3, 16, 16), (3, 16, 36, 64)),
     ((7, 9, 1, 3, 1), (1, 3, 9, 7))],
)
def test_latent_shape_floors_like_comfyui(size: tuple, expected: tuple) -> None:
    assert noise.latent_shape(*size) == expected


@pytest.mark.parametrize(
    ("size", "match"),
    [((8, 8, 1, 4, 16), "width 8 x height 8 with downscale 16 gives a 0 x 0 latent"),
     ((64, 64, 0, 4, 8), "batch_size 0"), ((64, 64, 1, 0, 8), "channels 0"),
     ((64, 64, 1, 4, 0), "downscale must be >= 1, got 0")],
)
def test_latent_shape_errors_name_the_sizes(size: tuple, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        noise.latent_shape(*size)


def test_noise_latent_from_a_size() -> None:
    out = noise.noise_latent(5, width=70, height=41, batch_size=2, convention="a1111", noise_type="pink")
    assert set(out) == {"samples"}
    assert torch.equal(out["samples"], noise.make_noise((2, 4, 5, 8), 5, convention="a1111", noise_type="pink"))


def test_noise_latent_resize_from_pixels() -> None:
    out = noise.noise_latent(3, width=64, height=48, channels=4, downscale=8, resize_from_px=(36, 24), subseed=2,
                             subseed_strength=0.5, convention="a1111")
    ref = noise.make_noise((1, 4, 6, 8), 3, resize_from=(4, 3), subseed=2, subseed_strength=0.5, convention="a1111")
    assert torch.equal(out["samples"], ref)


def test_noise_latent_like_keeps_keys_and_uses_batch_index() -> None:
    mask = torch.ones(1, 1, 8, 8)
    like = {"samples": torch.zeros(2, 16, 3, 5), "batch_index": [4, 0], "noise_mask": mask}
    out = noise.noise_latent(9, like=like, width=8, height=8, dtype=torch.float16)
    assert out is not like and out["noise_mask"] is mask and out["batch_index"] == [4, 0]
    assert torch.equal(out["samples"], noise.make_noise((2, 16, 3, 5), 9, batch_index=[4, 0], dtype=torch.float16))
    assert torch.count_nonzero(like["samples"]) == 0 and set(like) == {"samples", "batch_index", "noise_mask"}
    video = noise.noise_latent(1, like={"samples": torch.zeros(1, 4, 3, 6, 6)})["samples"]
    assert torch.equal(video, noise.make_noise((1, 4, 3, 6, 6), 1))


def test_noise_latent_errors() -> None:
    with pytest.raises(ValueError, match="like must be a LATENT dict"):
        noise.noise_latent(0, like={"samples": [1, 2]})
    with pytest.raises(ValueError, match="downscale must be >= 1"):
        noise.noise_latent(0, like={"samples": torch.zeros(1, 4, 8, 8)}, downscale=0)
    with pytest.raises(ValueError, match="seed"):
        noise.noise_latent(2**64)
    with pytest.raises(ValueError, match="convention"):
        noise.noise_latent(0, convention="invoke")
