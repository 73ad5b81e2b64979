"""Shared test set-up: offline hub, one torch thread, and the plugin's registries."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

# Small-tensor work is faster and steadier on one thread on a shared 2-core machine.
torch.set_num_threads(1)


@pytest.fixture
def gen() -> torch.Generator:
    """A fresh seeded CPU generator for test data (never the global RNG)."""
    return torch.Generator().manual_seed(1234)


@pytest.fixture(scope="session")
def registry() -> dict[str, type]:
    """Our nodes plus the headless core nodes, as the headless runner sees them."""
    import latent_ops_nodes

    return latent_ops_nodes.headless_registry()
