"""`make test`'s file order. The Makefile hands whole files to two pytest-xdist workers in collection
order (`--dist loadfile --no-loadscope-reorder`). xdist's default reorder starts the files with the
most tests first, so tests/test_pipeline.py (one test, minutes long) started last and ran alone
on one worker at the end. The files below take the longest (full pipeline runs, 2-process
training, mypy). They start first, longest first, and the short files fill in behind them on
whichever worker is free. tests/conftest.py sorts by this; tests/test_suite_order.py checks that
every file is still there. Measured order: docs/benchmarks.md, "Test suite time".
"""

from __future__ import annotations

import pytest

RUN_FIRST: tuple[str, ...] = (
    "tests/flows/test_retrain_flow.py",
    "tests/test_pipeline.py",
    "tests/test_prefect_startup.py",
    "tests/test_lint.py",
    "tests/stages/test_train_multinode.py",
    "tests/ops/test_promote.py",
    "tests/ops/test_promises.py",
    "tests/infra/test_infra_smoke.py",
    "tests/stages/test_train.py",
)


def run_first_rank(item: pytest.Item) -> int:
    """Where ``item``'s file stands in RUN_FIRST (every other file after them, tied)."""
    path = item.nodeid.split("::")[0]
    return RUN_FIRST.index(path) if path in RUN_FIRST else len(RUN_FIRST)
