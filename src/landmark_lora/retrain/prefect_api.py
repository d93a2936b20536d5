"""A Prefect API for one-off runs (`landmark-lora run`, `python flows/retrain.py`) that a busy
machine cannot stop: the ephemeral server, started with time to spare.

    from landmark_lora.retrain.prefect_api import PrefectStartupError, ensure_prefect_api
    try:
        url = ensure_prefect_api("landmark-lora run")   # None when PREFECT_API_URL names a server
    except PrefectStartupError as err:
        print(err)                                       # says what to do; exit exitcodes.EXIT_TEMPFAIL

Without PREFECT_API_URL, Prefect starts a temporary server in a subprocess the first time a flow
needs the API, and gives up after ``PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS`` (20 s by
default), while that subprocess imports the server and, on a fresh ``PREFECT_HOME``, migrates
its database. On a busy 2-core laptop that is not enough. So, before the flow starts:

1. the database is migrated here, in this process, with no deadline, once per Prefect version:
   a stamp beside a SQLite database (``<db>.landmark-lora-migrated``: Prefect's version and the
   file's inode) says it is done, and the next run neither imports Prefect's migration code nor
   checks again; the server itself is started with ``PREFECT_SERVER_DATABASE_MIGRATE_ON_START=false``
   (unless the user set it), so the database is migrated once, not twice per run;
2. the server is started with a generous timeout (``DEFAULT_STARTUP_TIMEOUT_S``) unless the user
   set one (environment or Prefect profile), and started once more, with twice the time, if the
   first start times out;
3. if both fail, PrefectStartupError says how to give it longer or run a server of one's own.

The flow then finds this running server (Prefect keeps one per process) and uses it.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from landmark_lora.retrain.errors import say

TIMEOUT_SETTING = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
DEFAULT_STARTUP_TIMEOUT_S = 180  # Prefect's own default is 20 s
ATTEMPTS = 2
MIGRATE_SETTING = "PREFECT_SERVER_DATABASE_MIGRATE_ON_START"  # or its old name, PREFECT_API_DATABASE_...
MIGRATED_SUFFIX = ".landmark-lora-migrated"


class PrefectStartupError(RuntimeError):
    """The temporary Prefect server did not come up; the message says what to do."""


def startup_timeout() -> tuple[int, bool]:
    """(seconds to wait for the server, whether the user chose it). The user's setting, from the
    environment or the active Prefect profile, wins over DEFAULT_STARTUP_TIMEOUT_S."""
    from prefect.settings import get_current_settings

    ephemeral = get_current_settings().server.ephemeral
    if "startup_timeout_seconds" in ephemeral.model_fields_set:
        return int(ephemeral.startup_timeout_seconds), True
    return DEFAULT_STARTUP_TIMEOUT_S, False


def migrate_database() -> None:
    """Create or upgrade the Prefect database (what `prefect server database upgrade -y` does),
    with no deadline. A database already at the head revision is not touched."""
    from prefect.server.database import provide_database_interface
    from prefect.utilities.asyncutils import run_coro_as_sync

    run_coro_as_sync(provide_database_interface().create_db())


def _sqlite_file() -> Path | None:
    """The Prefect database's file when it is SQLite on disk (the default), else None."""
    from prefect.settings import get_current_settings

    url = get_current_settings().server.database.connection_url
    text = url.get_secret_value() if url is not None else ""
    if not text.startswith("sqlite") or ":memory:" in text or "///" not in text:
        return None
    return Path(text.split("///", 1)[1].split("?", 1)[0])


def _stamp(db: Path) -> str:
    import prefect

    return f"prefect {prefect.__version__} inode {db.stat().st_ino}\n"


def migrate_once() -> bool:
    """migrate_database() unless the stamp beside the SQLite database says this Prefect version
    already migrated this very file. Returns True when it migrated. Other databases: always."""
    db = _sqlite_file()
    stamp = db.with_name(db.name + MIGRATED_SUFFIX) if db is not None else None
    if db is not None and stamp is not None and db.is_file() and stamp.is_file():
        with contextlib.suppress(OSError):
            if stamp.read_text(encoding="utf-8") == _stamp(db):
                return False
    migrate_database()
    if db is not None and stamp is not None and db.is_file():
        with contextlib.suppress(OSError):  # no stamp: the next run migrates (checks) again, nothing worse
            stamp.write_text(_stamp(db), encoding="utf-8")
    return True


@contextlib.contextmanager
def _server_migrates_not() -> Iterator[None]:
    """The server process inherits os.environ: tell it the database is migrated (unless the user chose)."""
    if MIGRATE_SETTING in os.environ or MIGRATE_SETTING.replace("_SERVER_", "_API_") in os.environ:
        yield
        return
    os.environ[MIGRATE_SETTING] = "false"
    try:
        yield
    finally:
        os.environ.pop(MIGRATE_SETTING, None)


def _start(server, wait_s: float, meanwhile: Callable[[], object] | None) -> None:
    """``server.start`` (a subprocess, then polling its health), with ``meanwhile`` run in this
    thread while it boots: the server's imports take one core, this process's the other."""
    if meanwhile is None:
        server.start(timeout=wait_s)
        return
    failed: list[BaseException] = []

    def start() -> None:
        try:
            server.start(timeout=wait_s)
        except BaseException as err:  # noqa: BLE001 - re-raised in the caller's thread below
            failed.append(err)

    thread = threading.Thread(target=start, name="prefect-server-start", daemon=True)
    thread.start()
    try:
        meanwhile()
    except Exception as err:  # the caller's own failure, not the server's: not worth a retry
        raise _MeanwhileFailed() from err
    finally:
        thread.join()
    if failed:
        raise failed[0]


class _MeanwhileFailed(Exception):
    """``meanwhile`` raised (its error is the cause)."""


def ensure_prefect_api(command: str = "landmark-lora run", log: Callable[[str], None] | None = say,
                       meanwhile: Callable[[], object] | None = None) -> str | None:
    """Start the ephemeral Prefect server for this process unless PREFECT_API_URL is set.

    ``meanwhile``: work of this process (imports the flow will need) to do while the server boots
    (run once, on the first attempt; also when no server is started).
    Returns the API URL of the server it started (None when a server is configured, or
    ephemeral mode is off and Prefect will say so itself). Raises PrefectStartupError."""
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_ALLOW_EPHEMERAL_MODE

    if PREFECT_API_URL.value() or not PREFECT_SERVER_ALLOW_EPHEMERAL_MODE.value():
        if meanwhile is not None:
            meanwhile()
        return None
    from prefect.server.api.server import SubprocessASGIServer

    timeout, user_set = startup_timeout()
    try:
        migrate_once()
    except Exception as err:  # the server would fail on the same database: say so now
        raise PrefectStartupError(_advice(command, f"migrating the Prefect database failed: {err}", timeout)) from err
    errors: list[str] = []
    for attempt in range(1, ATTEMPTS + 1):
        wait_s = timeout * attempt
        server = SubprocessASGIServer()  # the per-process instance the flow will use
        if server.running:
            if meanwhile is not None:
                meanwhile()
            return server.api_url
        t0 = time.monotonic()
        try:
            with _server_migrates_not():
                _start(server, wait_s, meanwhile)
            return server.api_url
        except _MeanwhileFailed as err:
            raise err.__cause__ from None  # type: ignore[misc]
        except Exception as err:  # Prefect raises RuntimeError("Timed out while attempting ...")
            server.stop()  # a timed-out start leaves its process running: end it before retrying
            meanwhile = None  # done on the first attempt (or it raised: then it raises again below, unhidden)
            errors.append(f"attempt {attempt}: {type(err).__name__}: {str(err)[:300]} ({time.monotonic() - t0:.0f} s)")
            if log and attempt < ATTEMPTS:
                log(f"{command}: the temporary Prefect server did not start within {wait_s} s "
                    f"({'your ' + TIMEOUT_SETTING if user_set else 'busy machine?'}); trying once more "
                    f"with {timeout * (attempt + 1)} s")
    raise PrefectStartupError(_advice(command, "\n  ".join(errors), timeout))


def _advice(command: str, cause: str, timeout: int) -> str:
    return (f"{command}: the temporary Prefect server did not start ({ATTEMPTS} attempts, "
            f"{timeout} s then {timeout * ATTEMPTS} s). The machine may be too busy right now.\n"
            f"  {cause}\n"
            "What to do, either:\n"
            f"  - give it longer:   export {TIMEOUT_SETTING}=600   then: {command}\n"
            "  - or run a Prefect server of your own, once, in another terminal:\n"
            "        prefect server start\n"
            "    and point this shell at it:\n"
            "        export PREFECT_API_URL=http://127.0.0.1:4200/api\n"
            f"        {command}")
