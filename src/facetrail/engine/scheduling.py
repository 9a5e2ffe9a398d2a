"""How per-image work is spread over workers, local processes or Ray actors alike: each worker's share of the
cores, how many jobs may be in flight, and results handed back in input order."""

from __future__ import annotations

import collections
import dataclasses
import os
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from facetrail.config import EngineConfig

Job = TypeVar("Job")
Result = TypeVar("Result")
Handle = TypeVar("Handle")

IN_FLIGHT_PER_WORKER = 4
"""Jobs submitted to one worker and not yet collected, at most."""


def share_cores(config: EngineConfig, workers: int, cores: int | None = None) -> EngineConfig:
    """``config`` with the network's threads set to each worker's share of ``cores`` (default: this machine's),
    unless set explicitly."""
    if config.embedding.threads:
        return config
    threads = max(1, (cores or os.cpu_count() or 1) // workers)
    return dataclasses.replace(config, embedding=dataclasses.replace(config.embedding, threads=threads))


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
