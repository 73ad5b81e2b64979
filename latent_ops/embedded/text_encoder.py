"""A tiny text encoder for the embedded model: class names -> ComfyUI CONDITIONING.

The embedded denoiser is class-conditional. Its class-embedding table (one ``[D]`` row per class
plus one null row, the classifier-free-guidance "unconditional" class) lives here, so a prompt is
looked up, not learned: ``encode("A")`` returns ``[[tensor [1, 1, D], {}]]``, the same structure
as ComfyUI's CLIP text encoders, and the UNet (``class_embed_type="identity"``) takes
``cond[:, 0, :]`` as its class embedding.

Prompt rules: case-insensitive, surrounding whitespace and one trailing ``.`` ignored; a phrase
must be a known word or alias (``"A"``, ``"letter A"``, ``"7"``, ``"digit 7"``, ``"seven"``); several
phrases separated by commas (``"A, B"``) average their embeddings; the empty prompt gives the null
embedding (unconditional). Anything else raises ``ValueError`` listing the known words.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from torch import Tensor

Conditioning = list[list]
"""ComfyUI CONDITIONING: ``[[cond_tensor [1, T, D], {extra options}], ...]``."""

_DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def _normalise(phrase: str) -> str:
    return re.sub(r"\s+", " ", phrase.strip().rstrip(".").strip()).lower()


def default_vocabulary(class_names: tuple[str, ...] | list[str]) -> dict[str, int]:
    """Phrase -> class index: each name, plus ``letter X`` / ``digit N`` / ``character X`` and digit words.

    Args:
        class_names: the class names in label order (e.g. ``0-9A-Z``).

    Returns:
        dict of lower-case phrases to indices.
    """
    vocab: dict[str, int] = {}
    for i, name in enumerate(class_names):
        key = _normalise(name)
        vocab[key] = i
        vocab[f"character {key}"] = i
        vocab[f"glyph {key}"] = i
        if len(name) == 1 and name.isdigit():
            vocab[f"digit {key}"] = i
            vocab[f"number {key}"] = i
            vocab[_DIGIT_WORDS[int(name)]] = i
        elif len(name) == 1 and name.isalpha():
            vocab[f"letter {key}"] = i
    return vocab


class ClassTextEncoder:
    """Look-up text encoder over a fixed class vocabulary.

    Args:
        embeddings: float tensor ``[K + 1, D]``: one row per class and the null row.
        vocabulary: lower-case phrase -> row index (``0 <= index < K + 1``).
        null_index: the row used for the empty prompt.
        class_names: canonical names of rows ``0..K-1`` (defaults to the first phrase per index).

    Raises:
        ValueError: bad shapes or indices.
    """

    def __init__(self, embeddings: Tensor, vocabulary: dict[str, int], null_index: int,
                 class_names: list[str] | tuple[str, ...] | None = None) -> None:
        if embeddings.dim() != 2:
            raise ValueError(f"ClassTextEncoder: embeddings must be [K+1, D], got {tuple(embeddings.shape)}")
        n = embeddings.shape[0]
        if not 0 <= null_index < n:
            raise ValueError(f"ClassTextEncoder: null_index {null_index} outside 0..{n - 1}")
        bad = {k: v for k, v in vocabulary.items() if not 0 <= v < n or v == null_index}
        if bad:
            raise ValueError(f"ClassTextEncoder: vocabulary indices out of range or null: {bad}")
        self.embeddings = embeddings.detach().float()
        self.vocabulary = {_normalise(k): v for k, v in vocabulary.items()}
        self.null_index = null_index
        if class_names is None:
            first: dict[int, str] = {}
            for k, v in self.vocabulary.items():
                first.setdefault(v, k)
            class_names = [first[i] for i in sorted(first)]
        self.class_names = tuple(class_names)

    @property
    def embedding_dim(self) -> int:
        """D, the width of one embedding (the UNet's time-embedding width)."""
        return int(self.embeddings.shape[1])

    @property
    def known_words(self) -> list[str]:
        """The canonical class names (what an error message lists)."""
        return list(self.class_names)

    def indices(self, text: str) -> list[int]:
        """Row indices named by a prompt (``[null_index]`` for an empty prompt).

        Raises:
            ValueError: an unknown phrase; the message lists the known words and alias forms.
        """
        if not isinstance(text, str):
            raise ValueError(f"ClassTextEncoder: prompt must be a string, got {type(text).__name__}")
        phrases = [_normalise(p) for p in text.split(",")]
        if all(p == "" for p in phrases):
            return [self.null_index]
        unknown = [p for p in phrases if p and p not in self.vocabulary]
        if unknown:
            raise ValueError(
                f"embedded text encoder: unknown word(s) {unknown} in prompt {text!r}; the embedded model "
                f"knows {' '.join(self.known_words)} (case-insensitive; aliases like 'letter A', 'digit 7', "
                f"'seven'; separate several with commas; empty prompt = unconditional)")
        return [self.vocabulary[p] for p in phrases if p]

    def embed(self, text: str) -> Tensor:
        """The prompt's embedding ``[1, 1, D]`` (mean over the named classes)."""
        return self.embeddings[self.indices(text)].mean(0).view(1, 1, -1).clone()

    def encode(self, text: str) -> Conditioning:
        """ComfyUI CONDITIONING ``[[tensor [1, 1, D], {}]]`` for one prompt."""
        return [[self.embed(text), {}]]

    def save(self, folder: Path) -> None:
        """Write ``config.json`` and ``model.safetensors`` (fp32 ``embeddings``) into ``folder``."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_file({"embeddings": self.embeddings.contiguous()}, str(folder / "model.safetensors"))
        (folder / "config.json").write_text(json.dumps({
            "_class_name": "ClassTextEncoder", "embedding_dim": self.embedding_dim, "null_index": self.null_index,
            "class_names": list(self.class_names), "vocabulary": self.vocabulary,
        }, indent=2) + "\n")

    @classmethod
    def load(cls, folder: Path) -> ClassTextEncoder:
        """Read a folder written by :meth:`save`.

        Raises:
            ValueError: missing files or a config that does not match the tensor.
        """
        from safetensors.torch import load_file

        folder = Path(folder)
        cfg_path, w_path = folder / "config.json", folder / "model.safetensors"
        if not cfg_path.is_file() or not w_path.is_file():
            raise ValueError(f"ClassTextEncoder.load: {folder} needs config.json and model.safetensors")
        cfg = json.loads(cfg_path.read_text())
        emb = load_file(str(w_path))["embeddings"]
        if emb.shape[1] != cfg["embedding_dim"]:
            raise ValueError(f"ClassTextEncoder.load: embedding_dim {cfg['embedding_dim']} != tensor {tuple(emb.shape)}")
        return cls(emb, {k: int(v) for k, v in cfg["vocabulary"].items()}, int(cfg["null_index"]),
                   cfg.get("class_names"))
