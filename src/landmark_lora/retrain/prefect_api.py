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

1. the database is migrated here, in this process, with no deadline (idempotent: a database
   already at the head revision is left as it is);
2. the server is started with a generous timeout (``DEFAULT_STARTUP_TIMEOUT_S``) unless the user
   set one (environment or Prefect profile), and started once more, with twice the time, if the
   first start times out;
3. if both fail, PrefectStartupError says how to give it longer or run a server of one's own.

The flow then finds this running server (Prefect keeps one per process) and uses it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from landmark_lora.retrain.errors import say

TIMEOUT_SETTING = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
DEFAULT_STARTUP_TIMEOUT_S = 180  # Prefect's own default is 20 s
ATTEMPTS = 2


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


def ensure_prefect_api(command: str = "landmark-lora run", log: Callable[[str], None] | None = say) -> str | None:
    """Start the ephemeral Prefect server for this process unless PREFECT_API_URL is set.

    Returns the API URL of the server it started (None when a server is configured, or
    ephemeral mode is off and Prefect will say so itself). Raises PrefectStartupError."""
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_ALLOW_EPHEMERAL_MODE

    if PREFECT_API_URL.value() or not PREFECT_SERVER_ALLOW_EPHEMERAL_MODE.value():
        return None
    from prefect.server.api.server import SubprocessASGIServer

    timeout, user_set = startup_timeout()
    try:
        migrate_database()
    except Exception as err:  # the server would fail on the same database: say so now
        raise PrefectStartupError(_advice(command, f"migrating the Prefect database failed: {err}", timeout)) from err
    errors: list[str] = []
    for attempt in range(1, ATTEMPTS + 1):
        wait_s = timeout * attempt
        server = SubprocessASGIServer()  # the per-process instance the flow will use
        if server.running:
            return server.api_url
        t0 = time.monotonic()
        try:
            server.start(timeout=wait_s)
            return server.api_url
        except Exception as err:  # Prefect raises RuntimeError("Timed out while attempting ...")
            server.stop()  # a timed-out start leaves its process running: end it before retrying
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
