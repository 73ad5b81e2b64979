"""CLIP text encoders for SD1.x / SD2.x / SDXL producing ComfyUI CONDITIONING, and the UNet backbone.

transformers/diffusers are imported lazily by the loaders in :mod:`latent_ops.checkpoints.loading`; this
module only holds already-built modules. Long prompts are split into 75-token windows, each
wrapped in BOS/EOS and padded to 77, encoded separately and concatenated along the token axis,
as ComfyUI does; the pooled output comes from the first window.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

Layer = Literal["last", "penultimate"]


@dataclass
class ClipPart:
    """One tokenizer + text model. ``layer``: which hidden state; ``projection``: has ``text_embeds``."""

    tokenizer: Any
    model: nn.Module
    layer: Layer = "last"
    projection: bool = False
    pad_id: int | None = None
    """Padding token id; None = the tokenizer's pad token (or EOS)."""


class ClipTextEncoder:
    """``encode(text) -> [[cond [1, T, D], {"pooled_output": [1, P]}]]`` from one or two CLIP parts.

    SD1/SD2 use one part (SD2's diffusers text encoder already stops at the penultimate layer);
    SDXL concatenates CLIP-L (penultimate) and CLIP-G (penultimate, projected pooled output).
    """

    def __init__(self, parts: list[ClipPart], *, device: torch.device | str = "cpu", name: str = "clip") -> None:
        if not parts:
            raise ValueError("ClipTextEncoder: needs at least one tokenizer/text model pair")
        self.parts = parts
        self.device = torch.device(device)
        self.name = name
        for p in parts:
            p.model.to(self.device).eval().requires_grad_(False)

    def _windows(self, part: ClipPart, text: str) -> list[list[int]]:
        tok = part.tokenizer
        max_len = tok.model_max_length if 0 < tok.model_max_length <= 4096 else 77
        ids = tok(text, add_special_tokens=False, truncation=False)["input_ids"]
        body = max_len - 2
        chunks = [ids[i : i + body] for i in range(0, len(ids), body)] or [[]]
        pad = part.pad_id if part.pad_id is not None else tok.pad_token_id
        pad = tok.eos_token_id if pad is None else pad
        return [[tok.bos_token_id, *c, tok.eos_token_id] + [pad] * (body - len(c)) for c in chunks]

    @torch.no_grad()
    def _encode_part(self, part: ClipPart, text: str) -> tuple[Tensor, Tensor | None]:
        windows = self._windows(part, text)
        ids = torch.tensor(windows, dtype=torch.long, device=self.device)
        out = part.model(input_ids=ids, output_hidden_states=True, return_dict=True)
        hidden = out.last_hidden_state if part.layer == "last" else out.hidden_states[-2]
        cond = hidden.reshape(1, -1, hidden.shape[-1]).float()
        pooled = getattr(out, "text_embeds", None) if part.projection else getattr(out, "pooler_output", None)
        return cond, None if pooled is None else pooled[:1].float()

    def encode(self, text: str) -> list:
        """Text -> CONDITIONING ``[[tensor [1, T, D], {"pooled_output": tensor [1, P]}]]`` (CPU, float32)."""
        if not isinstance(text, str):
            raise ValueError(f"{self.name}.encode: text must be a str, got {type(text).__name__}")
        conds, pooled = [], None
        for part in self.parts:
            c, p = self._encode_part(part, text)
            conds.append(c)
            pooled = p if p is not None else pooled
        t = min(c.shape[1] for c in conds)
        cond = torch.cat([c[:, :t] for c in conds], dim=-1).cpu()
        extra = {} if pooled is None else {"pooled_output": pooled.cpu()}
        return [[cond, extra]]


class UNetBackbone:
    """``backbone(x_in, t, cond, **extra) -> raw output`` around a diffusers UNet2DConditionModel.

    For SDXL (``text_time`` embeddings) the ADM input is ``pooled_output`` plus the size ids
    ``(height, width, crop_h, crop_w, target_height, target_width)`` from the conditioning dict,
    defaulting to the latent size times ``downscale`` (ComfyUI's defaults).
    """

    def __init__(self, unet: nn.Module, *, downscale: int = 8, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32) -> None:
        self.unet = unet.to(device=device, dtype=dtype).eval().requires_grad_(False)
        self.dtype = dtype
        self.downscale = downscale
        self.sdxl = getattr(unet.config, "addition_embed_type", None) == "text_time"

    @torch.no_grad()
    def __call__(self, x: Tensor, t: Tensor, cond: Tensor | None, *, pooled_output: Tensor | None = None,
                 width: int | None = None, height: int | None = None, crop_w: int = 0, crop_h: int = 0,
                 target_width: int | None = None, target_height: int | None = None, **_: Any) -> Tensor:
        if cond is None:
            raise ValueError("UNetBackbone: this model needs text conditioning (cond is None)")
        added = None
        if self.sdxl:
            if pooled_output is None:
                raise ValueError("UNetBackbone: SDXL needs 'pooled_output' in the conditioning")
            h = height or x.shape[-2] * self.downscale
            w = width or x.shape[-1] * self.downscale
            ids = [h, w, crop_h, crop_w, target_height or h, target_width or w]
            time_ids = torch.tensor([ids], dtype=self.dtype, device=x.device).expand(x.shape[0], -1)
            added = {"text_embeds": _batch_to(pooled_output, x.shape[0]).to(x.device, self.dtype), "time_ids": time_ids}
        out = self.unet(x.to(self.dtype), t, encoder_hidden_states=_batch_to(cond, x.shape[0]).to(x.device, self.dtype),
                        added_cond_kwargs=added, return_dict=False)[0]
        return out.to(x.dtype)


def _batch_to(t: Tensor, batch: int) -> Tensor:
    """Broadcast a batch-1 conditioning tensor ``[1, ...]`` to ``[batch, ...]`` (others unchanged)."""
    return t.expand(batch, *t.shape[1:]) if t.shape[0] == 1 and batch > 1 else t
