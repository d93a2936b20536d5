"""Drop-folder watcher: one Prefect event per batch of photos, so a trigger can start `retrain`.

    landmark-lora watch                       # watch data/incoming/, emit `landmark-lora.photos.arrived`
    landmark-lora watch --quiet-seconds 10 --max-wait-seconds 300
    landmark-lora watch --dry-run             # print the events instead of sending them (no server needed)

Prefect has no file watcher of its own. This one (watchdog) debounces: a batch is sent once no
photo has arrived or changed for ``quiet_s`` seconds (copying 200 photos = one event, sent
after the last byte landed), or ``max_wait_s`` after the batch's first photo when photos keep
trickling in. The deployment trigger in prefect.yaml (``within`` + ``threshold``) debounces
again on the server side, and the flow's lock makes overlapping runs wait.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from landmark_lora.events import EVENT_PHOTOS_ARRIVED, EVENT_RESOURCE_ID
from landmark_lora.retrain.errors import say

Emit = Callable[[list[str]], object]


class PhotoBatcher:
    """Debounce logic, free of threads and file systems (``clock`` is injectable for tests).

    ``add(path)`` for every created/modified/moved photo; ``pop_due()`` returns the batch
    (sorted paths) once it is due, else None."""

    def __init__(self, quiet_s: float = 30.0, max_wait_s: float = 600.0, clock: Callable[[], float] = time.monotonic):
        if quiet_s < 0 or max_wait_s < quiet_s:
            raise ValueError("need 0 <= quiet_s <= max_wait_s")
        self.quiet_s, self.max_wait_s, self.clock = quiet_s, max_wait_s, clock
        self._paths: set[str] = set()
        self._first: float | None = None
        self._last: float | None = None
        self._lock = threading.Lock()

    def add(self, path: str) -> None:
        with self._lock:
            now = self.clock()
            self._paths.add(path)
            self._first = now if self._first is None else self._first
            self._last = now

    def seconds_until_due(self) -> float | None:
        with self._lock:
            if self._first is None or self._last is None:
                return None
            now = self.clock()
            return max(0.0, min(self._last + self.quiet_s, self._first + self.max_wait_s) - now)

    def pop_due(self) -> list[str] | None:
        wait = self.seconds_until_due()
        if wait is None or wait > 0:
            return None
        with self._lock:
            batch = sorted(self._paths)
            self._paths.clear()
            self._first = self._last = None
        return batch


def is_photo(path: str | Path, extensions: Iterable[str]) -> bool:
    """Photos only: no folders, no hidden or temporary files (rsync's .name.XXXX, our .partial-)."""
    p = Path(path)
    exts = {e.lower() for e in extensions}
    return not p.name.startswith(".") and p.suffix.lower() in exts


def emit_photos_arrived(batch: list[str], incoming: Path) -> object:
    """Send one Prefect event for a batch (needs PREFECT_API_URL; the trigger matches on it)."""
    from prefect.events import emit_event

    root = incoming.resolve()
    rel = [os.path.relpath(Path(p).resolve(), root).replace(os.sep, "/") for p in batch]
    landmarks = sorted({r.split("/", 1)[0] for r in rel if "/" in r})
    return emit_event(
        EVENT_PHOTOS_ARRIVED,
        resource={"prefect.resource.id": EVENT_RESOURCE_ID, "prefect.resource.name": str(incoming.resolve())},
        payload={"files": len(rel), "landmarks": landmarks, "examples": rel[:10]},
    )


def watch(incoming: Path, emit: Emit, extensions: Iterable[str], quiet_s: float = 30.0, max_wait_s: float = 600.0,
          stop: threading.Event | None = None, initial_scan: bool = True, poll_s: float = 0.5,
          log: Callable[[str], None] = say) -> None:
    """Watch ``incoming`` until ``stop`` is set; call ``emit(batch)`` once per debounced batch.

    ``initial_scan``: photos already waiting (dropped while no watcher ran) form the first batch."""
    from watchdog.events import FileSystemEvent, FileSystemEventHandler
    from watchdog.observers import Observer

    incoming = Path(incoming)
    incoming.mkdir(parents=True, exist_ok=True)
    exts = list(extensions)
    batcher = PhotoBatcher(quiet_s, max_wait_s)
    stop = stop or threading.Event()

    class Handler(FileSystemEventHandler):
        def on_any_event(self, event: FileSystemEvent) -> None:
            if event.is_directory or event.event_type not in ("created", "modified", "moved", "closed"):
                return
            path = getattr(event, "dest_path", "") or event.src_path
            if is_photo(path, exts):
                batcher.add(str(path))

    if initial_scan:
        for p in incoming.rglob("*"):
            if p.is_file() and is_photo(p, exts):
                batcher.add(str(p))
    observer = Observer()
    observer.schedule(Handler(), str(incoming), recursive=True)
    observer.start()
    log(f"watch: watching {incoming}/ (batch after {quiet_s:g} s of quiet, at most {max_wait_s:g} s)")
    try:
        while not stop.is_set():
            batch = batcher.pop_due()
            if batch:
                log(f"watch: {len(batch)} photo(s) arrived; emitting {EVENT_PHOTOS_ARRIVED}")
                emit(batch)
            wait = batcher.seconds_until_due()
            stop.wait(poll_s if wait is None else min(max(wait, 0.05), poll_s))
    finally:
        observer.stop()
        observer.join(timeout=5)
