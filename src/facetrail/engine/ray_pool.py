"""Face analysis on a Ray cluster: the same contract as the local process pool, with Ray actors as the workers.

Each actor loads a ``FaceEngine`` once and runs jobs one at a time; every actor
asks Ray for its share of the cluster's CPUs and gives that many threads to
ONNX Runtime (as :func:`facetrail.engine.scheduling.share_cores` does for local
processes). Results come back in input order, with a bounded number of jobs in
flight. A run outlives the loss of actors (a node going down): the jobs in
flight on a lost actor are sent to the others, each result still handed back
once. Ray is optional (``pip install 'facetrail[ray]'``); every node must run
the same facetrail version as the coordinating process.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from importlib.metadata import version
from typing import Any, TypeVar

from facetrail.config import EngineConfig
from facetrail.engine.scheduling import IN_FLIGHT_PER_WORKER, Workforce, in_order, share_cores
from facetrail.engine.pipeline import FaceEngine
from facetrail.errors import FacetrailError, WorkersLostError

logger = logging.getLogger("facetrail.enrol")

Job = TypeVar("Job")
Result = TypeVar("Result")

_connecting = threading.Lock()


class FaceWorker:
    """A Ray actor's state: one face engine and the task it runs on each job."""

    def __init__(self, config: EngineConfig, task: Callable[[FaceEngine, Any], Any]) -> None:
        self.engine = FaceEngine(config)
        self.task = task

    def describe(self) -> tuple[str, str]:
        """The facetrail version installed where this actor runs, and the id of its Ray node."""
        import ray

        return version("facetrail"), ray.get_runtime_context().get_node_id()

    def run(self, job: Any) -> Any:
        return self.task(self.engine, job)


def import_ray() -> Any:
    """The ``ray`` module, or a FacetrailError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise FacetrailError(
            "enrolment on Ray (--ray / enrolment.ray_address) needs the 'ray' package, which is not installed: "
            "pip install 'facetrail[ray]' (without it, leave the Ray address empty to use local worker processes)"
        ) from None
    return ray


def connect(address: str) -> Any:
    """Connect this process to the Ray cluster at ``address`` (``"auto"``: the one started on this machine with
    ``ray start``; ``"local"``: a new single-machine instance; or ``host:port`` / ``ray://host:port``), unless it
    is connected already, in which case that connection is used. Returns the ``ray`` module."""
    ray = import_ray()
    with _connecting:
        if not ray.is_initialized():
            try:
                ray.init(address=address, include_dashboard=False, log_to_driver=False,
                         logging_level=logging.WARNING, configure_logging=False)
            except (ConnectionError, ValueError, RuntimeError, TimeoutError) as exc:
                raise FacetrailError(f"cannot connect to the Ray cluster at {address!r}: {exc}") from None
    return ray


def analyse_on_ray(
    jobs: Iterable[Job],
    task: Callable[[FaceEngine, Job], Result],
    config: EngineConfig,
    address: str,
    actors: int = 0,
    on_workforce: Callable[[Workforce], None] = lambda workforce: None,
) -> Iterator[tuple[Job, Result]]:
    """Yield ``(job, task(engine, job))`` for each job, in input order, computed by ``actors`` Ray actors (0: one per
    CPU of the cluster), spread over the nodes of the cluster at ``address`` (see :func:`connect`).

    Jobs go to the actors in turn, at most IN_FLIGHT_PER_WORKER per actor at a time. ``task`` must be a module-level
    function of a module installed on every node. An actor that dies or stops answering (its node lost, out of
    memory) is left out from then on and the jobs in flight on it go to the others: a job may thus run twice, its
    result is yielded once. When none is left the run stops with a WorkersLostError. ``on_workforce`` hears who is
    working at the start and after each loss.
    """
    ray = connect(address)
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    actors = actors or cpus
    per_actor = max(1, cpus // actors)
    worker_config = share_cores(config, actors, cores=per_actor * actors)
    # no restarts: a lost node's share of the CPUs is gone, so a restarted actor could wait for a place forever
    remote = ray.remote(num_cpus=per_actor, max_restarts=0, scheduling_strategy="SPREAD")(FaceWorker)
    started = [remote.remote(worker_config, task) for _ in range(actors)]
    try:
        pool = _Pool(ray, started, on_workforce)
        yield from in_order(jobs, pool.submit, pool.collect, actors * IN_FLIGHT_PER_WORKER)
    finally:
        for actor in started:
            ray.kill(actor)


class _Sent:
    """A job in flight: the actor it was sent to and the reference to its result."""

    def __init__(self, job: Any) -> None:
        self.job = job
        self.actor: Any = None
        self.ref: Any = None


class _Pool:
    """The live actors of a run and the node each runs on. Jobs go to them in turn; when one dies, every job in
    flight on it is sent to the others at once."""

    def __init__(self, ray: Any, actors: list, on_workforce: Callable[[Workforce], None]) -> None:
        self.ray = ray
        self.on_workforce = on_workforce
        self.node_of = dict(zip(actors, _describe(ray, actors)))
        self.live = list(actors)
        self.in_flight: set[_Sent] = set()
        self.turns = 0
        self.workforce = Workforce(nodes=len(set(self.node_of.values())), workers=len(actors))
        on_workforce(self.workforce)

    def submit(self, job: Any) -> _Sent:
        sent = _Sent(job)
        self._send(sent)
        self.in_flight.add(sent)
        return sent

    def collect(self, sent: _Sent) -> Any:
        while True:
            try:
                result = self.ray.get(sent.ref)
            except self.ray.exceptions.RayActorError as exc:
                self._lost(sent.actor, exc)
                continue
            self.in_flight.discard(sent)
            return result

    def _send(self, sent: _Sent) -> None:
        sent.actor = self.live[self.turns % len(self.live)]
        self.turns += 1
        sent.ref = sent.actor.run.remote(sent.job)

    def _lost(self, actor: Any, exc: Exception) -> None:
        """``actor`` died: leave it out and send its jobs to the others (so no job in flight is left on a dead actor),
        or stop when none is left."""
        logger.warning("a Ray worker was lost; its jobs are sent to the others: %s", exc)  # names the cluster's hosts
        self.live.remove(actor)
        working = {self.node_of[a] for a in self.live}
        orphans = [sent for sent in self.in_flight if sent.actor is actor]
        rerun = self.workforce.rerun + (len(orphans) if self.live else 0)
        self.workforce = Workforce(len(working), len(self.live), len(set(self.node_of.values()) - working),
                                   len(self.node_of) - len(self.live), rerun)
        self.on_workforce(self.workforce)
        if not self.live:
            raise WorkersLostError(f"every Ray worker was lost before the jobs were done ({self.workforce.describe()}); "
                                   "the server's log has the details")
        for sent in orphans:
            self._send(sent)


def _describe(ray: Any, actors: list) -> list[str]:
    """The node each actor runs on; refuses to run when an actor's node has another facetrail version (it could
    compute other templates)."""
    try:
        found = ray.get([actor.describe.remote() for actor in actors])
    except ray.exceptions.RayActorError as exc:
        logger.error("a Ray worker stopped before it started: %s", exc)  # its text names the cluster's files
        raise FacetrailError("a Ray worker stopped before it started; the server's log has the details") from None
    here = version("facetrail")
    there = {installed for installed, _ in found}
    if there != {here}:
        raise FacetrailError(f"the Ray cluster runs facetrail {', '.join(sorted(there))}, this process {here}: "
                             "install the same version on every node")
    return [node for _, node in found]
