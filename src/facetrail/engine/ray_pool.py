"""Face analysis on a Ray cluster: the same contract as the local process pool, with Ray actors as the workers.

Each actor loads a ``FaceEngine`` once and runs jobs one at a time; every actor
asks Ray for its share of the cluster's CPUs and gives that many threads to
ONNX Runtime (as :func:`facetrail.engine.scheduling.share_cores` does for local
processes). Results come back in input order, with a bounded number of jobs in
flight. Ray is optional (``pip install 'facetrail[ray]'``); every node must run
the same facetrail version as the coordinating process.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from importlib.metadata import version
from typing import Any, TypeVar

from facetrail.config import EngineConfig
from facetrail.engine.scheduling import IN_FLIGHT_PER_WORKER, in_order, share_cores
from facetrail.engine.pipeline import FaceEngine
from facetrail.errors import FacetrailError

logger = logging.getLogger("facetrail.enrol")

Job = TypeVar("Job")
Result = TypeVar("Result")

_connecting = threading.Lock()


class FaceWorker:
    """A Ray actor's state: one face engine and the task it runs on each job."""

    def __init__(self, config: EngineConfig, task: Callable[[FaceEngine, Any], Any]) -> None:
        self.engine = FaceEngine(config)
        self.task = task

    def facetrail_version(self) -> str:
        """The facetrail version installed where this actor runs."""
        return version("facetrail")

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
) -> Iterator[tuple[Job, Result]]:
    """Yield ``(job, task(engine, job))`` for each job, in input order, computed by ``actors`` Ray actors (0: one per
    CPU of the cluster) on the cluster at ``address`` (see :func:`connect`).

    Jobs go to the actors in turn, at most IN_FLIGHT_PER_WORKER per actor at a time. ``task`` must be a module-level
    function of a module installed on every node. An actor that dies (its node lost, out of memory) stops the run
    with a FacetrailError; what the caller committed until then stays.
    """
    ray = connect(address)
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    actors = actors or cpus
    per_actor = max(1, cpus // actors)
    worker_config = share_cores(config, actors, cores=per_actor * actors)
    remote = ray.remote(num_cpus=per_actor, max_restarts=0)(FaceWorker)
    pool = [remote.remote(worker_config, task) for _ in range(actors)]
    try:
        _check_versions(ray, pool)
        turns = itertools.cycle(pool)
        yield from in_order(jobs, lambda job: next(turns).run.remote(job), lambda ref: _get(ray, ref),
                            actors * IN_FLIGHT_PER_WORKER)
    finally:
        for actor in pool:
            ray.kill(actor)


def _get(ray: Any, ref: Any) -> Any:
    try:
        return ray.get(ref)
    except ray.exceptions.RayActorError as exc:
        logger.error("a Ray worker stopped before finishing its jobs: %s", exc)  # its text names the cluster's files
        raise FacetrailError("a Ray worker stopped before finishing its jobs; the server's log has the details") from None


def _check_versions(ray: Any, pool: list) -> None:
    """Refuse to run when an actor's node has another facetrail version (it could compute other templates)."""
    here = version("facetrail")
    there = set(_get(ray, [actor.facetrail_version.remote() for actor in pool]))
    if there != {here}:
        raise FacetrailError(f"the Ray cluster runs facetrail {', '.join(sorted(there))}, this process {here}: "
                             "install the same version on every node")
