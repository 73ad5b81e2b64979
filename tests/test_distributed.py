"""Distributed sweeps without Ray: the worker, the driver's file placement and manifest, and
``run_sweep(address=None)`` (the same driver with one in-process worker) against a plain Engine
loop (toy registry, no models). The Ray side is tests/test_ray_sweep.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

from latent_ops import devices
from latent_ops.errors import FileAccessError
from latent_ops.media import files
from latent_ops.workflow import Engine
from latent_ops.workflow.distributed import input_files, run_sweep
from latent_ops.workflow.outputs import MANIFEST, Manifest, place, prompt_key
from latent_ops.workflow.sweep_worker import (
    ProducedFile,
    SweepEngine,
    SweepWorker,
    Task,
    collect,
    local_outputs,
)


class Num:
    RETURN_TYPES = ("NUM",)
    FUNCTION = "op"
    CATEGORY = "t"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {"value": ("INT", {"default": 0, "min": -1000, "max": 1000})}}

    def op(self, value: int) -> tuple:
        if value == 13:
            raise ValueError("Num: 13 is unlucky")
        return (value,)


class SaveNum:
    """Writes ``{prefix}_{counter}_.txt`` holding the value and the prompt, like SaveImage's metadata."""

    RETURN_TYPES = ()
    FUNCTION = "op"
    OUTPUT_NODE = True
    CATEGORY = "t"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {"x": ("NUM",), "filename_prefix": ("STRING", {"default": "num"})},
                "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}}

    def op(self, x: int, filename_prefix: str, prompt: dict | None = None, extra_pnginfo: dict | None = None) -> dict:
        target = files.output_path(filename_prefix, "txt")
        files.write_atomic(target.path, json.dumps([x, prompt, extra_pnginfo], sort_keys=True).encode())
        return {"ui": {"texts": [target.ui()]}}


class Preview(SaveNum):
    def op(self, x: int, filename_prefix: str, prompt: dict | None = None, extra_pnginfo: dict | None = None) -> dict:
        target = files.output_path(filename_prefix, "txt", temp=True)
        files.write_atomic(target.path, str(x).encode())
        return {"ui": {"texts": [target.ui()]}}


REGISTRY = {"Num": Num, "SaveNum": SaveNum, "Preview": Preview}


def prompt_for(value: int, fixed: int = 5) -> dict:
    """Two branches: node 3 saves the swept value, node 4 a fixed one (cached after the first prompt)."""
    return {"1": {"class_type": "Num", "inputs": {"value": value}},
            "2": {"class_type": "Num", "inputs": {"value": fixed}},
            "3": {"class_type": "SaveNum", "inputs": {"x": ["1", 0], "filename_prefix": "sweep/swept"}},
            "4": {"class_type": "SaveNum", "inputs": {"x": ["2", 0], "filename_prefix": "sweep/fixed"}},
            "5": {"class_type": "Preview", "inputs": {"x": ["1", 0], "filename_prefix": "pre"}}}


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != MANIFEST}


def local_run(prompts: list[dict], out: Path, temp: Path) -> dict[str, bytes]:
    """The reference: one Engine, prompts in order (what ``latent-ops run`` does)."""
    engine = Engine(REGISTRY)
    with files.using(output_dir=out, temp_dir=temp):
        for prompt in prompts:
            engine.run(prompt, extra_pnginfo={"workflow": {"v": prompt["1"]["inputs"]["value"]}})
    return tree(out)


def runs(values: list[int]) -> list[tuple[dict, dict]]:
    return [(prompt_for(v), {"v": v}) for v in values]


# ----------------------------------------------------------------------------- planning
def test_local_outputs_follows_the_engine_cache() -> None:
    sigs = {"1": b"a", "2": b"b", "3": b"c", "4": b"d"}
    assert local_outputs(sigs, ["3", "4"], previous=set()) == ("3", "4")
    assert local_outputs(sigs, ["3", "4"], previous={b"d"}) == ("3",)  # 4 unchanged since the prompt before
    assert local_outputs({"1": b"a", "3": b"c", "4": b"c"}, ["3", "4"], set()) == ("3",)  # identical nodes run once
    assert local_outputs(sigs, [], set()) == ()


def test_signatures_match_between_prompts_only_where_inputs_match() -> None:
    engine = SweepEngine(REGISTRY)
    (a, outputs), (b, _) = engine.plan(prompt_for(1)), engine.plan(prompt_for(2))
    assert set(a) == {"1", "2", "3", "4", "5"} and sorted(outputs) == ["3", "4", "5"]
    assert list(a).index("1") < list(a).index("3") and list(a).index("2") < list(a).index("4")  # parents first
    assert a["4"] == b["4"] and a["2"] == b["2"]
    assert a["3"] != b["3"] and a["1"] != b["1"] and a["5"] != b["5"]


@pytest.mark.parametrize("keyed", ["right keys", "no keys", "wrong keys"])
def test_worker_reruns_requested_outputs_even_when_cached(tmp_path: Path, keyed: str) -> None:
    sigs, _ = SweepEngine(REGISTRY).plan(prompt_for(1))
    keys = {"right keys": (sigs["4"],), "no keys": (), "wrong keys": (b"not a key",)}[keyed]
    worker = SweepWorker(REGISTRY, input_dir=tmp_path)
    try:
        first = worker.run(Task(0, prompt_for(1), None, ("3", "4")))
        again = worker.run(Task(1, prompt_for(1), None, ("4",), keys=keys))
    finally:
        worker.close()
    assert [f.name for f in first.files] == ["sweep/fixed_00001_.txt", "sweep/swept_00001_.txt"]
    assert [f.name for f in again.files] == ["sweep/fixed_00001_.txt"]  # ran although cached, in a fresh folder
    assert again.executed == ("4",) and first.error is None and worker.info()["pid"] > 0
    assert again.cpu > 0 and again.seconds >= 0


def test_worker_reports_a_failing_prompt_and_goes_on(tmp_path: Path) -> None:
    worker = SweepWorker(REGISTRY, input_dir=tmp_path)
    try:
        bad = worker.run(Task(0, prompt_for(13), None, ("3",)))
        good = worker.run(Task(1, prompt_for(2), None, ("3",)))
    finally:
        worker.close()
    assert bad.error["type"] == "execution" and bad.error["node_id"] == "1"
    assert bad.error["exception_message"] == "Num: 13 is unlucky" and "ValueError" in bad.error["traceback"]
    assert bad.files == () and good.error is None and len(good.files) == 1


def test_collect_orders_by_counter(tmp_path: Path) -> None:
    for name in ("a_00010_.png", "a_00002_.png", "b_00001_.png", ".tmp-x.png", "sub/a_00001_.png"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(name.encode())
    assert [f.name for f in collect(tmp_path, "output")] == ["a_00002_.png", "a_00010_.png", "b_00001_.png",
                                                             "sub/a_00001_.png"]


# ----------------------------------------------------------------------------- placing and the manifest
def test_place_takes_the_next_free_counter(tmp_path: Path) -> None:
    (tmp_path / "out" / "sub").mkdir(parents=True)
    (tmp_path / "out" / "sub" / "x_00004_.png").write_bytes(b"old")
    produced = [ProducedFile("output", "sub/x_00001_.png", b"1"), ProducedFile("output", "sub/x_00002_.png", b"2"),
                ProducedFile("output", "plain.bin", b"p"), ProducedFile("temp", "t_00001_.png", b"t"),
                ProducedFile("output", "dir/_00001_.png", b"d")]
    with files.using(output_dir=tmp_path / "out", temp_dir=tmp_path / "tmp"):
        placed = place(produced)
        with pytest.raises(FileExistsError):
            place([ProducedFile("output", "plain.bin", b"again")])
        with pytest.raises(FileAccessError):
            place([ProducedFile("output", "../escape_00001_.png", b"x")])
        (tmp_path / "outside").mkdir()
        (tmp_path / "out" / "link").symlink_to(tmp_path / "outside")
        for name in ("link/new/kept.bin", "link/new/c_00001_.png"):
            with pytest.raises(FileAccessError):
                place([ProducedFile("output", name, b"x")])
        assert list((tmp_path / "outside").iterdir()) == []  # no folder made through the link
    assert [(t.subfolder, t.filename, t.type) for t in placed] == [
        ("sub", "x_00005_.png", "output"), ("sub", "x_00006_.png", "output"), ("", "plain.bin", "output"),
        ("", "t_00001_.png", "temp"), ("dir", "_00001_.png", "output")]
    assert (tmp_path / "out/sub/x_00006_.png").read_bytes() == b"2" and (tmp_path / "tmp/t_00001_.png").is_file()
    assert (tmp_path / "out/plain.bin").read_bytes() == b"p" and not (tmp_path / "escape_00001_.png").exists()


def test_manifest_records_and_ignores_a_torn_line(tmp_path: Path) -> None:
    manifest = Manifest(tmp_path)
    (tmp_path / "a.png").write_bytes(b"a")
    manifest.append(0, "k0", [files.OutputFile(tmp_path / "a.png", "a.png", "", "output")])
    manifest.append(1, "k1", [files.OutputFile(tmp_path / "gone.png", "gone.png", "", "output")])
    with open(manifest.path, "a") as fh:
        fh.write('{"index": 2, "key": "k2", "fi')  # a write cut short
    records = manifest.read()
    assert sorted(records) == [0, 1] and records[0]["files"] == [{"type": "output", "path": "a.png"}]
    assert manifest.finished(records, 0, "k0")
    assert not manifest.finished(records, 0, "other key")  # the prompt changed
    assert not manifest.finished(records, 1, "k1")  # its file was deleted
    assert not manifest.finished(records, 2, "k2")
    assert Manifest(tmp_path / "none").read() == {}


def test_prompt_key_depends_on_prompt_and_workflow() -> None:
    assert prompt_key(prompt_for(1), {"v": 1}) == prompt_key(prompt_for(1), {"v": 1})
    assert prompt_key(prompt_for(1), {"v": 1}) != prompt_key(prompt_for(1), {"v": 2})
    assert prompt_key(prompt_for(1), None) != prompt_key(prompt_for(2), None)


def test_input_files_finds_the_named_inputs(tmp_path: Path) -> None:
    (tmp_path / "pic.png").write_bytes(b"png")
    prompts = [{"1": {"class_type": "X", "inputs": {"image": "pic.png", "other": "not a file", "n": 3}}}]
    with files.using(input_dir=tmp_path):
        assert input_files(prompts) == {"pic.png": b"png"}


# ----------------------------------------------------------------------------- the driver, in process
def test_in_process_sweep_writes_what_a_local_run_writes(tmp_path: Path) -> None:
    values = [1, 2, 2, 3, 1]
    expected = local_run([p for p, _ in runs(values)], tmp_path / "local", tmp_path / "ltemp")
    seen = []
    report = run_sweep(runs(values), REGISTRY, address=None, out_dir=tmp_path / "dist", temp_dir=tmp_path / "dtemp",
                       on_result=lambda r: seen.append(r.index))
    assert tree(tmp_path / "dist") == expected
    assert tree(tmp_path / "dtemp") == tree(tmp_path / "ltemp")
    assert sorted(expected) == ["sweep/fixed_00001_.txt", *(f"sweep/swept_0000{i}_.txt" for i in (1, 2, 3, 4))]
    assert seen == [0, 1, 2, 3, 4] and report.ok and report.succeeded == 5 and report.first_result > 0
    where = devices.describe(devices.compute_device())
    assert report.workers == [{"worker": 0, "pid": os.getpid(), "device": where, "threads": torch.get_num_threads()}]
    assert report.to_dict()["workers"] == report.workers
    assert report.prompts[2].files == [] and {"type": "output", "path": "sweep/swept_00001_.txt"} in report.prompts[0].files


def test_a_failing_prompt_does_not_stop_the_others(tmp_path: Path) -> None:
    report = run_sweep(runs([1, 13, 2]), REGISTRY, address=None, out_dir=tmp_path, temp_dir=tmp_path / "t")
    assert [p.status for p in report.prompts] == ["ok", "failed", "ok"]
    assert report.failed == 1 and report.succeeded == 2 and not report.ok
    assert report.prompts[1].error["node_id"] == "1" and "13 is unlucky" in report.prompts[1].error["message"]
    assert sorted(tree(tmp_path / "sweep")) == ["fixed_00001_.txt", "swept_00001_.txt", "swept_00002_.txt"]
    assert len(Manifest(tmp_path).read()) == 2


def test_resume_writes_only_what_is_missing(tmp_path: Path) -> None:
    values = [1, 2, 3, 4]
    expected = local_run([p for p, _ in runs(values)], tmp_path / "local", tmp_path / "ltemp")
    out = tmp_path / "dist"
    stop = threading.Event()

    def interrupt_after_two(report: object) -> None:
        if report.index == 1:
            stop.set()

    first = run_sweep(runs(values), REGISTRY, address=None, out_dir=out, temp_dir=tmp_path / "t", stop=stop,
                      on_result=interrupt_after_two)
    assert first.interrupted and first.succeeded == 2 and not first.ok
    assert sorted(tree(out)) == ["sweep/fixed_00001_.txt", "sweep/swept_00001_.txt", "sweep/swept_00002_.txt"]
    second = run_sweep(runs(values), REGISTRY, address=None, out_dir=out, temp_dir=tmp_path / "t", resume=True)
    assert [p.status for p in second.prompts] == ["skipped", "skipped", "ok", "ok"] and second.ok
    assert tree(out) == expected  # same names and bytes as one uninterrupted local run
    third = run_sweep(runs(values), REGISTRY, address=None, out_dir=out, temp_dir=tmp_path / "t", resume=True)
    assert third.skipped == 4 and tree(out) == expected
    (out / "sweep" / "swept_00004_.txt").unlink()  # a deleted output is made again
    fourth = run_sweep(runs(values), REGISTRY, address=None, out_dir=out, temp_dir=tmp_path / "t", resume=True)
    assert [p.status for p in fourth.prompts] == ["skipped", "skipped", "skipped", "ok"]
    assert [f for f in fourth.prompts[3].files if f["type"] == "output"] == [
        {"type": "output", "path": "sweep/swept_00004_.txt"}]


def test_outputs_skipped_after_a_failed_prompt_are_run_again(tmp_path: Path) -> None:
    # prompt 1 was planned to skip the fixed output (unchanged since prompt 0), but prompt 0 failed
    # before writing it: the driver runs prompt 1 again with that output, so it is written once.
    report = run_sweep(runs([13, 2, 3]), REGISTRY, address=None, out_dir=tmp_path, temp_dir=tmp_path / "t")
    assert [p.status for p in report.prompts] == ["failed", "ok", "ok"]
    assert sorted(tree(tmp_path / "sweep")) == ["fixed_00001_.txt", "swept_00001_.txt", "swept_00002_.txt"]
    assert {"type": "output", "path": "sweep/fixed_00001_.txt"} in report.prompts[1].files


def test_the_cli_and_the_library_do_not_import_ray() -> None:
    code = ("import sys, latent_ops.workflow, latent_ops.workflow.cli, latent_ops.workflow.distributed\n"
            "import latent_ops_nodes.cli\n"
            "assert latent_ops.workflow.run_sweep is latent_ops.workflow.distributed.run_sweep\n"
            "print(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_an_unavailable_device_fails_before_any_prompt(tmp_path: Path) -> None:
    with pytest.raises(devices.DeviceError, match="cuda:99"):
        run_sweep(runs([1]), REGISTRY, address=None, out_dir=tmp_path, device="cuda:99")
    assert not (tmp_path / "sweep").exists()
