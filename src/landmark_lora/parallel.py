"""Decode-heavy work on every core, answered in the caller's order.

    from landmark_lora.parallel import Prefetcher
    with Prefetcher(inspect_photo, [(path, (path, cfg, look)) for ...], workers=0) as pre:
        for path in paths:                      # the caller's own order and its own decisions
            facts = pre.result(path)            # computed ahead in a worker, or here when not queued

The caller keeps the sequential protocol (copy, record, remove in order; crash points unchanged);
only the pure per-file work (decode, hash, detect) runs ahead in worker processes. At most
``window`` jobs are in flight, so memory does not grow with the number of files. With one worker
nothing is started and every job runs inline, which is the serial behaviour the tests compare with.
Exceptions raised by a job are re-raised by ``result`` in the caller, as if it had run there.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

__all__ = ["Prefetcher", "available_cores", "resolve_workers"]


def available_cores() -> int:
    """CPU cores this process may run on (a container's or taskset's limit, not the host's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def resolve_workers(workers: int, jobs: int, min_jobs_per_worker: int = 4) -> int:
    """``workers`` from params (0 = one per available core), and no more than the jobs keep busy:
    starting a worker costs more than decoding a few photos."""
    return max(1, min(workers or available_cores(), jobs // min_jobs_per_worker))


class Prefetcher:
    """Runs ``fn(*args)`` for queued jobs ahead of time in worker processes; see the module docstring."""

    def __init__(self, fn: Callable[..., Any], jobs: Iterable[tuple[Hashable, tuple]], workers: int = 0,
                 window_per_worker: int = 4) -> None:
        self.fn = fn
        self.queue = list(jobs)
        self.index = {key: i for i, (key, _) in enumerate(self.queue)}
        self.workers = resolve_workers(workers, len(self.queue))
        self.window = self.workers * window_per_worker
        self.next = 0
        self.in_flight: OrderedDict[Hashable, Future] = OrderedDict()
        self.pool: ProcessPoolExecutor | None = None
        if self.workers > 1:
            # forkserver: never fork a process that may run threads (Prefect, MLflow, torch).
            self.pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("forkserver"))
            self._fill()

    def _fill(self) -> None:
        assert self.pool is not None
        while self.next < len(self.queue) and len(self.in_flight) < self.window:
            key, args = self.queue[self.next]
            self.next += 1
            self.in_flight[key] = self.pool.submit(self.fn, *args)

    def queued(self, key: Hashable) -> bool:
        """Whether ``key`` was given to the constructor (its answer comes from ``result``)."""
        return key in self.index

    def result(self, key: Hashable, *args: Any) -> Any:
        """The answer for ``key``: from its worker if it was queued, else ``fn(*args)`` here.
        Jobs queued before ``key`` that the caller skipped are dropped."""
        i = self.index.get(key)
        if self.pool is None or i is None or (i < self.next and key not in self.in_flight):
            if not args and i is None:
                raise KeyError(f"{key!r} was not queued and no arguments were given")
            return self.fn(*(args or self.queue[i][1]))  # type: ignore[index]
        if i >= self.next:  # everything in flight comes before key: the caller skipped those
            for fut in self.in_flight.values():
                fut.cancel()
            self.in_flight.clear()
            self.next = i
            self._fill()
        while True:
            first, fut = self.in_flight.popitem(last=False)
            if first == key:
                break
            fut.cancel()
        self._fill()
        return fut.result()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None

    def __enter__(self) -> Prefetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
