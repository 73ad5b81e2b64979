"""The ``latent-ops`` command line: exit codes, --json output, --set sweeps, convert, nodes.

Three tests run the installed console script in a subprocess from a temporary working directory
(each start imports torch, which takes seconds); the others call ``latent_ops.workflow.cli.main`` in-process
with the same registry the script uses, from a temporary working directory too.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from latent_ops import progress
from latent_ops.media import files
from latent_ops.weights import folders as model_paths
from latent_ops.workflow import cli

ROOT = Path(__file__).resolve().parents[1]
BATCH = ROOT / "workflows" / "latent_batch_basics.json"
IMAGE = ROOT / "workflows" / "load_save_image.json"
INPUT_DIR = ROOT / "workflows" / "input"


def _script() -> list[str]:
    exe = Path(sys.executable).parent / "latent-ops"
    found = str(exe) if exe.exists() else shutil.which("latent-ops")
    return [found] if found else [sys.executable, "-c", "from latent_ops_nodes.cli import main; main()"]


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([*_script(), *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=120)


@pytest.fixture
def cli_in(tmp_path: Path, monkeypatch, capsys, registry):
    """Run ``latent-ops`` in-process from ``tmp_path``; returns ``(code, stdout, stderr)``."""
    from latent_ops_nodes import NODE_DISPLAY_NAME_MAPPINGS
    from latent_ops_nodes.headless import HEADLESS_NODE_DISPLAY_NAME_MAPPINGS

    names = {**HEADLESS_NODE_DISPLAY_NAME_MAPPINGS, **NODE_DISPLAY_NAME_MAPPINGS}
    monkeypatch.chdir(tmp_path)

    def call(*args: str) -> tuple[int, str, str]:
        code = cli.main(list(args), registry, names)
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return call


def test_run_from_any_directory_writes_into_out(tmp_path: Path) -> None:
    proc = run_cli("run", str(IMAGE), "--input-dir", str(INPUT_DIR), "--out", "results", "--json", cwd=tmp_path)
    assert proc.returncode == cli.EXIT_OK, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["ok"] is True and len(doc["runs"]) == 1
    (written,) = doc["runs"][0]["files"]
    assert (tmp_path / written).is_file() and written.startswith("results/images/example_00001_")
    chunks = files.read_png_text((tmp_path / written).read_bytes())
    assert json.loads(chunks["workflow"]) == json.loads(IMAGE.read_text())


def test_human_output_lists_written_files(cli_in) -> None:
    code, out, _ = cli_in("run", str(IMAGE), "--input-dir", str(INPUT_DIR), "--out", "results")
    assert code == 0 and "results/images/example_00001_.png" in out
    code, out, _ = cli_in("run", str(IMAGE), "--input-dir", str(INPUT_DIR), "--out", "results")
    assert code == 0 and "example_00002_.png" in out  # never overwrites
    code, out, _ = cli_in("run", str(BATCH), "--timings")
    assert code == 0 and out.count(" ms  node ") == 6 and "(SaveLatent)" in out


def test_validation_errors_exit_3_with_every_problem_in_json(tmp_path: Path) -> None:
    ui = json.loads(BATCH.read_text())
    ui["nodes"][0]["widgets_values"][0] = 99999  # width above 16384
    ui["nodes"].append({"id": 50, "type": "NoSuchNode", "mode": 0, "inputs": [], "outputs": [], "widgets_values": []})
    (tmp_path / "bad.json").write_text(json.dumps(ui))
    proc = run_cli("validate", "bad.json", "--json", cwd=tmp_path)
    assert proc.returncode == cli.EXIT_INVALID
    problems = json.loads(proc.stdout)["error"]["problems"]
    assert {(p["type"], p["node_id"]) for p in problems} == {("value_bigger_than_max", "1"), ("missing_node_type", "50")}
    width = next(p for p in problems if p["type"] == "value_bigger_than_max")
    assert (width["class_type"], width["input_name"], width["received_value"]) == ("EmptyLatentImage", "width", 99999)


def test_an_output_png_runs_again_from_its_metadata(cli_in, tmp_path: Path) -> None:
    code, out, _ = cli_in("run", str(IMAGE), "--input-dir", str(INPUT_DIR), "--json")
    (first,) = json.loads(out)["runs"][0]["files"]
    code, out, _ = cli_in("run", first, "--input-dir", str(INPUT_DIR), "--json")
    assert code == 0
    (second,) = json.loads(out)["runs"][0]["files"]
    assert second != first
    one, two = (files.read_png_text((tmp_path / f).read_bytes()) for f in (first, second))
    assert json.loads(one["prompt"]) == json.loads(two["prompt"]) and one["workflow"] == two["workflow"]
    assert (tmp_path / first).read_bytes() != b"" and cli_in("convert", first, "--to", "ui")[1].startswith("{")


def test_bad_extra_model_paths_is_a_usage_error(cli_in, tmp_path: Path) -> None:
    code, _, err = cli_in("validate", str(BATCH), "--extra-model-paths", "missing.yaml")
    assert code == cli.EXIT_USAGE and err.startswith("latent-ops:")


def test_invalid_run_writes_nothing(cli_in, tmp_path: Path) -> None:
    ui = json.loads(BATCH.read_text())
    ui["nodes"].append({"id": 50, "type": "NoSuchNode", "mode": 0, "inputs": [], "outputs": [], "widgets_values": []})
    (tmp_path / "bad.json").write_text(json.dumps(ui))
    code, _, err = cli_in("run", "bad.json")
    assert code == cli.EXIT_INVALID and "NoSuchNode" in err
    assert not (tmp_path / "output").exists()


@pytest.mark.parametrize("content", [b"{oops", b"\x89PNG\r\n\x1a\nnot really", b"[]", b'{"a": 1}', b"\xff\xfe"])
def test_hostile_files_exit_3_with_a_message(cli_in, tmp_path: Path, content: bytes) -> None:
    (tmp_path / "x.json").write_bytes(content)
    code, _, err = cli_in("run", "x.json")
    assert code == cli.EXIT_INVALID and err.startswith("latent-ops:")


def test_validate_ok_and_missing_file(cli_in) -> None:
    assert cli_in("validate", str(BATCH))[0] == cli.EXIT_OK
    assert cli_in("validate", "absent.json")[0] == cli.EXIT_INVALID


def test_execution_error_exits_1_naming_the_node(tmp_path: Path) -> None:
    (tmp_path / "input").mkdir()
    (tmp_path / "input" / "junk.latent").write_bytes(b"not a safetensors file")
    api = {"1": {"class_type": "LoadLatent", "inputs": {"latent": "junk.latent"}},
           "2": {"class_type": "SaveLatent", "inputs": {"samples": ["1", 0], "filename_prefix": "x"}}}
    (tmp_path / "wf.json").write_text(json.dumps(api))
    proc = run_cli("run", "wf.json", "--json", cwd=tmp_path)
    assert proc.returncode == cli.EXIT_EXECUTION
    error = json.loads(proc.stdout)["error"]
    assert (error["type"], error["node_id"], error["class_type"]) == ("execution", "1", "LoadLatent")
    assert "junk.latent" in error["message"]
    assert not (tmp_path / "output").exists()


def test_execution_error_message_for_people(cli_in, tmp_path: Path) -> None:
    (tmp_path / "input").mkdir()
    (tmp_path / "input" / "junk.latent").write_bytes(b"not a safetensors file")
    api = {"1": {"class_type": "LoadLatent", "inputs": {"latent": "junk.latent"}},
           "2": {"class_type": "SaveLatent", "inputs": {"samples": ["1", 0], "filename_prefix": "x"}}}
    (tmp_path / "wf.json").write_text(json.dumps(api))
    code, _, err = cli_in("run", "wf.json")
    assert code == cli.EXIT_EXECUTION and "node 1 (LoadLatent)" in err and "Traceback" not in err
    code, _, err = cli_in("run", "wf.json", "--traceback")
    assert code == cli.EXIT_EXECUTION and "Traceback" in err


@pytest.mark.parametrize("bad_set", ["nonode.width=1", "1.nosuch=3", "novalue", "EmptyLatentImage.width=8",
                                     "1.width=[]", "1.width=0..99999"])
def test_bad_set_exits_2(cli_in, bad_set: str) -> None:
    code, _, err = cli_in("validate", str(BATCH), "--set", bad_set)
    assert code == cli.EXIT_USAGE, (bad_set, err)


def test_set_value_out_of_range_is_a_validation_error(cli_in) -> None:
    code, out, _ = cli_in("validate", str(BATCH), "--set", "Empty Latent Image.width=[8, 16]", "--json")
    assert code == cli.EXIT_INVALID
    (problem,) = json.loads(out)["error"]["problems"]
    assert (problem["node_id"], problem["received_value"], problem["set"]) == ("1", 8, {"1.width": 8})


def test_parse_values() -> None:
    assert cli.parse_values("0..3") == [0, 1, 2, 3] and cli.parse_values("2..0") == [2, 1, 0]
    assert cli.parse_values("[1, 2.5]") == [1, 2.5] and cli.parse_values("7") == [7]
    assert cli.parse_values("hello, world") == ["hello, world"] and cli.parse_values("true") == [True]


def test_bad_arguments_exit_2_and_help_exits_0(cli_in) -> None:
    assert cli_in("frobnicate")[0] == cli.EXIT_USAGE
    assert cli_in("--help")[0] == 0


def test_set_sweep_runs_a_batch_with_the_cache_reused(cli_in, tmp_path: Path) -> None:
    code, out, err = cli_in("run", str(BATCH), "--set", "Small latent.batch_size=1..3", "--set", '6.filename_prefix=["s"]',
                            "--json")
    assert code == 0, err
    runs = json.loads(out)["runs"]
    assert [r["set"] for r in runs] == [{"4.batch_size": b, "6.filename_prefix": "s"} for b in (1, 2, 3)]
    assert runs[0]["cached"] == [] and runs[1]["cached"] == ["1", "2", "3"] and runs[1]["executed"] == ["4", "5", "6"]
    names = [Path(r["files"][0]).name for r in runs]
    assert names == ["s_00001_.latent", "s_00002_.latent", "s_00003_.latent"]
    batches = [files.load_latent(tmp_path / r["files"][0])["samples"].shape[0] for r in runs]
    assert batches == [3, 4, 5]


def test_set_updates_png_metadata_of_ui_workflows(cli_in, tmp_path: Path) -> None:
    code, out, err = cli_in("run", str(IMAGE), "--input-dir", str(INPUT_DIR), "--set", 'Save.filename_prefix=["a", "b"]',
                            "--json")
    assert code == 0, err
    runs = json.loads(out)["runs"]
    assert runs[1]["cached"] == ["1"]
    for run, prefix in zip(runs, ("a", "b"), strict=True):
        chunks = files.read_png_text((tmp_path / run["files"][0]).read_bytes())
        assert json.loads(chunks["prompt"])["2"]["inputs"]["filename_prefix"] == prefix
        saver = next(n for n in json.loads(chunks["workflow"])["nodes"] if n["id"] == 2)
        assert saver["widgets_values"] == [prefix]


def test_nodes_json_has_object_info_shape(cli_in) -> None:
    code, out, _ = cli_in("nodes", "--json")
    assert code == 0
    info = json.loads(out)
    entry = info["EmptyLatentImage"]
    assert set(entry) >= {"input", "input_order", "output", "output_is_list", "output_name", "name", "display_name",
                          "description", "python_module", "category", "output_node"}
    assert entry["input"]["required"]["width"] == ["INT", {"default": 512, "min": 16, "max": 16384, "step": 8,
                                                           "tooltip": "The width of the latent images in pixels."}]
    assert entry["display_name"] == "Empty Latent Image" and entry["output"] == ["LATENT"]
    assert cli_in("nodes")[1].count("\n") == len(info)


def test_convert_api_to_ui_and_back(cli_in, tmp_path: Path) -> None:
    code, api, _ = cli_in("convert", str(BATCH), "--to", "api")
    assert code == 0
    (tmp_path / "api.json").write_text(api)
    assert cli_in("convert", "api.json", "--to", "ui", "-o", "ui.json")[0] == 0
    code, back, _ = cli_in("convert", "ui.json", "--to", "api")
    assert json.loads(back) == json.loads(api)
    code, out, _ = cli_in("run", "ui.json", "--json")
    assert code == 0 and json.loads(out)["runs"][0]["files"]


class _SelfInterrupting:
    RETURN_TYPES = ()
    FUNCTION = "op"
    OUTPUT_NODE = True
    CATEGORY = "t"
    steps_done: list = []

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {"steps": ("INT", {"default": 50})}}

    def op(self, steps: int) -> tuple:
        for i in range(steps):
            if i == 2:
                os.kill(os.getpid(), signal.SIGINT)  # as if the user pressed Ctrl-C
            progress.report(i + 1, steps)
            self.steps_done.append(i)
        return ()


def test_sigint_interrupts_cooperatively_with_exit_130(tmp_path: Path, capsys) -> None:
    (tmp_path / "wf.json").write_text(json.dumps({"1": {"class_type": "Stop", "inputs": {"steps": 50}}}))
    before = signal.getsignal(signal.SIGINT)  # SIG_IGN when the suite runs in the background (nohup, &)
    code = cli.main(["run", str(tmp_path / "wf.json"), "--out", str(tmp_path), "--json"], {"Stop": _SelfInterrupting})
    assert code == cli.EXIT_INTERRUPTED
    doc = json.loads(capsys.readouterr().out)
    assert doc["error"]["type"] == "interrupted" and doc["error"]["node_id"] == "1"
    assert len(_SelfInterrupting.steps_done) < 50
    assert signal.getsignal(signal.SIGINT) is before  # the run's handler is removed again


def test_models_dir_is_active_during_the_run(tmp_path: Path, capsys) -> None:
    (tmp_path / "models" / "vae").mkdir(parents=True)
    seen: list = []

    class Probe:
        RETURN_TYPES = ()
        FUNCTION = "op"
        OUTPUT_NODE = True
        CATEGORY = "t"

        @classmethod
        def INPUT_TYPES(cls) -> dict:
            return {"required": {}}

        def op(self) -> tuple:
            seen.append(model_paths.folders("vae"))
            return ()

    (tmp_path / "wf.json").write_text(json.dumps({"1": {"class_type": "Probe", "inputs": {}}}))
    code = cli.main(["run", str(tmp_path / "wf.json"), "--models-dir", str(tmp_path / "models")], {"Probe": Probe})
    assert code == 0 and seen == [[tmp_path / "models" / "vae"]]


def test_train_default_delegates_to_the_training_script(capsys) -> None:
    with pytest.raises(SystemExit) as stop:
        cli.main(["train-default", "--help"], {})
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert "--minutes-vae" in out and "--tiny" in out
