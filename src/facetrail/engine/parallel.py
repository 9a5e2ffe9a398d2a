"""Run face analysis over many inputs in worker processes, each with its own ``FaceEngine``: a local process pool,
or Ray actors across a cluster (:mod:`facetrail.engine.ray_pool`)."""

from __future__ import annotations

import collections
import dataclasses
import itertools
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from functools import partial
from multiprocessing import get_context
from typing import TypeVar

from facetrail.config import EngineConfig
from facetrail.engine.pipeline import FaceEngine

Job = TypeVar("Job")
Result = TypeVar("Result")
Handle = TypeVar("Handle")

IN_FLIGHT_PER_WORKER = 4

_worker_engine: FaceEngine | None = None


def _start_worker(config: EngineConfig) -> None:
    global _worker_engine
    _worker_engine = FaceEngine(config)


def _run_in_worker(task: Callable[[FaceEngine, Job], Result], job: Job) -> Result:
    return task(_worker_engine, job)


def share_cores(config: EngineConfig, workers: int, cores: int | None = None) -> EngineConfig:
    """``config`` with the network's threads set to each worker's share of ``cores`` (default: this machine's),
    unless set explicitly."""
    if config.embedding.threads:
        return config
    threads = max(1, (cores or os.cpu_count() or 1) // workers)
    return dataclasses.replace(config, embedding=dataclasses.replace(config.embedding, threads=threads))


def analyse_many(
    jobs: Iterable[Job],
    task: Callable[[FaceEngine, Job], Result],
    config: EngineConfig,
    workers: int = 0,
    ray_address: str = "",
) -> Iterator[tuple[Job, Result]]:
    """Yield ``(job, task(engine, job))`` for each job, in input order.

    ``workers`` processes (0: one per CPU core; 1: in this process) each load the
    models once. ``task`` must be a module-level function and should turn
    per-item failures into results, not exceptions. At most a few jobs per worker
    are in flight, so memory stays bounded however long ``jobs`` is.

    With ``ray_address`` (a Ray cluster's address, ``"auto"`` or ``"local"``) the
    workers are Ray actors across the cluster instead, ``workers`` of them (0: one
    per CPU of the cluster); see :func:`facetrail.engine.ray_pool.analyse_on_ray`.
    """
    jobs = iter(jobs)
    first = next(jobs, None)
    if first is None:
        return
    jobs = itertools.chain([first], jobs)
    if ray_address:
        from facetrail.engine.ray_pool import analyse_on_ray

        yield from analyse_on_ray(jobs, task, config, ray_address, workers)
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


def in_order(
    jobs: Iterable[Job], submit: Callable[[Job], Handle], collect: Callable[[Handle], Result], window: int
) -> Iterator[tuple[Job, Result]]:
    """Yield ``(job, collect(submit(job)))`` in input order, with at most ``window`` jobs submitted and not yet
    collected."""
    in_flight: collections.deque[tuple[Job, Handle]] = collections.deque()
    for job in jobs:
        in_flight.append((job, submit(job)))
        if len(in_flight) >= window:
            done, handle = in_flight.popleft()
            yield done, collect(handle)
    while in_flight:
        done, handle = in_flight.popleft()
        yield done, collect(handle)
