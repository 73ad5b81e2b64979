"""Tests for the embedded model's class-name text encoder (latent_ops.embedded.text_encoder)."""

from __future__ import annotations

import pytest
import torch

from latent_ops.embedded.text_encoder import ClassTextEncoder, default_vocabulary

NAMES = tuple("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ")


@pytest.fixture
def enc(gen) -> ClassTextEncoder:
    table = torch.randn(len(NAMES) + 1, 12, generator=gen)
    return ClassTextEncoder(table, default_vocabulary(NAMES), null_index=len(NAMES), class_names=NAMES)


def test_encode_returns_conditioning_structure(enc):
    cond = enc.encode("A")
    assert isinstance(cond, list) and len(cond) == 1 and len(cond[0]) == 2
    t, opts = cond[0]
    assert t.shape == (1, 1, 12) and t.dtype == torch.float32 and opts == {}
    assert torch.equal(t[0, 0], enc.embeddings[NAMES.index("A")])


@pytest.mark.parametrize("prompt", ["A", "a", " letter A ", "LETTER a", "character A", "glyph a", "A."])
def test_letter_aliases_and_case(enc, prompt):
    assert enc.indices(prompt) == [NAMES.index("A")]


@pytest.mark.parametrize("prompt", ["7", "digit 7", "number 7", "seven", "Seven"])
def test_digit_aliases(enc, prompt):
    assert enc.indices(prompt) == [7]


def test_letter_alias_not_for_digits(enc):
    with pytest.raises(ValueError):
        enc.indices("letter 7")


def test_empty_prompt_is_null(enc):
    for p in ("", "   ", ",", " , "):
        assert enc.indices(p) == [len(NAMES)]
    assert torch.equal(enc.embed("")[0, 0], enc.embeddings[-1])


def test_several_words_average(enc):
    got = enc.embed("A, b")[0, 0]
    want = (enc.embeddings[NAMES.index("A")] + enc.embeddings[NAMES.index("B")]) / 2
    torch.testing.assert_close(got, want)


def test_unknown_word_lists_known_words(enc):
    with pytest.raises(ValueError) as exc:
        enc.encode("dragon")
    msg = str(exc.value)
    assert "dragon" in msg and "0 1 2" in msg and "X Y Z" in msg
    with pytest.raises(ValueError, match="unicorn"):
        enc.encode("A, unicorn")


def test_non_string_prompt(enc):
    with pytest.raises(ValueError, match="string"):
        enc.encode(7)


def test_known_words(enc):
    assert enc.known_words == list(NAMES)
    assert enc.embedding_dim == 12


def test_save_load_roundtrip(enc, tmp_path):
    enc.save(tmp_path / "te")
    back = ClassTextEncoder.load(tmp_path / "te")
    assert torch.equal(back.embeddings, enc.embeddings)
    assert back.vocabulary == enc.vocabulary and back.null_index == enc.null_index
    assert back.known_words == enc.known_words
    assert torch.equal(back.embed("digit 3"), enc.embed("3"))


def test_load_missing_files(tmp_path):
    with pytest.raises(ValueError, match="config.json"):
        ClassTextEncoder.load(tmp_path)


def test_bad_construction(gen):
    with pytest.raises(ValueError, match="K\\+1, D"):
        ClassTextEncoder(torch.zeros(3), {"a": 0}, 1)
    with pytest.raises(ValueError, match="null_index"):
        ClassTextEncoder(torch.zeros(3, 2), {"a": 0}, 5)
    with pytest.raises(ValueError, match="out of range or null"):
        ClassTextEncoder(torch.zeros(3, 2), {"a": 2}, 2)
