"""Checking a model folder before anything is built: safetensors weights, and a config that fits them.

diffusers' and transformers' ``from_pretrained`` first build the module a folder's ``config.json``
describes, at full size and randomly initialised, and only then read the weights. A config that
asks for more than its weights hold (a 16384-channel level, 100000 layers) would allocate
gigabytes or run for minutes before failing, and a folder holding only a pickled ``.bin`` would be
unpickled. :func:`check_folder` refuses both before anything runs:

1. the weights must be ``.safetensors`` (a folder with only ``.bin``/``.ckpt``/``.pt``/``.pth``
   weights is refused; loaders also pass ``use_safetensors=True``);
2. every number in the config is bounded (:func:`check_config_sizes`);
3. the module is built on the ``meta`` device (no memory) and must not need more parameters than
   the safetensors headers declare (:func:`check_fits`).

The VAE loader checks its own configs more tightly (``latent_ops.vae.loading.check_config``) and
compares every tensor's shape.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from ..limits import excerpt
from .files import PICKLE_EXTENSIONS, ModelLoadError, check_safetensors_header

MAX_CONFIG_COUNT = 128
"""Largest value of a config field that counts repeated parts (``*layers*``, ``*blocks*``, ``depth``,
``*heads*``); building is linear in it even on the meta device."""
MAX_CONFIG_INT = 2**20
"""Largest value of any other integer in a config (widths, vocabulary sizes)."""
MAX_CONFIG_LIST = 64
"""Entries of a list in a config."""
_COUNT_KEY = re.compile(r"layers|blocks|depth|heads", re.IGNORECASE)


def check_config_sizes(cfg: object, source: str, path: str = "") -> None:
    """Refuse a config (JSON value) with an integer or list beyond the bounds above.

    Raises:
        ModelLoadError: naming ``source``, the key path (``down_block_types[3]``) and the value.
    """
    if isinstance(cfg, dict):
        for key, value in cfg.items():
            check_config_sizes(value, source, f"{path}.{key}" if path else str(key))
    elif isinstance(cfg, list):
        if len(cfg) > MAX_CONFIG_LIST:
            raise ModelLoadError(f"{source}: config {path} has {len(cfg)} entries, at most {MAX_CONFIG_LIST}")
        for i, value in enumerate(cfg):
            check_config_sizes(value, source, f"{path}[{i}]")
    elif isinstance(cfg, int) and not isinstance(cfg, bool):
        limit = MAX_CONFIG_COUNT if _COUNT_KEY.search(path.rsplit(".", 1)[-1]) else MAX_CONFIG_INT
        if abs(cfg) > limit:
            raise ModelLoadError(f"{source}: config {path}={excerpt(cfg)} is out of bounds (at most {limit})")
    elif isinstance(cfg, float) and not math.isfinite(cfg):
        raise ModelLoadError(f"{source}: config {path}={cfg} is not a finite number")


def weight_files(folder: Path, name: str) -> list[Path]:
    """The safetensors files of ``folder/<name>.safetensors`` (or its shards, via ``.index.json``).

    Raises:
        ModelLoadError: the folder holds only pickled weights (naming them), or no weights at all.
    """
    index = folder / f"{name}.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        return [folder / str(s) for s in shards]
    single = folder / f"{name}.safetensors"
    if single.is_file():
        return [single]
    pickled = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in PICKLE_EXTENSIONS)
    if pickled:
        raise ModelLoadError(f"{folder}: refusing pickled weights {pickled[:3]} (pickles can run code); only "
                             f"{name}.safetensors is read; convert the weights to .safetensors")
    raise ModelLoadError(f"{folder}: no {name}.safetensors in the folder")


def check_fits(module: nn.Module, files: list[Path], source: str) -> None:
    """Refuse a (meta) ``module`` needing more parameters than the safetensors ``files`` declare.

    Raises:
        ModelLoadError: naming ``source`` and both counts.
    """
    need = sum(p.numel() for p in module.parameters())
    have = 0
    for f in files:
        header = check_safetensors_header(f)
        have += sum(math.prod(int(s) for s in v["shape"]) for k, v in header.items() if k != "__metadata__")
    if need > have:
        raise ModelLoadError(f"{source}: the config describes a {type(module).__name__} of {need} parameters but "
                             f"the weights hold {have} values; the config does not belong to these weights")


def check_folder(folder: str | Path, build: Callable[[dict], nn.Module], weights: str) -> None:
    """Check a diffusers/transformers model folder (``config.json`` + safetensors) before loading it.

    Args:
        folder: the model folder. build: makes the module from the config dict (called on the
            ``meta`` device). weights: the weights' file name without extension
            (``"diffusion_pytorch_model"``, ``"model"``).

    Raises:
        ModelLoadError: pickled or missing weights, an unreadable or out-of-bounds config, or a
            config that needs more parameters than the weights hold.
    """
    folder = Path(folder)
    source = str(folder / "config.json")
    try:
        cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{source}: cannot read the config ({excerpt(str(exc))})") from None
    if not isinstance(cfg, dict):
        raise ModelLoadError(f"{source}: a model config must be a JSON object, got {type(cfg).__name__}")
    check_config_sizes(cfg, source)
    files = weight_files(folder, weights)
    with torch.device("meta"):
        module = build(cfg)
    check_fits(module, files, source)
