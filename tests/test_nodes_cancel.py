"""Inside ComfyUI every node call runs with a progress hook: ComfyUI's Cancel stops the library's
loops at their interrupt points and their progress reports move the node's bar.

ComfyUI is stood in for by two small modules (``comfy.utils.ProgressBar`` and
``comfy.model_management``'s interrupt flag, with ComfyUI 0.3.64's names); the real server is
cancelled in ``tests/comfyui/test_server.py``.
"""

from __future__ import annotations

import sys
import types

import latent_ops_nodes
import pytest
import torch

from latent_ops import progress

OURS = latent_ops_nodes.NODE_CLASS_MAPPINGS


class Interrupt(Exception):
    """Stands in for ``comfy.model_management.InterruptProcessingException``."""


@pytest.fixture
def comfyui(monkeypatch):
    """Stand-in ComfyUI modules; ``state.cancel_after`` = how many interrupt checks pass before Cancel."""
    state = types.SimpleNamespace(checks=0, cancel_after=None, bars=[], updates=[])

    class ProgressBar:
        def __init__(self, total: int, node_id: object = None) -> None:
            state.bars.append(total)

        def update_absolute(self, value: int, total: int | None = None, preview: object = None) -> None:
            state.updates.append((value, total))

    def throw_exception_if_processing_interrupted() -> None:
        state.checks += 1
        if state.cancel_after is not None and state.checks > state.cancel_after:
            raise Interrupt

    comfy = types.ModuleType("comfy")
    utils = types.ModuleType("comfy.utils")
    utils.ProgressBar = ProgressBar
    mm = types.ModuleType("comfy.model_management")
    mm.throw_exception_if_processing_interrupted = throw_exception_if_processing_interrupted
    mm.InterruptProcessingException = Interrupt
    comfy.utils, comfy.model_management = utils, mm
    for name, module in (("comfy", comfy), ("comfy.utils", utils), ("comfy.model_management", mm)):
        monkeypatch.setitem(sys.modules, name, module)
    return state


@pytest.mark.parametrize(("node_id", "cls"), sorted(OURS.items()), ids=sorted(OURS))
def test_every_node_call_is_interruptible(node_id: str, cls: type) -> None:
    assert getattr(getattr(cls, cls.FUNCTION), "interruptible", False), f"{node_id}.{cls.FUNCTION} lacks @interruptible"


def noise_node(variations: int) -> tuple[dict]:
    spec = ", ".join(f"{s}:0.1" for s in range(1, variations + 1))
    return OURS["LatentOpsNoise"]().generate(64, 64, 2, 7, "comfy", "gaussian", 0, 0.0, variations=spec)


def test_cancel_stops_a_library_loop_at_its_next_interrupt_point(comfyui) -> None:
    full = noise_node(40)[0]["samples"]
    assert comfyui.checks == 40 and comfyui.bars == []  # a check per variation; nothing reported, so no bar
    comfyui.checks, comfyui.cancel_after = 0, 5
    with pytest.raises(Interrupt):
        noise_node(40)
    assert comfyui.checks == 6  # the sixth variation's check saw the Cancel
    assert not progress.hooked()  # the hook belongs to the call and is gone after it
    comfyui.cancel_after = None
    assert torch.equal(noise_node(40)[0]["samples"], full)  # the hook changes nothing else


def test_progress_reports_move_one_bar_per_call(comfyui) -> None:
    images = torch.rand(6, 8, 8, 3)
    OURS["LatentOpsImageGrid"]().execute(images, 3, 1, "", "", "")
    assert comfyui.bars == [6]
    assert comfyui.updates == [(i, 6) for i in range(1, 7)]  # repeated positions (checks) send nothing
    comfyui.cancel_after = comfyui.checks + 2
    with pytest.raises(Interrupt):
        OURS["LatentOpsImageGrid"]().execute(images, 3, 1, "", "", "")
    assert len(comfyui.bars) == 2 and comfyui.updates[6:] == [(1, 6), (2, 6)]


def test_the_headless_engines_hook_is_kept(comfyui) -> None:
    seen = []
    with progress.reporting(lambda done, total: seen.append((done, total))):
        noise_node(3)
    assert comfyui.checks == 0 and len(seen) == 3  # the engine's hook got the checks, ComfyUI's none


def test_without_comfyui_a_node_call_is_unchanged() -> None:
    assert "comfy.model_management" not in sys.modules
    assert noise_node(2)[0]["samples"].shape == (2, 4, 8, 8) and not progress.hooked()
