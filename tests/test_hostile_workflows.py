"""Hostile workflows through the ``latent-ops`` command line (issue 13).

Each case runs the installed console script in a subprocess whose address space is capped at
the command line's own peak for a small run plus 2 GiB (``resource.setrlimit(RLIMIT_AS)``; the
peak is measured once per session), from a temporary working directory, and asserts the clean
outcome: the exit code, one message line naming the node, input or file, no traceback, nothing
written outside the output folder and no half-written or lost file. The reproducers are built
here and are small (the PNG bomb is 3 MB on disk and would inflate to 3 GiB).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest

from latent_ops.media import files
from latent_ops.workflow import Engine, ExecutionError

HEADROOM = 2 * 2**30
LATENT = {"1": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
          "2": {"class_type": "SaveLatent", "inputs": {"samples": ["1", 0], "filename_prefix": "wc"}}}


def _script() -> list[str]:
    exe = Path(sys.executable).parent / "latent-ops"
    found = str(exe) if exe.exists() else shutil.which("latent-ops")
    return [found] if found else [sys.executable, "-c", "from latent_ops_nodes.cli import main; main()"]


_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MALLOC_ARENA_MAX": "2", "HF_HUB_OFFLINE": "1"}


@pytest.fixture(scope="session")
def address_cap(tmp_path_factory) -> int:
    """The CLI's peak address space for a small ``run``, plus :data:`HEADROOM`."""
    folder = tmp_path_factory.mktemp("baseline")
    (folder / "wf.json").write_text(json.dumps(LATENT))
    probe = ("import sys\nfrom latent_ops_nodes.cli import main\nsys.argv = ['latent-ops', 'run', 'wf.json', "
             "'--no-progress']\ntry:\n    main()\nexcept SystemExit:\n    pass\n"
             "print(next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmPeak')))")
    proc = subprocess.run([sys.executable, "-c", probe], cwd=folder, capture_output=True, text=True, env=_ENV,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    return int(proc.stdout.split()[-1]) * 1024 + HEADROOM


@pytest.fixture
def cli(address_cap, tmp_path):
    """``cli(*args, timeout=...)`` runs ``latent-ops`` capped, from ``tmp_path``; returns the process."""

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (address_cap, address_cap))

    def call(*args: str, timeout: float = 120, start_only: bool = False) -> subprocess.CompletedProcess | subprocess.Popen:
        command = [*_script(), *args]
        if start_only:
            return subprocess.Popen(command, cwd=tmp_path, env=_ENV, preexec_fn=cap, text=True,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        return subprocess.run(command, cwd=tmp_path, env=_ENV, preexec_fn=cap, capture_output=True, text=True,
                              timeout=timeout)

    return call


def clean_refusal(proc: subprocess.CompletedProcess, code: int, *needles: str) -> str:
    """Assert exit ``code`` and one stderr line without a traceback that holds every needle (a
    failed node's message is followed by the hint to use ``--traceback``)."""
    assert proc.returncode == code, (proc.returncode, proc.stderr[-3000:])
    lines = [line for line in proc.stderr.strip().splitlines() if line != "(run with --traceback for details)"]
    assert "Traceback" not in proc.stderr and len(lines) == 1, proc.stderr[-3000:]
    for needle in needles:
        assert needle in lines[0], lines[0][:3000]
    return lines[0]


def only(tmp_path: Path, *names: str) -> None:
    """Nothing but ``names`` (and the output folder) appeared in the working directory."""
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "output") == sorted(names)


def png_chunks(*texts: tuple[bytes, bytes]) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")

    ihdr = (1).to_bytes(4, "big") * 2 + bytes([8, 0, 0, 0, 0])
    body = b"".join(chunk(b"zTXt", key + b"\0\0" + payload) for key, payload in texts)
    return (files.PNG_SIGNATURE + chunk(b"IHDR", ihdr) + body + chunk(b"IDAT", zlib.compress(b"\0\0"))
            + chunk(b"IEND", b""))


# ----------------------------------------------------------------------------- defect 1
def test_a_png_whose_text_inflates_to_gigabytes_is_refused(cli, tmp_path) -> None:
    forty, sixty_four = zlib.compress(b"\0" * (40 << 20), 9), zlib.compress(b"\0" * (64 << 20), 9)
    texts = [(b"workflow", forty), (b"prompt", forty)] + [(b"k%d" % i, sixty_four) for i in range(46)]
    (tmp_path / "bomb.png").write_bytes(png_chunks(*texts))
    assert (tmp_path / "bomb.png").stat().st_size < 4_000_000
    for command in (["validate", "bomb.png"], ["run", "bomb.png"], ["convert", "bomb.png", "--to", "api"]):
        clean_refusal(cli(*command), 3, "bomb.png", "PNG text chunks hold more than 67108864 bytes")
    only(tmp_path, "bomb.png")


# ----------------------------------------------------------------------------- defect 2 (engine side)
class PanicException(BaseException):
    """Like pyo3's ``PanicException``: a BaseException, not an Exception."""


class Panics:
    RETURN_TYPES = ()
    OUTPUT_NODE = True
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {}}

    def run(self) -> dict:
        raise PanicException("called `Result::unwrap()` on an `Err` value: allocation failed")


def test_a_node_raising_a_base_exception_is_a_node_error() -> None:
    with pytest.raises(ExecutionError, match=r"node 7 \(Panics\) failed: PanicException: called") as err:
        Engine({"Panics": Panics}).run({"7": {"class_type": "Panics", "inputs": {}}})
    assert err.value.node_id == "7" and isinstance(err.value.__cause__, PanicException)


# ----------------------------------------------------------------------------- defect 4
def test_concurrent_runs_with_one_prefix_write_every_file(cli, tmp_path) -> None:
    (tmp_path / "wf.json").write_text(json.dumps(LATENT))
    out = tmp_path / "output"
    out.mkdir()
    stale = out / ".tmp-k1ll3d_9.latent"  # left by a run killed with SIGKILL an hour ago
    stale.write_bytes(b"half")
    os.utime(stale, (time.time() - 3600,) * 2)
    runs = [cli("run", "wf.json", "--no-progress", "--json", "--set", f"1.width={64 + 8 * r}",
                "--set", "1.batch_size=1..40", start_only=True) for r in range(3)]
    outcomes = [(proc.wait(180), *proc.communicate()) for proc in runs]
    assert [code for code, _, _ in outcomes] == [0, 0, 0], [err[-2000:] for _, _, err in outcomes]
    written = [f for _, out_text, _ in outcomes for run in json.loads(out_text)["runs"] for f in run["files"]]
    assert len(written) == len(set(written)) == 120
    names = sorted(p.name for p in out.iterdir())
    assert names == [f"wc_{n:05}_.latent" for n in range(1, 121)]  # the stale temp file is gone, nothing else
    widths = sorted(int(files.load_latent(out / n)["samples"].shape[-1]) * 8 for n in names)
    assert widths == sorted([64] * 40 + [72] * 40 + [80] * 40)


# ----------------------------------------------------------------------------- defect 5
def nested(depth: int) -> object:
    value: object = 1
    for _ in range(depth):
        value = [value]
    return value


def test_a_deeply_nested_value_is_refused_at_load(cli, tmp_path) -> None:
    workflow = json.loads(json.dumps(LATENT))
    workflow["1"]["inputs"]["junk"] = nested(500)
    (tmp_path / "deep.json").write_text(json.dumps(workflow))
    for extra in ([], ["--set", "1.width=72"]):
        clean_refusal(cli("validate", "deep.json", *extra), 3, "deep.json", "node 1 input 'junk'",
                      "nested more than 64 levels deep")
    proc = cli("run", "deep.json", "--json")
    assert proc.returncode == 3 and proc.stderr == "", proc.stderr[-2000:]
    assert "node 1 input 'junk' is nested more than 64" in json.loads(proc.stdout)["error"]["message"]
    (tmp_path / "wf.json").write_text(json.dumps(LATENT))
    clean_refusal(cli("validate", "wf.json", "--set", f"2.filename_prefix={json.dumps(nested(500))}"), 2,
                  "--set value", "nested more than 64 levels deep")
    only(tmp_path, "deep.json", "wf.json")


# ----------------------------------------------------------------------------- defect 12
def test_devices_pipes_and_folders_are_not_read_as_workflows(cli, tmp_path) -> None:
    os.mkfifo(tmp_path / "pipe.json")
    (tmp_path / "folder.json").mkdir()
    for name in ("/dev/zero", "pipe.json", "folder.json"):
        clean_refusal(cli("validate", name, timeout=60), 3, name, "not a regular file")


def test_a_non_ascii_digit_node_id_is_an_id_like_any_other(cli, tmp_path) -> None:
    workflow = {"²": LATENT["1"], "2": {**LATENT["2"], "inputs": {**LATENT["2"]["inputs"], "samples": ["²", 0]}}}
    (tmp_path / "wf.json").write_text(json.dumps(workflow))
    proc = cli("validate", "wf.json")
    assert proc.returncode == 0 and "valid (2 nodes)" in proc.stdout, proc.stderr


def test_convert_refuses_to_overwrite_its_input(cli, tmp_path) -> None:
    text = json.dumps(LATENT)
    (tmp_path / "wf.json").write_text(text)
    clean_refusal(cli("convert", "wf.json", "--to", "ui", "-o", "wf.json"), 2, "is the input workflow")
    assert (tmp_path / "wf.json").read_text() == text
    assert cli("convert", "wf.json", "--to", "ui", "-o", "ui.json").returncode == 0
    only(tmp_path, "wf.json", "ui.json")


def test_huge_values_are_not_echoed(cli, tmp_path) -> None:
    workflow = json.loads(json.dumps(LATENT))
    workflow["2"]["inputs"]["filename_prefix"] = "a" * 5_000_000
    (tmp_path / "prefix.json").write_text(json.dumps(workflow))
    line = clean_refusal(cli("run", "prefix.json", "--no-progress"), 1, "node 2 (SaveLatent)",
                         "filename_prefix 'aaaa", "5000000 characters long")
    assert len(line) < 500
    workflow["2"]["inputs"]["filename_prefix"] = "ok"
    workflow["x" * 1_000_000] = LATENT["1"]
    workflow["3"] = {"class_type": "NoSuchNode" * 100_000, "inputs": {"v": ["y" * 1_000_000, 0]}}
    (tmp_path / "ids.json").write_text(json.dumps(workflow))
    proc = cli("validate", "ids.json")
    assert proc.returncode == 3 and len(proc.stderr) < 2000 and "Traceback" not in proc.stderr, proc.stderr[:3000]
    assert "its id is 1000000 characters long; at most 200" in proc.stderr
    assert "node 3: unknown node type 'NoSuchNodeNoSuchNode" in proc.stderr
    assert not (tmp_path / "output").exists() or not any((tmp_path / "output").iterdir())


@pytest.fixture(scope="module")
def start_up_seconds(tmp_path_factory) -> float:
    """How long ``latent-ops validate`` takes here, end to end (mostly importing torch)."""
    folder = tmp_path_factory.mktemp("start")
    (folder / "wf.json").write_text(json.dumps(LATENT))
    began = time.monotonic()
    subprocess.run([*_script(), "validate", "wf.json"], cwd=folder, env=_ENV, capture_output=True, timeout=120)
    return time.monotonic() - began


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
@pytest.mark.parametrize("fraction", [0.1, 0.25, 0.45])  # the imports are most of it
def test_a_signal_during_start_up_exits_at_once_without_a_traceback(
        cli, tmp_path, start_up_seconds: float, fraction: float, signum: int, code: int) -> None:
    """A signal while torch is being imported must not raise into its C++ initialisers (that
    aborted the process with SIGABRT): the process ends at once with the signal's exit code."""
    (tmp_path / "wf.json").write_text(json.dumps(LATENT))
    proc = cli("validate", "wf.json", start_only=True)
    time.sleep(fraction * start_up_seconds)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code and "Traceback" not in err, (proc.returncode, err[-2000:])


def ui_graph(save_inputs: list[dict], links: list[list], extra_nodes: tuple[dict, ...] = (),
             prefix: str = "wc") -> dict:
    empty = {"id": 1, "type": "EmptyLatentImage", "mode": 0, "inputs": [],
             "outputs": [{"name": "LATENT", "type": "LATENT", "links": [7]}], "widgets_values": [64, 64, 1]}
    save = {"id": 2, "type": "SaveLatent", "mode": 0, "inputs": save_inputs, "outputs": [], "widgets_values": [prefix]}
    return {"last_node_id": 9, "last_link_id": 9, "nodes": [empty, save, *extra_nodes], "links": links,
            "groups": [], "config": {}, "extra": {}, "version": 0.4}


SAMPLES = {"name": "samples", "type": "LATENT", "link": 7}


@pytest.mark.parametrize(("links", "needle"), [
    ([], "uses link 7, which is not in the workflow's links"),
    ([[7, 9, 0, 2, 0, "LATENT"]], "uses link 7 from node '9', which does not exist"),
])
def test_a_broken_ui_link_is_named(cli, tmp_path, links: list, needle: str) -> None:
    (tmp_path / "ui.json").write_text(json.dumps(ui_graph([SAMPLES], links)))
    clean_refusal(cli("validate", "ui.json"), 3, "broken link", "node 2 (SaveLatent) input 'samples'", needle)


def test_duplicate_ui_node_ids_are_refused(cli, tmp_path) -> None:
    twin = {"id": 2, "type": "EmptyLatentImage", "mode": 0, "inputs": [], "outputs": [], "widgets_values": [8, 8, 1]}
    graph = ui_graph([SAMPLES], [[7, 1, 0, 2, 0, "LATENT"]], (twin,))
    (tmp_path / "ui.json").write_text(json.dumps(graph))
    clean_refusal(cli("validate", "ui.json"), 3, "node id 2 is used by two nodes ('SaveLatent' and 'EmptyLatentImage')")


def test_date_and_widget_fields_in_a_ui_prefix(cli, tmp_path) -> None:
    graph = ui_graph([SAMPLES], [[7, 1, 0, 2, 0, "LATENT"]], prefix="%date:yyyy%/w%Empty Latent Image.width%")
    (tmp_path / "ui.json").write_text(json.dumps(graph))
    year = time.strftime("%Y")
    proc = cli("run", "ui.json", "--no-progress", "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout)["runs"][0]["files"] in ([f"output/{year}/w64_00001_.latent"],
                                                           [f"output/{time.strftime('%Y')}/w64_00001_.latent"])


def test_saving_a_768_mib_latent_needs_no_second_copy(cli, tmp_path) -> None:
    # Building the file in memory needed the latent twice more (3 x 768 MiB > the 2 GiB headroom).
    workflow = json.loads(json.dumps(LATENT))
    workflow["1"]["inputs"].update(width=16384, height=16384, batch_size=12)
    (tmp_path / "big.json").write_text(json.dumps(workflow))
    proc = cli("run", "big.json", "--no-progress")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert [p.name for p in (tmp_path / "output").iterdir()] == ["wc_00001_.latent"]
    from safetensors import safe_open

    with safe_open(str(tmp_path / "output" / "wc_00001_.latent"), "pt") as fh:
        assert fh.get_slice("latent_tensor").get_shape() == [12, 4, 2048, 2048]
        assert json.loads(fh.metadata()["prompt"])["1"]["inputs"]["batch_size"] == 12


def test_sigterm_while_a_file_is_written_leaves_no_temporary_file(cli, tmp_path) -> None:
    workflow = json.loads(json.dumps(LATENT))
    workflow["1"]["inputs"].update(width=16384, height=16384, batch_size=12)
    (tmp_path / "big.json").write_text(json.dumps(workflow))
    proc = cli("run", "big.json", "--no-progress", start_only=True)
    out, deadline = tmp_path / "output", time.monotonic() + 120
    while proc.poll() is None and not list(out.glob(".tmp-*")) and time.monotonic() < deadline:
        time.sleep(0.005)
    assert proc.poll() is None, "the run ended before its file was being written"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and "Traceback" not in err, (proc.returncode, err[-2000:])
    assert [p.name for p in out.iterdir()] in ([], ["wc_00001_.latent"])  # nothing half-written
