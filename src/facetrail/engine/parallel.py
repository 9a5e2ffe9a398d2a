"""Run face analysis over many inputs in worker processes, each with its own ``FaceEngine``: a local process pool,
or Ray actors across a cluster (:mod:`facetrail.engine.ray_pool`)."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from functools import partial
from multiprocessing import get_context
from typing import TypeVar

from facetrail.config import EngineConfig
from facetrail.engine.pipeline import FaceEngine
from facetrail.engine.scheduling import IN_FLIGHT_PER_WORKER, Workforce, in_order, share_cores

Job = TypeVar("Job")
Result = TypeVar("Result")

_worker_engine: FaceEngine | None = None


def _start_worker(config: EngineConfig) -> None:
    global _worker_engine
    _worker_engine = FaceEngine(config)


def _run_in_worker(task: Callable[[FaceEngine, Job], Result], job: Job) -> Result:
    return task(_worker_engine, job)


def analyse_many(
    jobs: Iterable[Job],
    task: Callable[[FaceEngine, Job], Result],
    config: EngineConfig,
    workers: int = 0,
    ray_address: str = "",
    on_workforce: Callable[[Workforce], None] = lambda workforce: None,
) -> Iterator[tuple[Job, Result]]:
    """Yield ``(job, task(engine, job))`` for each job, in input order.

    ``workers`` processes (0: one per CPU core; 1: in this process) each load the
    models once. ``task`` must be a module-level function and should turn
    per-item failures into results, not exceptions. At most a few jobs per worker
    are in flight, so memory stays bounded however long ``jobs`` is.

    With ``ray_address`` (a Ray cluster's address, ``"auto"`` or ``"local"``) the
    workers are Ray actors across the cluster instead, ``workers`` of them (0: one
    per CPU of the cluster), and ``on_workforce`` hears how many nodes and workers
    are working; see :func:`facetrail.engine.ray_pool.analyse_on_ray`.
    """
    jobs = iter(jobs)
    first = next(jobs, None)
    if first is None:
        return
    jobs = itertools.chain([first], jobs)
    if ray_address:
        from facetrail.engine.ray_pool import analyse_on_ray

        yield from analyse_on_ray(jobs, task, config, ray_address, workers, on_workforce)
        return
    workers = workers or os.cpu_count() or 1
    if workers == 1:
        engine = FaceEngine(config)
        for job in jobs:
            yield job, task(engine, job)
        return
    context = get_context("spawn")
    worker_config = share_cores(config, workers)
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker, initargs=(worker_config,)) as pool:
        run = partial(_run_in_worker, task)
        yield from in_order(jobs, lambda job: pool.submit(run, job), Future.result, workers * IN_FLIGHT_PER_WORKER)
