"""Key maps between checkpoint layouts: original LDM (CompVis / ComfyUI) <-> diffusers, and TAESD.

All functions work on plain ``dict[str, Tensor]`` state dicts and never touch files, so the
sampler's UNet loader can reuse :func:`strip_prefix` and :func:`split_by_prefix`. The VAE maps are
written as regular-expression rewrites that hold for any number of resolution levels and resnets
per level (SD1.x/SD2.x/SDXL/SD3/Flux VAEs and the tiny test models alike).

LDM layout (``encoder.down.{i}.block.{j}``, ``decoder.up.{N-1-i}``, ``mid.attn_1.{q,k,v,proj_out}``
as 1x1 convolutions) <-> diffusers layout (``encoder.down_blocks.{i}.resnets.{j}``,
``decoder.up_blocks.{i}``, ``mid_block.attentions.0.{to_q,to_k,to_v,to_out.0}`` as linear layers).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from torch import Tensor

StateDict = dict[str, Tensor]

VAE_PREFIXES: tuple[str, ...] = ("first_stage_model.", "vae.")
"""Prefixes under which full checkpoints store their VAE."""

_ATTN_LDM_TO_DIFF = {"norm": "group_norm", "q": "to_q", "k": "to_k", "v": "to_v", "proj_out": "to_out.0"}
_ATTN_DIFF_TO_LDM = {v: k for k, v in _ATTN_LDM_TO_DIFF.items()}
_LEGACY_ATTN = {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out.0"}
_RESNET_LDM_TO_DIFF = {"nin_shortcut": "conv_shortcut"}
_RESNET_DIFF_TO_LDM = {"conv_shortcut": "nin_shortcut"}


def strip_prefix(state_dict: StateDict, prefix: str) -> StateDict:
    """Keep the keys that start with ``prefix`` and remove it.

    Args:
        state_dict: any state dict.
        prefix: e.g. ``"first_stage_model."``.

    Returns:
        New dict of the matching entries (tensors shared, not copied).
    """
    n = len(prefix)
    return {k[n:]: v for k, v in state_dict.items() if k.startswith(prefix)}


def split_by_prefix(state_dict: StateDict, prefixes: Iterable[str]) -> tuple[str, StateDict] | None:
    """Find the first prefix that some keys carry and return ``(prefix, stripped sub-dict)``.

    Returns:
        ``None`` when no key starts with any of ``prefixes``.
    """
    for prefix in prefixes:
        sub = strip_prefix(state_dict, prefix)
        if sub:
            return prefix, sub
    return None


def is_ldm_vae(state_dict: StateDict) -> bool:
    """True if a bare (prefix-free) KL-VAE state dict uses the original LDM key layout."""
    return any(k.startswith(("encoder.down.", "decoder.up.", "encoder.mid.", "decoder.mid.")) for k in state_dict)


def count_levels(state_dict: StateDict, ldm: bool) -> tuple[int, int]:
    """Number of resolution levels and ``layers_per_block`` of a KL-VAE state dict.

    Read from the decoder, which has ``layers_per_block + 1`` resnets per level (the encoder has
    none when ``layers_per_block`` is 0).

    Args:
        state_dict: bare KL-VAE weights in LDM (``ldm=True``) or diffusers layout.

    Returns:
        ``(n_levels, layers_per_block)``.

    Raises:
        ValueError: if no decoder levels are found.
    """
    pat = re.compile(r"^decoder\.up\.(\d+)\.block\.(\d+)\." if ldm else r"^decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.")
    levels: dict[int, set[int]] = {}
    for key in state_dict:
        m = pat.match(key)
        if m:
            levels.setdefault(int(m[1]), set()).add(int(m[2]))
    if not levels:
        raise ValueError("count_levels: no decoder up-block keys found; not a KL VAE state dict")
    return max(levels) + 1, len(levels[0]) - 1


# One rule per block kind: the LDM template and the diffusers template of the same key. Fields are
# converted between the two sides by _FIELDS; a key no rule matches is left as it is.
_VAE_KEY_RULES: tuple[tuple[str, str], ...] = (
    ("encoder.down.{i}.block.{j}.{res}.{rest}", "encoder.down_blocks.{i}.resnets.{j}.{res}.{rest}"),
    ("encoder.down.{i}.downsample.conv.{rest}", "encoder.down_blocks.{i}.downsamplers.0.conv.{rest}"),
    ("decoder.up.{up}.block.{j}.{res}.{rest}", "decoder.up_blocks.{up}.resnets.{j}.{res}.{rest}"),
    ("decoder.up.{up}.upsample.conv.{rest}", "decoder.up_blocks.{up}.upsamplers.0.conv.{rest}"),
    ("{side}.mid.block_{mid}.{res}.{rest}", "{side}.mid_block.resnets.{mid}.{res}.{rest}"),
    ("{side}.mid.attn_1.{attn}.{rest}", "{side}.mid_block.attentions.0.{attn}.{rest}"),
    ("{side}.norm_out.{rest}", "{side}.conv_norm_out.{rest}"),
)
# field -> (LDM regex, diffusers regex, LDM -> diffusers, diffusers -> LDM); ``n`` is the level count.
_Convert = Callable[[str, int], str]
_FIELDS: dict[str, tuple[str, str, _Convert, _Convert]] = {
    "i": (r"\d+", r"\d+", lambda v, n: v, lambda v, n: v),
    "j": (r"\d+", r"\d+", lambda v, n: v, lambda v, n: v),
    "up": (r"\d+", r"\d+", lambda v, n: str(n - 1 - int(v)), lambda v, n: str(n - 1 - int(v))),
    "mid": (r"\d", r"\d", lambda v, n: str(int(v) - 1), lambda v, n: str(int(v) + 1)),
    "res": (r"\w+", r"\w+", lambda v, n: _RESNET_LDM_TO_DIFF.get(v, v), lambda v, n: _RESNET_DIFF_TO_LDM.get(v, v)),
    "attn": ("|".join(map(re.escape, _ATTN_LDM_TO_DIFF)), "|".join(map(re.escape, _ATTN_DIFF_TO_LDM)),
             lambda v, n: _ATTN_LDM_TO_DIFF[v], lambda v, n: _ATTN_DIFF_TO_LDM[v]),
    "side": ("encoder|decoder", "encoder|decoder", lambda v, n: v, lambda v, n: v),
    "rest": (".*", ".*", lambda v, n: v, lambda v, n: v),
}


def _template_regex(template: str, side: int) -> re.Pattern[str]:
    parts = re.split(r"\{(\w+)\}", template)  # literal, field, literal, field, ...
    body = "".join(re.escape(p) if k % 2 == 0 else f"(?P<{p}>{_FIELDS[p][side]})" for k, p in enumerate(parts))
    return re.compile(f"^{body}$")


_COMPILED = [(_template_regex(ldm, 0), _template_regex(diff, 1), ldm, diff) for ldm, diff in _VAE_KEY_RULES]


def _rewrite_vae_key(key: str, n_levels: int, to_diffusers: bool) -> str:
    """Rewrite one VAE key between the LDM and diffusers layouts (``n_levels`` resolution levels)."""
    for ldm_re, diff_re, ldm, diff in _COMPILED:
        m = (ldm_re if to_diffusers else diff_re).match(key)
        if m:
            convert = 2 if to_diffusers else 3
            fields = {name: _FIELDS[name][convert](value, n_levels) for name, value in m.groupdict().items()}
            return (diff if to_diffusers else ldm).format(**fields)
    return key


def _vae_key_ldm_to_diffusers(key: str, n_levels: int) -> str:
    return _rewrite_vae_key(key, n_levels, to_diffusers=True)


def _vae_key_diffusers_to_ldm(key: str, n_levels: int) -> str:
    return _rewrite_vae_key(key, n_levels, to_diffusers=False)


def _is_attn_proj(key: str) -> bool:
    return ".mid_block.attentions.0.to_" in key and key.endswith(".weight")


def normalize_diffusers_vae(state_dict: StateDict) -> StateDict:
    """Rename legacy diffusers attention names (``query/key/value/proj_attn``) to current ones.

    Also turns 1x1-conv shaped attention projections ``[C, C, 1, 1]`` into linear ``[C, C]``.
    """
    out: StateDict = {}
    for key, value in state_dict.items():
        m = re.match(r"^(.*\.mid_block\.attentions\.0)\.(query|key|value|proj_attn)\.(.*)$", key)
        if m:
            key = f"{m[1]}.{_LEGACY_ATTN[m[2]]}.{m[3]}"
        if _is_attn_proj(key) and value.ndim == 4:
            value = value[:, :, 0, 0]
        out[key] = value
    return out


def vae_ldm_to_diffusers(state_dict: StateDict) -> StateDict:
    """Convert a bare LDM-layout KL-VAE state dict to diffusers ``AutoencoderKL`` keys.

    Args:
        state_dict: keys like ``encoder.down.0.block.0.norm1.weight`` (no ``first_stage_model.``).

    Returns:
        New dict with diffusers keys; attention projections reshaped ``[C,C,1,1] -> [C,C]``.

    Raises:
        ValueError: if the dict has no encoder levels (see :func:`count_levels`).
    """
    n_levels, _ = count_levels(state_dict, ldm=True)
    out: StateDict = {}
    for key, value in state_dict.items():
        new = _vae_key_ldm_to_diffusers(key, n_levels)
        if _is_attn_proj(new) and value.ndim == 4:
            value = value[:, :, 0, 0]
        out[new] = value
    return out


def vae_diffusers_to_ldm(state_dict: StateDict, prefix: str = "") -> StateDict:
    """Inverse of :func:`vae_ldm_to_diffusers`: diffusers ``AutoencoderKL`` keys -> LDM keys.

    Args:
        state_dict: diffusers-layout weights (``AutoencoderKL.state_dict()``).
        prefix: prepended to every key (``"first_stage_model."`` to mimic a full checkpoint).

    Returns:
        New dict; attention projections become 1x1 convolutions ``[C, C, 1, 1]``.
    """
    sd = normalize_diffusers_vae(state_dict)
    n_levels, _ = count_levels(sd, ldm=False)
    out: StateDict = {}
    for key, value in sd.items():
        if _is_attn_proj(key) and value.ndim == 2:
            value = value[:, :, None, None]
        out[prefix + _vae_key_diffusers_to_ldm(key, n_levels)] = value.contiguous()
    return out


def _layer_index_map(state_dict: StateDict, shift: int, src: str, dst: str) -> StateDict:
    out: StateDict = {}
    for key, value in state_dict.items():
        m = re.match(rf"^{re.escape(src)}(\d+)\.(.*)$", key)
        if m is None:
            raise ValueError(f"TAESD key {key!r} does not look like '{src}<index>.<param>'")
        out[f"{dst}{int(m[1]) + shift}.{m[2]}"] = value
    return out


def taesd_original_to_diffusers(encoder: StateDict | None, decoder: StateDict | None) -> StateDict:
    """Merge original TAESD encoder/decoder files into diffusers ``AutoencoderTiny`` keys.

    The original encoder's layer ``k`` is ``encoder.layers.k``; the original decoder starts with a
    parameter-free ``Clamp`` at index 0, so its layer ``i`` is ``decoder.layers.{i-1}``.

    Args:
        encoder: keys like ``0.weight``, ``1.conv.0.weight`` (or ``None`` to skip).
        decoder: keys like ``1.weight``, ``10.conv.0.weight`` (or ``None`` to skip).

    Returns:
        One diffusers-layout state dict.

    Raises:
        ValueError: on keys that are not ``<index>.<param>``.
    """
    out: StateDict = {}
    if encoder is not None:
        out.update(_layer_index_map(encoder, 0, "", "encoder.layers."))
    if decoder is not None:
        out.update(_layer_index_map(decoder, -1, "", "decoder.layers."))
    return out


def taesd_diffusers_to_original(state_dict: StateDict) -> tuple[StateDict, StateDict]:
    """Split diffusers ``AutoencoderTiny`` weights into original ``(encoder, decoder)`` dicts."""
    enc = {k: v for k, v in state_dict.items() if k.startswith("encoder.layers.")}
    dec = {k: v for k, v in state_dict.items() if k.startswith("decoder.layers.")}
    return _layer_index_map(enc, 0, "encoder.layers.", ""), _layer_index_map(dec, 1, "decoder.layers.", "")
