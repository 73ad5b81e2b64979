"""Reading a VAE's family and diffusers config from its weights (shapes and key names only).

Every family fact comes from a :class:`~latent_ops.vae.families.FamilyRegistry` (the built-in
:data:`~latent_ops.vae.families.REGISTRY` unless one is passed): detection picks, among the
families of the weights' kind and latent channels, the hinted one, else the one a full
checkpoint's other parts or the file name imply, else the default. Configs are the family's
shipped config with the shape-derived fields replaced. No network is built here.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from torch import Tensor

from ..weights import ldm_convert
from ..weights.files import ModelLoadError
from .families import REGISTRY, FamilyRegistry

StateDict = dict[str, Tensor]


# --------------------------------------------------------------------------- layouts
def taesd_layout(state_dict: StateDict) -> str | None:
    """``"original"`` or ``"diffusers"`` for TAESD encoder/decoder weights, None for anything else."""
    keys = list(state_dict)
    if keys and all(re.match(r"^\d+\.", k) for k in keys):
        return "original"
    if any(k.startswith(("encoder.layers.", "decoder.layers.")) for k in keys):
        return "diffusers"
    return None


def extract_vae_state_dict(state_dict: StateDict) -> StateDict:
    """The bare KL-VAE weights of a standalone VAE file or a full checkpoint (prefix removed).

    Raises:
        ModelLoadError: if no VAE weights are found.
    """
    bare_prefixes = ("encoder.", "decoder.", "quant_conv.", "post_quant_conv.")
    bare = {k: v for k, v in state_dict.items() if k.startswith(bare_prefixes)}
    if bare:
        return bare
    found = ldm_convert.split_by_prefix(state_dict, ldm_convert.VAE_PREFIXES)
    if found is None:
        sample = ", ".join(list(state_dict)[:3])
        raise ModelLoadError(
            f"no VAE weights found (expected 'encoder.conv_in.weight' or 'first_stage_model.encoder...'; "
            f"first keys: {sample})"
        )
    return found[1]


# --------------------------------------------------------------------------- hints
def checkpoint_family_hint(state_dict: StateDict, registry: FamilyRegistry = REGISTRY) -> str | None:
    """Family implied by the non-VAE parts of a full checkpoint (a family's ``checkpoint_key``), or None."""
    for family in registry:
        if family.checkpoint_key and any(re.search(family.checkpoint_key, k) for k in state_dict):
            return family.name
    return None


def name_family_hint(path: str | Path, registry: FamilyRegistry = REGISTRY) -> str | None:
    """Family implied by a file or folder name (``sdxl_vae``, ``taesd3_decoder``, ``ae``...), or None.

    TAESD names are prefixes (longest first); KL families match by ``name_markers`` (substrings)
    or ``name_tokens`` (words of the stem), in registration order.
    """
    name = Path(path).name.lower()
    for prefix in registry.taesd_prefixes():
        if name.startswith(prefix):
            return prefix
    tokens = set(re.split(r"[^a-z0-9]+", Path(name).stem))
    for family in registry:
        if any(m in name for m in family.name_markers) or tokens & set(family.name_tokens):
            return family.name
    return None


# --------------------------------------------------------------------------- channels
def _latent_channels(state_dict: StateDict) -> int:
    w = state_dict.get("decoder.conv_in.weight")
    if w is None or w.ndim != 4:
        raise ModelLoadError("KL VAE without a 4-D 'decoder.conv_in.weight'")
    return int(w.shape[1])


def _tiny_latent_channels(state_dict: StateDict) -> int:
    if taesd_layout(state_dict) == "original":
        if "0.weight" in state_dict:  # an encoder file (a decoder file starts with a Clamp at 0)
            state_dict = ldm_convert.taesd_original_to_diffusers(state_dict, None)
        else:
            state_dict = ldm_convert.taesd_original_to_diffusers(None, state_dict)
    idx = sorted({int(k.split(".")[2]) for k in state_dict if k.startswith("encoder.layers.")})
    try:
        if idx:
            return int(state_dict[f"encoder.layers.{idx[-1]}.weight"].shape[0])
        return int(state_dict["decoder.layers.0.weight"].shape[1])
    except (KeyError, IndexError) as exc:
        raise ModelLoadError(f"TAESD weights without a readable first/last convolution ({exc!r})") from None


def detect_vae_family(state_dict: StateDict, hint: str | None = None, registry: FamilyRegistry = REGISTRY) -> str:
    """Family of a VAE state dict (any supported layout, prefixed or bare).

    Args:
        state_dict: weights of a KL VAE, a full checkpoint, or a TAESD encoder/decoder.
        hint: preferred family among the shape-compatible ones (``"sdxl"`` for a 4-channel KL VAE).
        registry: the families to choose from.

    Returns:
        A family name of ``registry``.

    Raises:
        ModelLoadError: unknown layout, unsupported latent channels, or a hint that contradicts
            the shapes.
    """
    if hint is not None and hint not in registry:
        raise ModelLoadError(f"unknown VAE family {hint!r}; known: {list(registry.names())}")
    if taesd_layout(state_dict) is not None:
        kind, ch = "tiny", _tiny_latent_channels(state_dict)
    else:
        hint = hint or checkpoint_family_hint(state_dict, registry)
        kind, ch = "kl", _latent_channels(extract_vae_state_dict(state_dict))
        if hint is not None and registry.get(hint).kind == "tiny":
            raise ModelLoadError(f"family {hint!r} given for a KL VAE (a TAESD family needs TAESD weights)")
    options = [f.name for f in registry.candidates(kind, ch)]
    if not options:
        known = sorted({f.channels for f in registry if f.kind == kind})
        raise ModelLoadError(f"unsupported latent channel count {ch}: known VAEs have {' or '.join(map(str, known))}")
    if hint is None:
        return options[0]
    if hint not in options:
        raise ModelLoadError(f"family {hint!r} does not fit these weights ({ch} latent channels: one of {options})")
    return hint


def family_from_config(cfg: dict, registry: FamilyRegistry = REGISTRY) -> str:
    """Family of a diffusers VAE folder's config: TAESD by channels (default first), KL by latent
    channels and ``scaling_factor``; ``"custom"`` for a KL config that matches no family."""
    channels = int(cfg.get("latent_channels", 4))
    if cfg.get("_class_name") == "AutoencoderTiny":
        options = registry.candidates("tiny", channels) or tuple(f for f in registry if f.kind == "tiny")
        return options[0].name
    scale = cfg.get("scaling_factor")
    for family in registry.candidates("kl", channels):
        if scale is not None and abs(float(scale) - family.latent_format.scale) < 1e-6:
            return family.name
    return "custom"


# --------------------------------------------------------------------------- configs
def infer_kl_config(state_dict: StateDict, family: str, registry: FamilyRegistry = REGISTRY) -> dict:
    """``AutoencoderKL`` config for diffusers-layout weights: the family's shipped config with the
    shape-derived fields replaced (levels, channels, resnets, quant convs, attention).

    ``norm_num_groups`` cannot be read from shapes; it is ``gcd(32, *block_out_channels)`` (32
    for every released VAE). Pass ``config=`` to ``load_vae`` for anything else.
    """
    cfg = registry.get(family).shipped_config()
    n_levels, per = ldm_convert.count_levels(state_dict, ldm=False)
    try:
        up = [int(state_dict[f"decoder.up_blocks.{i}.resnets.0.conv1.weight"].shape[0]) for i in range(n_levels)]
        chans = up[::-1]
        in_ch = int(state_dict["encoder.conv_in.weight"].shape[1])
        out_ch = int(state_dict["decoder.conv_out.weight"].shape[0])
    except KeyError as exc:
        raise ModelLoadError(f"KL VAE is missing {exc.args[0]!r}") from None
    cfg.update(
        block_out_channels=chans,
        layers_per_block=per,
        down_block_types=["DownEncoderBlock2D"] * n_levels,
        up_block_types=["UpDecoderBlock2D"] * n_levels,
        latent_channels=_latent_channels(state_dict),
        in_channels=in_ch,
        out_channels=out_ch,
        use_quant_conv="quant_conv.weight" in state_dict,
        use_post_quant_conv="post_quant_conv.weight" in state_dict,
        mid_block_add_attention=any(".mid_block.attentions.0." in k for k in state_dict),
        norm_num_groups=math.gcd(32, *chans),
    )
    return cfg


def _tiny_runs(state_dict: StateDict, part: str) -> tuple[list[int], list[int]]:
    layers: dict[int, bool] = {}
    for k in state_dict:
        m = re.match(rf"^{part}\.layers\.(\d+)\.(conv\.)?", k)
        if m:
            layers[int(m[1])] = layers.get(int(m[1]), False) or bool(m[2])
    counts, chans, run = [], [], 0
    for i in sorted(layers):
        if layers[i]:
            if run == 0:
                chans.append(int(state_dict[f"{part}.layers.{i}.conv.0.weight"].shape[0]))
            run += 1
        elif run:
            counts.append(run)
            run = 0
    if run:
        counts.append(run)
    return counts, chans


def infer_tiny_config(state_dict: StateDict, family: str, registry: FamilyRegistry = REGISTRY) -> dict:
    """``AutoencoderTiny`` config for diffusers-layout weights (block counts/channels from keys)."""
    cfg = registry.get(family).shipped_config()
    enc_n, enc_c = _tiny_runs(state_dict, "encoder")
    dec_n, dec_c = _tiny_runs(state_dict, "decoder")
    if enc_n:
        cfg.update(num_encoder_blocks=enc_n, encoder_block_out_channels=enc_c)
    if dec_n:
        cfg.update(num_decoder_blocks=dec_n, decoder_block_out_channels=dec_c)
    cfg["latent_channels"] = _tiny_latent_channels(state_dict)
    return cfg
