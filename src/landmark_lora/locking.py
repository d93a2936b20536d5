"""The pipeline lock: one writer at a time per workspace, whoever calls.

    from landmark_lora.locking import operation_lock, pipeline_lock
    with operation_lock(params, owner="landmark-lora ingest"):     # .cache/retrain.lock
        ...                                                        # ingest, promote, rollback, the flow

    @locked("landmark-lora promote")                                # the same, for f(params, ...)
    def promote(params): ...

Every operation that writes shared state (``ingest``, ``promote``, ``rollback`` and the flow
``retrain`` around them) takes the same exclusive ``fcntl.flock`` on ``<paths.cache>/retrain.lock``.
The kernel drops it when the holder dies, so a crash never leaves a stale lock. The lock is
re-entrant within one call chain (a ``contextvars`` context): the flow holds it and calls
ingest and promote, which then take it again for free instead of waiting on themselves (a flock
on a second descriptor of the same file would block even in the same process). An unrelated
thread of the same process does not inherit it and waits like any other process.

How long an operation waits for a busy lock: ``wait_s``, else ``LANDMARK_LORA_LOCK_WAIT_S``
(seconds), else 0: fail at once with ``LockBusy`` naming the holder.
"""

from __future__ import annotations

import contextvars
import fcntl
import functools
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from landmark_lora.artifacts import LOCK, Layout
from landmark_lora.config import Params

LOCK_NAME = LOCK  # under paths.cache (Layout.lock); kept under this name for callers
WAIT_ENV = "LANDMARK_LORA_LOCK_WAIT_S"

# Lock files this call chain holds (resolved paths). A ContextVar, not a global: Prefect runs a
# task in a copy of the flow's context, a plain threading.Thread starts with an empty one.
_HELD: contextvars.ContextVar[frozenset[str]] = contextvars.ContextVar("landmark_lora_held_locks", default=frozenset())

F = TypeVar("F", bound=Callable[..., Any])


class LockBusy(RuntimeError):
    """Another operation holds the pipeline lock (and did not release it within ``waited_s``)."""

    def __init__(self, path: Path, holder: str, waited_s: float):
        self.path, self.holder, self.waited_s = path, holder, waited_s
        super().__init__(f"busy: {path} is held by {holder or 'an unknown holder'}; waited {waited_s:.0f} s. "
                         f"Try again when it finishes, or set {WAIT_ENV}=<seconds> to wait for it")


def _key(path: Path) -> str:
    return str(Path(path).resolve())


def holds(path: Path) -> bool:
    """True when this call chain already holds the lock on ``path``."""
    return _key(path) in _HELD.get()


@contextmanager
def pipeline_lock(path: Path, wait_s: float = 0.0, owner: str = "", poll_s: float = 0.5) -> Iterator[float]:
    """Hold an exclusive ``fcntl.flock`` on ``path`` while the block runs; yields seconds waited.

    Re-entrant: inside a block that holds it already this is a no-op (yields 0.0). Raises
    LockBusy after ``wait_s`` seconds when someone else holds it."""
    path = Path(path)
    if holds(path):
        yield 0.0
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    start = time.monotonic()
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                waited = time.monotonic() - start
                if waited >= wait_s:
                    raise LockBusy(path, lock_holder(path), waited) from None
                time.sleep(min(poll_s, max(wait_s - waited, 0.01)))
        waited = time.monotonic() - start
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "owner": owner,
                  "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        token = _HELD.set(_HELD.get() | {_key(path)})
        try:
            yield waited
        finally:
            _HELD.reset(token)
    finally:
        os.close(fd)  # releases the flock


def lock_holder(path: Path) -> str:
    """Who holds (or last held) the lock, e.g. 'flow run 1234 on host since 2026-...'."""
    try:
        info = json.loads(Path(path).read_text() or "{}")
    except (OSError, ValueError):
        return ""
    if not info:
        return ""
    return f"{info.get('owner') or 'pid ' + str(info.get('pid'))} (pid {info.get('pid')}) on {info.get('host')} since {info.get('since')}"


def lock_path(params: Params) -> Path:
    """The workspace's pipeline lock: ``Layout.of(params).lock`` (``<paths.cache>/retrain.lock``)."""
    return Layout.of(params).lock


def default_wait_s() -> float:
    raw = os.environ.get(WAIT_ENV, "").strip()
    if not raw:
        return 0.0
    try:
        return max(float(raw), 0.0)
    except ValueError:
        raise ValueError(f"{WAIT_ENV}={raw!r}: expected a number of seconds, e.g. {WAIT_ENV}=600") from None


@contextmanager
def operation_lock(params: Params, owner: str, wait_s: float | None = None) -> Iterator[float]:
    """The pipeline lock of ``params``' workspace for one operation (see the module doc)."""
    with pipeline_lock(lock_path(params), wait_s=default_wait_s() if wait_s is None else wait_s,
                       owner=owner) as waited:
        yield waited


def locked(owner: str) -> Callable[[F], F]:
    """Decorator: run ``f(params, ...)`` under ``operation_lock(params, owner)``."""

    def wrap(func: F) -> F:
        @functools.wraps(func)
        def inner(params, *args, **kwargs):
            with operation_lock(params, owner):
                return func(params, *args, **kwargs)

        return inner  # type: ignore[return-value]

    return wrap
