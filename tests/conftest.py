"""Shared test set-up: offline hub, one torch thread, and the plugin's registries."""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import types

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Goldens are CPU float32 figures: nodes run on the CPU unless LATENT_OPS_DEVICE names another device
# (tests/test_gpu.py picks CUDA itself), also in the subprocesses the CLI tests start.
os.environ.setdefault("LATENT_OPS_DEVICE", "cpu")

import pytest  # noqa: E402
import torch  # noqa: E402

# Small-tensor work is faster and steadier on one thread on a shared 2-core machine.
torch.set_num_threads(1)


@pytest.fixture
def gen() -> torch.Generator:
    """A fresh seeded CPU generator for test data (never the global RNG)."""
    return torch.Generator().manual_seed(1234)


@pytest.fixture
def tiny_kl():
    """Builder of tiny random-weight diffusers ``AutoencoderKL`` s (weights ``0.3 * randn`` from ``gen``).

    ``tiny_kl(gen, chans=(8, 8, 8, 8), lpb=1, latent=4, quant=True)``: one level per entry of
    ``chans``, ``lpb`` layers per block, GroupNorm 8, eval mode.
    """
    def build(gen: torch.Generator, chans: tuple[int, ...] = (8, 8, 8, 8), lpb: int = 1, latent: int = 4,
              quant: bool = True):  # noqa: ANN202
        from diffusers import AutoencoderKL

        n = len(chans)
        m = AutoencoderKL(
            block_out_channels=list(chans), down_block_types=["DownEncoderBlock2D"] * n,
            up_block_types=["UpDecoderBlock2D"] * n, layers_per_block=lpb, latent_channels=latent,
            norm_num_groups=8, use_quant_conv=quant, use_post_quant_conv=quant,
        )  # fmt: skip
        with torch.no_grad():
            for p in m.parameters():
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
        return m.eval()

    return build


@pytest.fixture(scope="session")
def registry() -> dict[str, type]:
    """Our nodes plus the headless core nodes, as the headless runner sees them."""
    import latent_ops_nodes

    return latent_ops_nodes.headless_registry()


def _load_kdiffusion_sampling() -> types.ModuleType:
    """Import k_diffusion.sampling alone (its package __init__ needs torchvision, skimage, ...)."""
    spec = importlib.util.find_spec("k_diffusion")
    if spec is None:
        pytest.skip("k-diffusion not installed (pip install --no-deps k-diffusion torchsde torchdiffeq)")
    pytest.importorskip("torchsde")
    pytest.importorskip("torchdiffeq")
    names = ("torchvision", "torchvision.transforms", "torchvision.transforms.functional",
             "k_diffusion", "k_diffusion.utils", "k_diffusion.sampling")
    saved = {k: sys.modules.get(k) for k in names}
    try:
        tv, tvt, tvf = (types.ModuleType(n) for n in names[:3])
        tv.transforms, tvt.functional = tvt, tvf
        pkg = types.ModuleType("k_diffusion")
        pkg.__path__ = list(spec.submodule_search_locations)
        sys.modules.update(dict(zip(names[:4], (tv, tvt, tvf, pkg), strict=True)))
        return importlib.import_module("k_diffusion.sampling")
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


@pytest.fixture(scope="session")
def kdiffusion_sampling() -> types.ModuleType:
    """k-diffusion's sampling module, the reference for sampler and schedule tests (skips if absent)."""
    return _load_kdiffusion_sampling()
