"""latent_ops.media.images: ComfyUI-exact 8-bit conversion, labelled grid layout, atomic GIF writing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageFont

from latent_ops.media import images as I


def _imgs(gen: torch.Generator, b: int, h: int = 8, w: int = 6) -> torch.Tensor:
    return torch.rand(b, h, w, 3, generator=gen)


# ---- conversion --------------------------------------------------------------------------------


def test_to_pil_matches_comfyui_save_rounding(gen: torch.Generator) -> None:
    x = torch.rand(5, 7, 3, generator=gen) * 1.4 - 0.2  # includes out-of-range values
    x[0, 0] = torch.tensor([0.5 / 255, 254.99 / 255, 1.0])
    expected = np.clip(255.0 * x.numpy(), 0, 255).astype(np.uint8)  # ComfyUI SaveImage
    got = I.to_pil(x)
    assert got.mode == "RGB" and got.size == (7, 5)
    assert np.array_equal(np.asarray(got), expected)
    assert np.array_equal(np.asarray(I.to_pil(x.unsqueeze(0))), expected)
    assert np.asarray(got)[0, 0].tolist() == [0, 254, 255]  # truncation, not rounding


def test_round_trip_within_one_step(gen: torch.Generator) -> None:
    x = torch.rand(9, 4, 3, generator=gen)
    back = I.from_pil(I.to_pil(x))
    assert back.dtype == torch.float32 and back.shape == (9, 4, 3)
    assert float((back - x).abs().max()) <= 1 / 255 + 1e-7
    levels = torch.arange(256, dtype=torch.float32).reshape(16, 16, 1).expand(16, 16, 3) / 255
    assert torch.equal(I.from_pil(I.to_pil(levels)), levels)


def test_from_pil_modes() -> None:
    rgba = Image.new("RGBA", (3, 2), (255, 0, 51, 7))
    assert I.from_pil(rgba)[1, 2].tolist() == pytest.approx([1.0, 0.0, 0.2])
    grey = Image.new("L", (2, 2), 51)
    assert I.from_pil(grey).shape == (2, 2, 3) and float(I.from_pil(grey)[0, 0, 1]) == pytest.approx(0.2)
    deep = Image.new("I", (2, 2), 255 * 100)  # 32-bit: scaled by 1/255 like LoadImage
    assert float(I.from_pil(deep)[0, 0, 0]) == pytest.approx(100 / 255)


def test_to_pil_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match=r"to_pil: image must be .* got \(2, 4, 4, 3\)"):
        I.to_pil(torch.zeros(2, 4, 4, 3))
    with pytest.raises(ValueError, match="NaN"):
        I.to_pil(torch.full((2, 2, 3), float("nan")))
    with pytest.raises(ValueError, match=r"got \(4, 4, 4\)"):
        I.to_pil(torch.zeros(4, 4, 4))


# ---- grid --------------------------------------------------------------------------------------


def test_grid_shape_inference() -> None:
    assert I.grid_shape(5) == (2, 3)
    assert I.grid_shape(9) == (3, 3)
    assert I.grid_shape(7, cols=2) == (4, 2)
    assert I.grid_shape(7, rows=2) == (2, 4)
    with pytest.raises(ValueError, match="rows=2 x cols=2 cannot hold 5"):
        I.grid_shape(5, 2, 2)


@pytest.mark.parametrize(("b", "cols", "pad", "scale"), [(5, None, 2, 1), (6, 2, 0, 3), (1, None, 4, 2)])
def test_grid_arithmetic_and_cells(gen: torch.Generator, b: int, cols: int | None, pad: int, scale: int) -> None:
    x = _imgs(gen, b)
    rows, cols_ = I.grid_shape(b, None, cols)
    out = I.grid(x, cols=cols, pad=pad, scale=scale, background=0.25)
    h, w = 8 * scale, 6 * scale
    assert out.shape == (1, pad + rows * (h + pad), pad + cols_ * (w + pad), 3) and out.dtype == torch.float32
    big = x.repeat_interleave(scale, 1).repeat_interleave(scale, 2)
    for i in range(rows * cols_):
        r, c = divmod(i, cols_)
        y0, x0 = pad + r * (h + pad), pad + c * (w + pad)
        cell = out[0, y0 : y0 + h, x0 : x0 + w]
        if i < b:
            assert torch.equal(cell, big[i])  # copied exactly, no 8-bit rounding
        else:
            assert torch.equal(cell, torch.full_like(cell, 0.25))  # empty cell


def test_grid_draws_labels(gen: torch.Generator) -> None:
    x = torch.full((4, 16, 16, 3), 0.5)
    plain = I.grid(x, cols=2, pad=2, scale=4)
    out = I.grid(x, cols=2, pad=2, scale=4, labels=["ch0 -1.0σ", "a", "b", "c"], row_labels=["ch0", "ch1"],
                 col_labels=["-1σ", "+1σ"])
    assert out.shape[1] > plain.shape[1] and out.shape[2] > plain.shape[2]
    sheet = out[0]
    w = h = 64
    assert torch.equal(sheet[sheet.shape[0] - 2 :], torch.ones_like(sheet[sheet.shape[0] - 2 :]))  # bottom pad
    # find the first image cell (grey 0.5) and check the text strips around it carry ink
    ys, xs = torch.nonzero((sheet[..., 0] == 0.5), as_tuple=True)
    top, left = int(ys.min()), int(xs.min())
    under = sheet[top + h : top + h + 10, left : left + w]
    above = sheet[: top - 2, left : left + w]
    beside = sheet[top : top + h, : left - 2]
    for strip in (under, above, beside):
        assert strip.numel() and float(strip.min()) < 0.5  # dark text on white
    assert torch.equal(sheet[top : top + h, left : left + w], torch.full((h, w, 3), 0.5))


def test_grid_ink_on_dark_background_and_font_size(gen: torch.Generator) -> None:
    x = _imgs(gen, 2, 8, 8)
    out = I.grid(x, labels=["A", "B"], background=0.0, font_size=10, scale=2)
    strip = out[0, 2 + 16 :, :]
    assert float(strip.max()) > 0.5  # white text
    assert torch.all(strip[..., 0] == strip[..., 1])


def test_grid_label_count_errors(gen: torch.Generator) -> None:
    x = _imgs(gen, 4)
    with pytest.raises(ValueError, match=r"labels has 3 entries, expected 4"):
        I.grid(x, labels=["a", "b", "c"])
    with pytest.raises(ValueError, match=r"row_labels has 1 entries, expected 2"):
        I.grid(x, cols=2, row_labels=["r"])
    with pytest.raises(ValueError, match=r"col_labels has 3 entries, expected 2"):
        I.grid(x, cols=2, col_labels=["a", "b", "c"])
    with pytest.raises(ValueError, match="scale must be an int >= 1"):
        I.grid(x, scale=0)
    with pytest.raises(ValueError, match=r"grid: images must be an IMAGE \[B, H, W, 3\]"):
        I.grid(torch.zeros(4, 4, 4))


def test_split_labels() -> None:
    assert I.split_labels("") == [] and I.split_labels(" \n ") == []
    assert I.split_labels("a, b ,c") == ["a", "b", "c"]
    assert I.split_labels("a, b\nc\n") == ["a, b", "c"]  # lines win over commas
    assert I.split_labels("\nx\n\ny") == ["x", "", "y"]  # an empty line is an empty label


def test_labelled_grid_equals_grid_with_text_labels(gen: torch.Generator) -> None:
    images = _imgs(gen, 4)
    got = I.labelled_grid(images, columns=0, scale=2, labels="a,b,c,d", row_labels="r0\nr1",
                          col_labels="c0, c1", pad=1, font_size=0)
    want = I.grid(images, scale=2, labels=["a", "b", "c", "d"], row_labels=["r0", "r1"],
                  col_labels=["c0", "c1"], pad=1)
    assert torch.equal(got, want)
    assert torch.equal(I.labelled_grid(images, columns=4, font_size=9, labels="a,b,c,d"),
                       I.grid(images, cols=4, font_size=9, labels=["a", "b", "c", "d"]))
    with pytest.raises(ValueError, match="grid: row_labels has 1 entries, expected 2"):
        I.labelled_grid(images, row_labels="only one")


def test_missing_glyphs_are_spelled_out() -> None:
    font = I.load_font(12)
    text = I.drawable("ch2 +1.5σ", font)
    assert text.startswith("ch2 +1.5")
    if isinstance(font, ImageFont.FreeTypeFont):
        missing = font.getmask("\uffff")
        glyph = font.getmask("σ")
        has_sigma = (glyph.size, bytes(glyph)) != (missing.size, bytes(missing))
        assert text == ("ch2 +1.5σ" if has_sigma else "ch2 +1.5sd")
    else:
        assert text == "ch2 +1.5sd"


# ---- GIF ---------------------------------------------------------------------------------------


def test_save_gif_frames_and_timing(tmp_path: object, gen: torch.Generator) -> None:
    frames = torch.linspace(0, 1, 5).view(5, 1, 1, 1).expand(5, 6, 4, 3).clone()
    path = tmp_path / "walk.gif"
    I.save_gif(frames, path, fps=10)
    with Image.open(path) as im:
        assert im.n_frames == 5 and im.size == (4, 6)
        assert im.info["loop"] == 0 and im.info["duration"] == 100
        im.seek(4)
        assert np.asarray(im.convert("RGB"))[0, 0].tolist() == [255, 255, 255]
    with pytest.raises(FileExistsError, match="overwrite=True"):
        I.save_gif(frames, path)
    I.save_gif(frames[:2], path, overwrite=True, loop=False)
    with Image.open(path) as im:
        assert im.n_frames == 2 and "loop" not in im.info
    assert sorted(p.name for p in tmp_path.iterdir()) == ["walk.gif"]


def test_save_gif_leaves_no_partial_file(tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    frames = torch.rand(3, 4, 4, 3, generator=torch.Generator().manual_seed(0))
    keep = tmp_path / "old.gif"
    keep.write_bytes(b"previous")

    def broken_save(self: Image.Image, fp: object, *args: object, **kwargs: object) -> None:
        fp.write(b"GIF89a partial")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        I.save_gif(frames, tmp_path / "new.gif")
    with pytest.raises(OSError, match="disk full"):
        I.save_gif(frames, keep, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.gif"]
    assert keep.read_bytes() == b"previous"
    monkeypatch.undo()
    with pytest.raises(ValueError, match="fps must be a finite number > 0"):
        I.save_gif(frames, tmp_path / "x.gif", fps=0)


# ---- sprite sheets -----------------------------------------------------------------------------


def test_split_grid_inverts_grid(gen: torch.Generator) -> None:
    tiles = _imgs(gen, 6, 4, 5)
    sheet = I.grid(tiles, cols=3, pad=0)  # no padding: a plain 2 x 3 sheet
    back = I.split_grid(sheet, 4, 5)
    assert back.shape == (6, 4, 5, 3) and torch.equal(back, tiles)
    two = I.split_grid(torch.cat([sheet, sheet]), 4, 5, limit=8)
    assert torch.equal(two, torch.cat([tiles, tiles[:2]]))
    with pytest.raises(ValueError, match=r"image 8x15 \(HxW\) is not a whole number of 3x5 tiles"):
        I.split_grid(sheet, 3, 5)
    with pytest.raises(ValueError, match="limit=-1"):
        I.split_grid(sheet, 4, 5, limit=-1)
