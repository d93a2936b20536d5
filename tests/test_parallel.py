"""The process pool behind ingest and preprocess: answers in the caller's order, skipped jobs
dropped, a worker's exception raised in the caller, serial when one worker."""

from __future__ import annotations

import os

import pytest

from landmark_lora.parallel import Prefetcher, resolve_workers


def square_and_pid(x: int) -> tuple[int, int]:
    if x < 0:
        raise ValueError(f"negative: {x}")
    return x * x, os.getpid()


def test_answers_come_from_workers_in_the_callers_order():
    jobs = [(i, (i,)) for i in range(40)]
    with Prefetcher(square_and_pid, jobs, workers=2) as pre:
        answers = [pre.result(i) for i in range(40)]
    assert [a for a, _ in answers] == [i * i for i in range(40)]
    assert os.getpid() not in {pid for _, pid in answers}, "the work ran in worker processes"


def test_skipped_jobs_are_dropped_and_unqueued_keys_run_inline():
    jobs = [(i, (i,)) for i in range(0, 40, 2)]
    with Prefetcher(square_and_pid, jobs, workers=2) as pre:
        assert pre.result(30)[0] == 900  # 0..28 skipped by the caller
        assert pre.result(31, 31) == (961, os.getpid())  # never queued: computed here
        assert pre.result(32)[0] == 1024
        assert pre.result(4)[0] == 16  # already passed: computed here, same answer


def test_a_workers_exception_is_raised_in_the_caller():
    jobs = [(i, (i,)) for i in (1, 2, -3, 4, 5, 6, 7, 8)]
    with Prefetcher(square_and_pid, jobs, workers=2) as pre:
        assert pre.result(1)[0] == 1
        with pytest.raises(ValueError, match="negative: -3"):
            pre.result(-3)
        assert pre.result(8)[0] == 64


def test_one_worker_or_few_jobs_start_no_process():
    with Prefetcher(square_and_pid, [(i, (i,)) for i in range(40)], workers=1) as pre:
        assert pre.pool is None and pre.result(3) == (9, os.getpid())
    assert resolve_workers(0, 3) == 1  # three photos: not worth a worker
    assert resolve_workers(8, 1000) == 8 and resolve_workers(2, 40) == 2
