"""``latent-ops run --ray``: sweeps of the example workflows on Ray give the files a local run gives.

Ray stays on this machine's loopback. Ray replaces 127.0.0.1 by the machine's network address
(``resolve_ip_for_localhost``), so the nodes here use another loopback address, 127.0.0.2, which it
keeps. Token authentication (Ray >= 2.5x) is turned off with ``RAY_AUTH_MODE=disabled`` so that a
second ``ray start`` can join. Every process a test starts is stopped by the test, by id.
Workers use 1 torch thread, so the references are local runs at ``OMP_NUM_THREADS=1``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[ray]'): the --ray tests are skipped")

from latent_ops.workflow.outputs import MANIFEST, Manifest  # noqa: E402

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the loopback cluster needs Linux (127.0.0.2, /proc)")

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
LOOPBACK = "127.0.0.2"
TXT2IMG = str(ROOT / "workflows" / "txt2img_samplers.json")
WALK = str(ROOT / "workflows" / "walk_glyph_to_emoji.json")
INPUTS = str(ROOT / "workflows" / "input")
SEEDS = 8
WALK_LABELS = "B,,,,,,,,grin,,,,,,,,7,,,,,,,,cat,,,,,,,"
WALK_SETS = ["--set", 'Keyframe 3.image=["glyph_7.png", "emoji_cat.png", "glyph_A.png"]']
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0",
       "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def cli(*args: str) -> list[str]:
    return [str(BIN / "latent-ops"), "run", *args, "--input-dir", INPUTS, "--no-progress"]


def run(args: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(args, env=ENV, capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def tree(root: Path) -> dict[str, bytes]:
    """Every file below ``root`` except the sweep manifest."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != MANIFEST}


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def session_pids(sid: int) -> list[int]:
    """Processes of session ``sid`` (a ``ray start`` we started with its own session)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[3]) == sid:
                pids.append(int(entry))
    return pids


def stop_sessions(procs: list[subprocess.Popen]) -> None:
    """Stop everything the given ``ray start --block`` processes started (their sessions), by pid."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = [pid for proc in procs for pid in session_pids(proc.pid)]
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 5
        while pids and time.monotonic() < deadline and any(session_pids(p.pid) for p in procs):
            for proc in procs:
                proc.poll()
            time.sleep(0.1)
    for proc in procs:
        proc.poll()


def start_node(args: list[str], log: Path) -> subprocess.Popen:
    with open(log, "w") as fh:
        return subprocess.Popen([str(BIN / "ray"), "start", f"--node-ip-address={LOOPBACK}", "--num-cpus=1",
                                 "--disable-usage-stats", "--block", *args], env=ENV, stdout=fh,
                                stderr=subprocess.STDOUT, start_new_session=True)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """A head and a second node on loopback, 1 CPU each; the second has its own resource."""
    logs = tmp_path_factory.mktemp("ray-logs")
    port = free_port()
    temp = Path(f"/tmp/lo-ray-{os.getpid()}")  # short: Ray's socket paths must stay under 107 bytes
    procs = [start_node(["--head", f"--port={port}", "--include-dashboard=false", f"--temp-dir={temp}"],
                        logs / "head.log")]
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                socket.create_connection((LOOPBACK, port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline and procs[0].poll() is None, (logs / "head.log").read_text()
                time.sleep(0.2)
        procs.append(start_node([f"--address={LOOPBACK}:{port}", '--resources={"second_node": 1}'], logs / "node.log"))
        probe = ("import json, time, ray\n"
                 f"ray.init(address='{LOOPBACK}:{port}', _node_ip_address='{LOOPBACK}', logging_level='error')\n"
                 "for _ in range(300):\n"
                 "    nodes = [n for n in ray.nodes() if n['Alive']]\n"
                 "    if len(nodes) == 2: break\n"
                 "    time.sleep(0.2)\n"
                 "print(json.dumps([[n['NodeID'], n['NodeManagerAddress'], 'second_node' in n['Resources']] "
                 "for n in nodes]))\n")
        nodes = json.loads(run([sys.executable, "-c", probe], timeout=120).stdout.strip().splitlines()[-1])
        assert len(nodes) == 2 and {address for _, address, _ in nodes} == {LOOPBACK}, nodes
        yield {"address": f"{LOOPBACK}:{port}", "nodes": {nid: second for nid, _, second in nodes}, "procs": procs}
    finally:
        stop_sessions(procs)
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Local runs (one process, 1 torch thread) of the sweeps the tests run on Ray."""
    base = tmp_path_factory.mktemp("reference")
    procs = [subprocess.Popen(cli(TXT2IMG, "--out", str(base / "txt2img"), "--set", f"Sampler A.seed=1..{SEEDS}"),
                              env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT),
             subprocess.Popen(cli(WALK, "--out", str(base / "walk"), *WALK_SETS),  # both at once: 1 thread each
                              env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT)]
    for proc in procs:
        _, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stderr[-2000:]
    return {"txt2img": base / "txt2img", "walk": base / "walk"}


def first_prompts(files: dict[str, bytes], count: int) -> dict[str, bytes]:
    """The files of the first ``count`` prompts of the txt2img seed sweep."""
    keep = {f"latent_ops/txt2img_prompts_{i:05}_.png" for i in range(1, count + 1)} | {
        "latent_ops/txt2img_samplers_00001_.png"}
    return {name: data for name, data in files.items() if name in keep}


def test_local_ray_sweep_writes_the_local_files(tmp_path: Path, reference: dict[str, Path]) -> None:
    out = tmp_path / "out"
    done = run(cli(TXT2IMG, "--out", str(out), "--set", "Sampler A.seed=1..4", "--ray", "local",
                   "--ray-workers", "2", "--json"))
    assert done.returncode == 0, done.stderr[-3000:]
    doc = json.loads(done.stdout)
    assert doc["ok"] and doc["succeeded"] == 4 and doc["failed"] == 0 and len(doc["workers"]) == 2
    expected = first_prompts(tree(reference["txt2img"]), 4)
    assert len(expected) == 5 and tree(out) == expected  # names and bytes, the cached grid written once
    assert [run["index"] for run in doc["runs"]] == [0, 1, 2, 3] and doc["first_result"] > 0
    assert all(run["worker"]["node_id"] and run["worker"]["pid"] and run["timings"] for run in doc["runs"])
    assert doc["runs"][0]["files"] == [str(out / "latent_ops/txt2img_prompts_00001_.png"),
                                       str(out / "latent_ops/txt2img_samplers_00001_.png")]
    assert len(Manifest(out).read()) == 4


def test_two_node_cluster_runs_the_walk_sweep_on_both_nodes(tmp_path: Path, cluster: dict,
                                                          reference: dict[str, Path]) -> None:
    out = tmp_path / "out"
    # the last three prompts fail on their own (32 frames, 2 labels); the first three are the reference's
    labels = "Grid.labels=" + json.dumps([WALK_LABELS, "x,y"])
    done = run(cli(WALK, "--out", str(out), "--set", labels, *WALK_SETS, "--ray", cluster["address"],
                   "--ray-workers", "2", "--json"))
    assert done.returncode == 1, done.stderr[-3000:]
    doc = json.loads(done.stdout)
    assert (doc["succeeded"], doc["failed"], doc["ok"]) == (3, 3, False)
    assert tree(out) == tree(reference["walk"])
    for failed in doc["runs"][3:]:
        assert failed["status"] == "failed" and failed["error"]["node_id"] == "15"
        assert failed["error"]["class_type"] == "LatentOpsImageGrid" and "labels" in failed["error"]["message"]
    assert {w["node_id"] for w in doc["workers"]} == set(cluster["nodes"])  # one 1-CPU worker on each node
    assert {run["worker"]["node_id"] for run in doc["runs"]} == set(cluster["nodes"])  # and both ran prompts


def busy_workers(cluster: dict) -> list[int]:
    """Pids of the sweep workers now running a prompt (Ray titles them ``ray::LatentOpsWorker.run``)."""
    pids = []
    for proc in cluster["procs"]:
        for pid in session_pids(proc.pid):
            try:
                title = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if title.startswith(b"ray::LatentOpsWorker.run"):
                pids.append(pid)
    return pids


def wait_for_files(folder: Path, count: int, proc: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while len(list(folder.glob("latent_ops/txt2img_prompts_*.png"))) < count:
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "the sweep did not get going"
        time.sleep(0.05)


def test_a_killed_worker_has_its_prompts_run_elsewhere(tmp_path: Path, cluster: dict,
                                                      reference: dict[str, Path]) -> None:
    out = tmp_path / "out"
    proc = subprocess.Popen(cli(TXT2IMG, "--out", str(out), "--set", f"Sampler A.seed=1..{SEEDS}", "--ray",
                                cluster["address"], "--ray-workers", "2", "--json"),
                            env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        # Both workers running a prompt, each with more queued. Their first prompt also loads the
        # model (seconds), so this is seen however fast the later prompts are; waiting for a first
        # file first could find a fast machine's sweep already done.
        deadline = time.monotonic() + 180
        while len(busy := busy_workers(cluster)) < 2:
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "the two workers were never running prompts at once"
            time.sleep(0.02)
        os.kill(busy[0], signal.SIGKILL)
        stdout, stderr = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr[-3000:]
    doc = json.loads(stdout)
    assert doc["ok"] and doc["succeeded"] == SEEDS
    assert tree(out) == tree(reference["txt2img"])  # every output exactly once, local names and bytes
    assert max(run["attempts"] for run in doc["runs"]) >= 2  # what the killed worker held ran again
    assert busy[0] not in {run["worker"]["pid"] for run in doc["runs"] if run["attempts"] >= 2}


def test_resume_after_ctrl_c_writes_only_what_is_missing(tmp_path: Path, cluster: dict,
                                                          reference: dict[str, Path]) -> None:
    out = tmp_path / "out"
    args = cli(TXT2IMG, "--out", str(out), "--set", f"Sampler A.seed=1..{SEEDS}", "--ray", cluster["address"])
    # one worker, so that prompts finish one by one and several are left when Ctrl-C comes
    proc = subprocess.Popen([*args, "--ray-workers", "1"], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=ROOT)
    try:
        wait_for_files(out, 3, proc)
        proc.send_signal(signal.SIGINT)
        started = time.monotonic()
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130 and time.monotonic() - started < 30, stderr[-3000:]
    assert not [p for p in out.rglob(".tmp-*")]  # no partial file
    written = Manifest(out).read()
    assert 3 <= len(written) < SEEDS and sorted(written) == list(range(len(written)))
    before = tree(out)
    done = run([*args, "--ray-workers", "2", "--resume", "--json"])
    assert done.returncode == 0, done.stderr[-3000:]
    doc = json.loads(done.stdout)
    assert doc["skipped"] == len(written) and doc["succeeded"] == SEEDS - len(written)
    assert all(run["status"] == "skipped" and not run["files"] for run in doc["runs"][:len(written)])
    after = tree(out)
    assert {k: after[k] for k in before} == before  # nothing rewritten
    assert after == tree(reference["txt2img"])  # and the folder is what one uninterrupted local run writes


@pytest.mark.parametrize("address", ["127.0.0.2:1", "ray://127.0.0.2:1", "no-such-host.invalid:6379", "nonsense"])
def test_a_bad_address_is_a_one_line_error(tmp_path: Path, address: str, capsys: pytest.CaptureFixture) -> None:
    from latent_ops_nodes import headless_registry

    from latent_ops.workflow import cli as workflow_cli

    started = time.monotonic()
    code = workflow_cli.main(["run", TXT2IMG, "--input-dir", INPUTS, "--out", str(tmp_path), "--set",
                              "Sampler A.seed=[1,2]", "--ray", address], headless_registry())
    assert code == 2 and time.monotonic() - started < 10
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("latent-ops: ") and address in lines[0], lines
    assert not list(tmp_path.iterdir())


def test_auto_with_a_stale_address_fails_fast(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture) -> None:
    from latent_ops_nodes import headless_registry

    from latent_ops.workflow import cli as workflow_cli

    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.2:1")  # what `auto` (and a bare --ray) reads first
    for words in (["--ray", "auto"], ["--ray"]):
        started = time.monotonic()
        code = workflow_cli.main(["run", TXT2IMG, "--input-dir", INPUTS, "--out", str(tmp_path), *words],
                                 headless_registry())
        lines = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and time.monotonic() - started < 10 and len(lines) == 1 and "127.0.0.2:1" in lines[0], lines
