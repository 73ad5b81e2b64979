"""VAE families: detection from a state dict, and the diffusers configs shipped for them.

Everything here reads tensor shapes and key names only: no network is built. SD1.5 and SDXL VAEs
(and SD3 and Flux VAEs) have identical shapes, so :func:`detect_vae_family` takes a hint from the
caller, then from the rest of a full checkpoint, and otherwise picks ``sd15`` for 4-channel and
``flux`` for 16-channel VAEs; :func:`name_family_hint` reads one from a file name. The configs
come from ``latent_ops/configs/`` with the shape-derived fields replaced.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

from torch import Tensor

from ..weights import ldm_convert
from ..weights.files import ModelLoadError

StateDict = dict[str, Tensor]

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"

TAESD_NAMES = ("taesdxl", "taesd3", "taef1", "taesd")
"""TAESD variants, longest prefix first (``taesd`` is a prefix of ``taesdxl``)."""

KL_FAMILIES = ("sd15", "sdxl", "sd3", "flux")
FAMILIES = (*KL_FAMILIES, *TAESD_NAMES)
FAMILY_CONFIG = {
    "sd15": "sd15-vae",
    "sdxl": "sdxl-vae",
    "sd3": "sd3-vae",
    "flux": "flux-vae",
    "taesd": "taesd",
    "taesdxl": "taesdxl",
    "taesd3": "taesd3",
    "taef1": "taef1",
}
TAESD_FORMAT = {"taesd": "sd15", "taesdxl": "sdxl", "taesd3": "sd3", "taef1": "flux"}


# --------------------------------------------------------------------------- detection
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


def checkpoint_family_hint(state_dict: StateDict) -> str | None:
    """Family implied by the non-VAE parts of a full checkpoint, or None."""
    keys = state_dict.keys()
    if any(k.startswith("conditioner.embedders.1.") for k in keys):
        return "sdxl"
    if any(".joint_blocks." in k for k in keys):
        return "sd3"
    if any(".double_blocks." in k for k in keys):
        return "flux"
    if any(k.startswith("cond_stage_model.") for k in keys):
        return "sd15"
    return None


def name_family_hint(path: str | Path) -> str | None:
    """Family implied by a file or folder name (``sdxl_vae``, ``taesd3_decoder``, ``ae``...)."""
    name = Path(path).name.lower()
    for t in TAESD_NAMES:
        if name.startswith(t):
            return t
    tokens = set(re.split(r"[^a-z0-9]+", Path(name).stem))
    if "sdxl" in tokens or "xl" in tokens or "sdxl" in name:
        return "sdxl"
    if "sd3" in name:
        return "sd3"
    if "flux" in name or tokens & {"ae", "f1"}:
        return "flux"
    return None


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


def detect_vae_family(state_dict: StateDict, hint: str | None = None) -> str:
    """Family of a VAE state dict (any supported layout, prefixed or bare).

    Args:
        state_dict: weights of a KL VAE, a full checkpoint, or a TAESD encoder/decoder.
        hint: preferred family among the shape-compatible ones (``"sdxl"`` for a 4-channel KL VAE).

    Returns:
        One of :data:`FAMILIES`.

    Raises:
        ModelLoadError: unknown layout, unsupported latent channels, or a hint that contradicts
            the shapes.
    """
    if hint is not None and hint not in FAMILIES:
        raise ModelLoadError(f"unknown VAE family {hint!r}; known: {list(FAMILIES)}")
    if taesd_layout(state_dict) is not None:
        ch = _tiny_latent_channels(state_dict)
        options = {4: ("taesd", "taesdxl"), 16: ("taef1", "taesd3")}.get(ch)
    else:
        hint = hint or checkpoint_family_hint(state_dict)
        ch = _latent_channels(extract_vae_state_dict(state_dict))
        options = {4: ("sd15", "sdxl"), 16: ("flux", "sd3")}.get(ch)
        if hint in TAESD_NAMES:
            raise ModelLoadError(f"family {hint!r} given for a KL VAE (a TAESD family needs TAESD weights)")
    if options is None:
        raise ModelLoadError(f"unsupported latent channel count {ch}: known VAEs have 4 or 16")
    if hint is None:
        return options[0]
    if hint not in options:
        raise ModelLoadError(f"family {hint!r} does not fit these weights ({ch} latent channels: one of {list(options)})")
    return hint


# --------------------------------------------------------------------------- configs
def shipped_config(family: str) -> dict:
    """The diffusers config shipped for ``family`` (a fresh dict)."""
    if family not in FAMILY_CONFIG:
        raise ModelLoadError(f"unknown VAE family {family!r}; known: {list(FAMILY_CONFIG)}")
    return json.loads((CONFIG_DIR / FAMILY_CONFIG[family] / "config.json").read_text(encoding="utf-8"))


def infer_kl_config(state_dict: StateDict, family: str) -> dict:
    """``AutoencoderKL`` config for diffusers-layout weights: the family's shipped config with the
    shape-derived fields replaced (levels, channels, resnets, quant convs, attention).

    ``norm_num_groups`` cannot be read from shapes; it is ``gcd(32, *block_out_channels)`` (32
    for every released VAE). Pass ``config=`` to :func:`load_vae` for anything else.
    """
    cfg = shipped_config(family)
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


def infer_tiny_config(state_dict: StateDict, family: str) -> dict:
    """``AutoencoderTiny`` config for diffusers-layout weights (block counts/channels from keys)."""
    cfg = shipped_config(family)
    enc_n, enc_c = _tiny_runs(state_dict, "encoder")
    dec_n, dec_c = _tiny_runs(state_dict, "decoder")
    if enc_n:
        cfg.update(num_encoder_blocks=enc_n, encoder_block_out_channels=enc_c)
    if dec_n:
        cfg.update(num_decoder_blocks=dec_n, decoder_block_out_channels=dec_c)
    cfg["latent_channels"] = _tiny_latent_channels(state_dict)
    return cfg
