"""Run face analysis over many inputs in worker processes, each with its own ``FaceEngine``."""

from __future__ import annotations

import collections
import dataclasses
import itertools
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from multiprocessing import get_context
from typing import TypeVar

from facetrail.config import EngineConfig
from facetrail.engine.pipeline import FaceEngine

Job = TypeVar("Job")
Result = TypeVar("Result")

IN_FLIGHT_PER_WORKER = 4

_worker_engine: FaceEngine | None = None


def _start_worker(config: EngineConfig) -> None:
    global _worker_engine
    _worker_engine = FaceEngine(config)


def _run_in_worker(task: Callable[[FaceEngine, Job], Result], job: Job) -> Result:
    return task(_worker_engine, job)


def share_cores(config: EngineConfig, workers: int) -> EngineConfig:
    """``config`` with the network's threads set to each worker's share of the cores, unless set explicitly."""
    if config.embedding.threads:
        return config
    threads = max(1, (os.cpu_count() or 1) // workers)
    return dataclasses.replace(config, embedding=dataclasses.replace(config.embedding, threads=threads))


def analyse_many(
    jobs: Iterable[Job],
    task: Callable[[FaceEngine, Job], Result],
    config: EngineConfig,
    workers: int = 0,
) -> Iterator[tuple[Job, Result]]:
    """Yield ``(job, task(engine, job))`` for each job, in input order.

    ``workers`` processes (0: one per CPU core; 1: in this process) each load the
    models once. ``task`` must be a module-level function and should turn
    per-item failures into results, not exceptions. At most a few jobs per worker
    are in flight, so memory stays bounded however long ``jobs`` is.
    """
    jobs = iter(jobs)
    first = next(jobs, None)
    if first is None:
        return
    jobs = itertools.chain([first], jobs)
    workers = workers or os.cpu_count() or 1
    if workers == 1:
        engine = FaceEngine(config)
        for job in jobs:
            yield job, task(engine, job)
        return
    context = get_context("spawn")
    worker_config = share_cores(config, workers)
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker, initargs=(worker_config,)) as pool:
        in_flight: collections.deque = collections.deque()
        run = partial(_run_in_worker, task)
        for job in jobs:
            in_flight.append((job, pool.submit(run, job)))
            if len(in_flight) >= workers * IN_FLIGHT_PER_WORKER:
                done, future = in_flight.popleft()
                yield done, future.result()
        while in_flight:
            done, future = in_flight.popleft()
            yield done, future.result()
