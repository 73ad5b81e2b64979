"""The judge classifier and the DDIM reference sampler of latent_ops.embedded.evaluate."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("matplotlib")

from latent_ops.embedded import classifier as clf  # noqa: E402
from latent_ops.embedded import dataset as ds  # noqa: E402


def _glyphs(n: int = 1) -> ds.ImageSet:
    return ds.build_glyphs(n, seed=5, offset=123)


def test_ink_map_ignores_colours_polarity_and_border():
    x = ds.to_float(_glyphs().images[:6])
    ink = clf.InkMap()(x)
    assert ink.shape == (6, 1, 32, 32) and float(ink.min()) >= 0.0 and float(ink.max()) <= 1.0
    # swapping foreground and background (polarity) and permuting colour channels keep the shape
    torch.testing.assert_close(clf.InkMap()(-x), ink, atol=1e-5, rtol=0)
    torch.testing.assert_close(clf.InkMap()(x[:, [2, 0, 1]]), ink, atol=1e-5, rtol=0)
    # artefacts in the outer two pixels are ignored
    y = x.clone()
    y[:, :, :2] = 1.0
    y[:, :, :, -2:] = -1.0
    torch.testing.assert_close(clf.InkMap()(y), ink)
    assert float(ink[..., :2, :].abs().max()) == 0.0


def test_ink_map_of_a_flat_image_is_zero():
    assert float(clf.InkMap()(torch.full((1, 3, 32, 32), 0.3)).abs().max()) == 0.0


def test_classifier_shapes_and_short_training_learns(tmp_path):
    model = clf.make_classifier()
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, len(ds.GLYPH_CLASSES))
    trained, info = clf.train_classifier(seed=1, n_per_class=2, steps=60, batch=32)
    assert info["train_images"] == 2 * 36 and info["steps"] == 60
    assert info["loss_last_tenth"] < info["loss_first_tenth"] - 0.3  # starts near ln(36) = 3.6
    path = tmp_path / "judge.safetensors"
    clf.save_classifier(trained, info, path)
    again, info2 = clf.load_classifier(path)
    x = ds.to_float(_glyphs().images[:4])
    torch.testing.assert_close(again(x), trained(x))
    assert info2 == info
    same, _ = clf.train_classifier(seed=1, n_per_class=2, steps=60, batch=32)
    torch.testing.assert_close(same(x), trained(x))  # seeded: same weights
