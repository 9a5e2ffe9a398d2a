"""How per-image work is spread over workers, local processes or Ray actors alike: each worker's share of the
cores, how many jobs may be in flight, results handed back in input order, and who is working."""

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


@dataclasses.dataclass(frozen=True)
class Workforce:
    """Who is doing a run's work across a cluster: the nodes and workers still working, those lost during the run
    (a node is lost when none of the run's workers on it is left, whether the node went down or only its workers),
    and the jobs sent again to the others because the worker they were on was lost."""

    nodes: int
    workers: int
    nodes_lost: int = 0
    workers_lost: int = 0
    rerun: int = 0

    def describe(self) -> str:
        """E.g. '2 nodes, 2 workers' or '1 node, 1 worker (1 node and 1 worker lost, 3 jobs run again)'."""
        text = f"{_count(self.nodes, 'node')}, {_count(self.workers, 'worker')}"
        if self.workers_lost:
            lost = " and ".join(_count(n, noun) for n, noun in ((self.nodes_lost, "node"), (self.workers_lost, "worker"))
                                if n)
            text += f" ({lost} lost, {_count(self.rerun, 'job')} run again)"
        return text

    def to_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


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
