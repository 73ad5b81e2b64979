"""Sweep workers on Ray: connect to a cluster, start long-lived actors, hand out prompts.

Ray is imported inside these functions only, never when ``latent_ops`` is imported. Each actor
wraps a :class:`~latent_ops.workflow.sweep_worker.SweepWorker`, so a model is loaded once per
worker and its node cache lives across prompts. A worker that dies (process killed, node lost) is
restarted by Ray, and the prompts it held are handed to the next free worker; a prompt that kills
its worker :data:`MAX_ATTEMPTS` times is reported as failed.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import socket
import sys
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import LatentOpsError
from .sweep_worker import Outcome, SweepWorker, Task

MAX_ATTEMPTS = 3
"""Times a prompt is started before a worker death counts as its failure."""
DEPTH = 2
"""Prompts queued per worker (one running, one waiting), so no worker idles between prompts."""
_PROBE_S = 3.0
LOOPBACK = "127.0.0.1" if sys.platform in ("darwin", "win32") else "127.0.0.2"
"""The address of a private ``local`` cluster. Ray replaces 127.0.0.1 by the machine's network
address on Linux (``ray._private.services.resolve_ip_for_localhost``); every 127.x.y.z address is
loopback there and Ray keeps any other one as it is. On macOS and Windows Ray keeps 127.0.0.1."""


def _positive(kind: type, zero: bool = False) -> Callable[[str], Any]:
    def parse(text: str) -> Any:  # noqa: ANN401
        value = kind(text)
        if value < 0 or (value == 0 and not zero):
            raise argparse.ArgumentTypeError(f"must be {'>= 0' if zero else '> 0'}, got {text}")
        return value

    return parse


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the Ray options of ``latent-ops run`` (``--ray``, ``--ray-workers``, ...) to ``parser``."""
    pool = parser.add_argument_group("Ray", "run the sweep's prompts on Ray workers (pip install "
                                     "'latent-ops[ray]'); the files are written here, named as a local run names them")
    pool.add_argument("--ray", nargs="?", const="", metavar="ADDRESS", help="local (a private cluster on this "
                      "machine), auto (the one `ray start` made here), HOST:PORT or ray://HOST:PORT; "
                      "without ADDRESS: $RAY_ADDRESS, else local")
    pool.add_argument("--ray-workers", type=_positive(int), metavar="N", help="workers (default: as many as fit)")
    pool.add_argument("--ray-cpus-per-worker", type=_positive(float), default=1.0, metavar="C",
                      help="CPUs each worker asks for; also its torch threads (default 1)")
    pool.add_argument("--ray-gpus-per-worker", type=_positive(float, zero=True), default=0.0, metavar="G",
                      help="GPUs each worker asks for (may be a fraction; default 0)")
    return parser


class RayUnavailable(LatentOpsError):
    """Ray is not installed, the address is malformed, or the cluster cannot be reached (exit code 2)."""


@dataclass(frozen=True)
class WorkerSpec:
    """Resources each Ray worker asks for: ``cpus`` (also its torch threads) and ``gpus`` (may be fractional)."""

    cpus: float = 1.0
    gpus: float = 0.0

    def __post_init__(self) -> None:
        if not self.cpus > 0 or not self.gpus >= 0:
            raise ValueError(f"WorkerSpec: cpus must be > 0 and gpus >= 0, got cpus={self.cpus!r}, gpus={self.gpus!r}")


def _import_ray() -> Any:  # noqa: ANN401 - the ray module
    try:
        import ray
    except ImportError:
        raise RayUnavailable("Ray is not installed; install the extra: pip install 'latent-ops[ray]'") from None
    return ray


def _host_port(address: str) -> tuple[str, int]:
    match = re.fullmatch(r"(?:ray://)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})", address)
    if not match or not 0 < int(match[2]) < 65536:
        raise RayUnavailable(f"--ray {address!r}: expected auto, local, HOST:PORT or ray://HOST:PORT")
    return match[1].strip("[]"), int(match[2])


def _probe(where: str, host: str, port: int) -> None:
    try:
        with socket.create_connection((host, port), timeout=_PROBE_S):
            pass
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise RayUnavailable(f"cannot reach a Ray cluster at {where}: {reason}") from None


def _loopback_ip(host: str) -> str | None:
    """The loopback IP ``host`` names, or None if it is not (only) a loopback address."""
    try:
        ips = {info[4][0] for info in socket.getaddrinfo(host, None, socket.AF_INET)}
    except OSError:
        return None
    return ips.pop() if len(ips) == 1 and next(iter(ips)).startswith("127.") else None


def _auto_address() -> str | None:
    """The cluster ``auto`` means ($RAY_ADDRESS, else the address file ``ray start`` wrote), if known."""
    try:
        from ray._private import services  # Ray's own lookup; a private module, so guarded

        return services.canonicalize_bootstrap_address("auto")
    except ConnectionError as err:  # no cluster started on this machine
        raise RayUnavailable(f"--ray auto: {' '.join(str(err).split())}") from None
    except Exception:  # noqa: BLE001 - the lookup moved: ray.init will say
        return None


def connect(address: str | None, *, min_cpus: float = 0.0) -> bool:
    """Connect this process to Ray; returns whether it did (then the caller shuts Ray down).

    Args:
        address: ``"local"`` starts a private cluster in this process (on :data:`LOOPBACK`);
            ``"auto"`` joins the cluster ``ray start`` made on this machine (or ``$RAY_ADDRESS``);
            ``"HOST:PORT"`` a cluster's head; ``"ray://HOST:PORT"`` a Ray Client server.
            ``None`` keeps an existing connection.
        min_cpus: for ``"local"``, the fewest CPUs the private cluster should offer.

    Raises:
        RayUnavailable: Ray missing, a malformed address, or no cluster there (within seconds).
    """
    ray = _import_ray()
    if address is None and ray.is_initialized():
        return False
    quiet: dict[str, Any] = {"logging_level": logging.ERROR, "log_to_driver": False}
    if address in (None, "local"):
        kwargs = {"address": "local", "_node_ip_address": LOOPBACK, "include_dashboard": False,
                  "num_cpus": max(os.cpu_count() or 1, int(min_cpus + 0.999)), **quiet}
    elif address == "auto":
        found = _auto_address()
        if found is not None:  # a stale address file would make ray.init wait for minutes
            _probe(f"'auto' ({found})", *_host_port(found))
        kwargs = {"address": "auto", **quiet}
    else:
        host, port = _host_port(address)
        _probe(repr(address), host, port)
        kwargs = {"address": address, **quiet}
        loopback = None if address.startswith("ray://") else _loopback_ip(host)
        if loopback is not None:  # a cluster on this machine's loopback: this driver joins it there
            kwargs["_node_ip_address"] = loopback
    try:
        ray.init(**kwargs)
    except Exception as err:  # noqa: BLE001 - ray raises many types here (ConnectionError, RuntimeError, ...)
        text = " ".join(str(err).split())
        raise RayUnavailable(f"cannot connect to Ray at {address!r}: {text[:300]}") from None
    return True


def shutdown() -> None:
    """Disconnect from Ray (and stop a private cluster this process started)."""
    ray = _import_ray()
    if ray.is_initialized():
        ray.shutdown()


def cluster_workers(spec: WorkerSpec) -> int:
    """How many workers of ``spec`` the connected cluster can hold now (an autoscaler may add more)."""
    ray = _import_ray()
    total = ray.cluster_resources()
    fits = int(total.get("CPU", 0) // spec.cpus)
    if spec.gpus > 0:
        fits = min(fits, int(total.get("GPU", 0) // spec.gpus))
    return fits


class LatentOpsWorker(SweepWorker):
    """The worker as it runs inside a Ray actor: it adds where it runs to its identity."""

    def __init__(self, number: int, registry: Any, options: Mapping[str, Any]) -> None:  # noqa: ANN401
        import ray

        context = ray.get_runtime_context()
        identity = {"worker": number, "node_id": context.get_node_id(), "actor_id": context.get_actor_id(),
                    "host": socket.gethostname()}
        super().__init__(registry, identity=identity, **options)


class RayPool:
    """A fixed set of Ray actors running :class:`Task` objects; failed workers' tasks are retried.

    A worker that dies is restarted by Ray (its models load again); until a worker is up, tasks wait
    here. A task fails with a "worker" error once it has been started :data:`MAX_ATTEMPTS` times, or
    when no worker is left.

    Args:
        workers: number of actors. spec: resources per actor. registry: node registry (pickled by
            reference: its classes must be importable on every node). options: keyword arguments
            for :class:`SweepWorker` (``inputs``, ``models_dir``, ...).
        ready_timeout: seconds to wait for the first worker to start.
    """

    def __init__(self, workers: int, spec: WorkerSpec, registry: Any, options: Mapping[str, Any],  # noqa: ANN401
                 ready_timeout: float = 120.0) -> None:
        ray = self._ray = _import_ray()
        remote = ray.remote(LatentOpsWorker).options(num_cpus=spec.cpus, num_gpus=spec.gpus, max_restarts=MAX_ATTEMPTS,
                                                     max_task_retries=0, scheduling_strategy="SPREAD")
        options = {**options, "threads": max(1, int(spec.cpus))}
        # the input files go in the object store once; each worker copies them at every (re)start
        self.inputs = ray.put(dict(options.pop("inputs", None) or {}))
        self.actors = [remote.remote(number, registry, options) for number in range(workers)]
        self.load = [0] * workers
        self.lives = [0] * workers  # incarnations seen dead, per worker
        self.ready: set[int] = set()
        self.started: dict[int, dict[str, Any]] = {}  # worker -> what it reported when (last) up
        self.last_error = ""
        self.flight: dict[Any, tuple[int, int, Task]] = {}  # ref -> (worker, its incarnation, task)
        self.waiting: deque[Task] = deque()
        self._starting = {actor.setup.remote(self.inputs): n for n, actor in enumerate(self.actors)}
        self._await_first(spec, ready_timeout)

    @property
    def capacity(self) -> int:
        """How many tasks to keep in flight."""
        return max(1, len(self.ready)) * DEPTH

    def _await_first(self, spec: WorkerSpec, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self.ready and self._starting and time.monotonic() < deadline:
            self._check_started(1.0)
        if not self.ready:
            have = {k: v for k, v in self._ray.cluster_resources().items() if k in ("CPU", "GPU")}
            self.close()
            if self.last_error:
                raise RayUnavailable(f"no Ray worker could start: {self.last_error}")
            raise RayUnavailable(f"no Ray worker started within {timeout:.0f} s; each asks for {spec.cpus:g} CPU and "
                                 f"{spec.gpus:g} GPU, the cluster has {have}")

    def _check_started(self, timeout: float) -> None:
        """Note the workers that came up (waiting up to ``timeout`` for one), and hand them waiting tasks."""
        if self._starting:
            refs = list(self._starting)
            done, _ = self._ray.wait(refs, num_returns=1, timeout=timeout)
            if done:
                done, _ = self._ray.wait(refs, num_returns=len(refs), timeout=0)
            for ref in done:
                number = self._starting.pop(ref)
                try:
                    self.started[number] = self._ray.get(ref)
                    self.ready.add(number)
                except self._ray.exceptions.RayError as err:
                    self.last_error = " ".join(str(err).split())[-300:]
                    self._lost(number)
        while self.waiting and self.ready:
            self.submit(self.waiting.popleft())

    def _lost(self, number: int) -> None:
        """Worker ``number`` died: Ray restarts it (up to :data:`MAX_ATTEMPTS` times); ask when it is up."""
        self.lives[number] += 1
        self.ready.discard(number)
        if self.lives[number] <= MAX_ATTEMPTS:
            self._starting[self.actors[number].setup.remote(self.inputs)] = number

    def submit(self, task: Task, avoid: int | None = None) -> None:
        """Give ``task`` to the least busy started worker (not ``avoid`` if another is up); or keep it waiting."""
        if not self.ready:
            self.waiting.append(task)
            return
        number = min(self.ready, key=lambda n: (n == avoid, self.load[n], n))
        self.load[number] += 1
        self.flight[self.actors[number].run.remote(task)] = (number, self.lives[number], task)

    def poll(self, timeout: float) -> list[Outcome]:
        """Outcomes that finished within ``timeout`` seconds; tasks of dead workers are handed out again."""
        self._check_started(0 if self.flight else timeout)
        outcomes = []
        if self.waiting and not self.ready and not self._starting:
            outcomes = [Outcome(t.index, error={"type": "worker", "message": "no Ray worker left to run it"},
                                attempt=t.attempt) for t in self.waiting]
            self.waiting.clear()
        if not self.flight:
            if not self._starting and not outcomes:
                time.sleep(min(timeout, 0.05))  # nothing to wait on (the driver is about to hand out more)
            return outcomes
        done, _ = self._ray.wait(list(self.flight), num_returns=1, timeout=timeout)
        if done:
            done, _ = self._ray.wait(list(self.flight), num_returns=len(self.flight), timeout=0)
        for ref in done:
            number, life, task = self.flight.pop(ref)
            self.load[number] -= 1
            try:
                outcomes.append(self._ray.get(ref))
            except self._ray.exceptions.RayActorError as err:
                if life == self.lives[number]:  # the first of its tasks to report this death
                    self._lost(number)
                outcomes += self._retry(task, number, err)
        return outcomes

    def _retry(self, task: Task, number: int, err: Exception) -> list[Outcome]:
        retry = Task(task.index, task.prompt, task.ui, task.outputs, task.attempt + 1, task.keys)
        if retry.attempt >= MAX_ATTEMPTS:
            message = f"the worker running it died {retry.attempt} time(s): {type(err).__name__}"
            return [Outcome(task.index, error={"type": "worker", "message": message}, attempt=task.attempt)]
        self.submit(retry, avoid=number)
        return []

    def interrupt(self) -> None:
        """Stop every worker now (cancels all outstanding prompts)."""
        self.close()

    def close(self) -> None:
        """Kill the actors (they hold models; the driver is done with them)."""
        for actor in self.actors:
            try:
                self._ray.kill(actor, no_restart=True)
            except Exception:  # noqa: BLE001,S110 - already gone
                pass
        self.actors, self.flight, self.ready, self._starting = [], {}, set(), {}
        self.waiting.clear()
