"""Every file in workflows/ validates and runs headless (new workflows are picked up automatically).

Every workflow must validate without problems and write at least one image or latent. The models
they use ship with the repository (the embedded default model), so a missing model or any other
validation problem is a failure, never a skip.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from latent_ops.media import files
from latent_ops.workflow import Engine, cli, load, validate

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / "workflows").glob("*.json"))
INPUT_DIR = ROOT / "workflows" / "input"


def test_there_are_workflows() -> None:
    assert len(WORKFLOWS) >= 2


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.name for p in WORKFLOWS])
def test_workflow_validates_and_runs_headless(path: Path, tmp_path: Path, registry) -> None:
    out = tmp_path / "out"
    with files.using(input_dir=INPUT_DIR, output_dir=out, temp_dir=tmp_path / "temp"):
        workflow = load(path, registry)
        assert workflow.source == "ui", "workflows/ holds UI-format graphs (what the editor opens)"
        problems = validate(workflow.prompt, registry)
        assert problems == [], "\n".join(p.message for p in problems)
        assert cli.main(["validate", str(path), "--input-dir", str(INPUT_DIR)], registry) == cli.EXIT_OK
        result = Engine(registry).run(workflow.prompt, extra_pnginfo={"workflow": workflow.ui})
    written = sorted(p for p in out.rglob("*") if p.is_file())
    assert written, f"{path.name} wrote nothing"
    # ui lists hold file entries (dicts) and flags such as SaveAnimation's "animated": (True,)
    reported = {
        e["filename"] for ui in result.ui.values() for entries in ui.values() for e in entries if isinstance(e, dict)
    }
    assert {p.name for p in written} == reported
    for file in written:
        if file.suffix == ".png":
            chunks = files.read_png_text(file.read_bytes())
            assert json.loads(chunks["prompt"]) == workflow.prompt
            assert json.loads(chunks["workflow"]) == workflow.ui
        elif file.suffix == ".latent":
            assert files.load_latent(file)["samples"].ndim >= 4
