"""What went wrong in a retrain, and whether a retry may fix it.

    from landmark_lora.retrain.errors import StageFailed, is_transient_error
    raise StageFailed("train", "ConnectionError: mlflow unreachable", transient=True)
    is_transient_error(err)        # Prefect's retry_condition_fn asks this (flow.retry_if_transient)

Transient: network and storage hiccups (an unreachable MLflow server, a flaky S3, DVC's own lock).
Hard: a broken dataset contract, a bad config, a refused promotion, a bad ingest: retrying cannot help.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterator

from landmark_lora.logs import get_logger

Log = Callable[[str], None]
log = get_logger("landmark_lora.retrain")


def say(message: str) -> None:
    """The default ``log=`` of the retrain steps: an INFO line on the ``landmark_lora.retrain``
    logger (the CLI prints it; inside a flow run it lands in the run's Prefect logs too)."""
    log.info(message)


class StageFailed(RuntimeError):
    """A DVC stage (or DVC itself) failed. ``transient``: worth retrying (network, lock)."""

    def __init__(self, stage: str, cause: str, transient: bool, details: str = "", returncode: int = 1):
        self.stage, self.cause, self.transient = stage, cause, transient
        self.details, self.returncode = details, returncode
        kind = "transient" if transient else "hard"
        super().__init__(f"stage '{stage}' failed ({kind}): {cause}")


# What a failure says when a retry may help: in `dvc repro`'s output (a subprocess: text is all
# there is) and in an exception's message (MLflow wraps the network error into its own).
_TRANSIENT = re.compile(
    r"(ConnectionError|ConnectionRefused|ConnectionReset|Connection refused|Connection reset|Connection aborted"
    r"|Max retries exceeded|Temporary failure in name resolution|Name or service not known"
    r"|timed out|ReadTimeout|ConnectTimeout|TimeoutError|RemoteDisconnected|BrokenPipe"
    r"|(status(_code)?|HTTP|code)[\s:=]*(50[234]|429)\b|Service Unavailable|Bad Gateway|Gateway Time-?out"
    r"|Too Many Requests"
    r"|EndpointConnectionError|SlowDown|RequestTimeout|ThrottlingException|InternalError"
    r"|Unable to acquire lock|database is locked)",
    re.I,
)

# Network errors of the HTTP clients MLflow, Prefect and S3 use (not subclasses of the built-in
# ConnectionError/TimeoutError). Looked up in sys.modules: a library never imported raised nothing.
_CLIENT_NETWORK_ERRORS = {
    "requests.exceptions": ("ConnectionError", "Timeout"),
    "urllib3.exceptions": ("NewConnectionError", "MaxRetryError", "ProtocolError", "TimeoutError"),
    "httpx": ("NetworkError", "TimeoutException"),
    "botocore.exceptions": ("ConnectionError", "ReadTimeoutError"),
}


def is_transient_text(text: str) -> bool:
    return bool(_TRANSIENT.search(text or ""))


def _network_error_types() -> Iterator[type]:
    yield ConnectionError
    yield TimeoutError
    for module_name, names in _CLIENT_NETWORK_ERRORS.items():
        module = sys.modules.get(module_name)
        for name in names if module is not None else ():
            cls = getattr(module, name, None)
            if isinstance(cls, type) and issubclass(cls, BaseException):
                yield cls


def _hard_error_types() -> tuple[type, ...]:
    """This project's errors that no retry can fix (each says what to fix instead)."""
    from landmark_lora.config import ConfigError
    from landmark_lora.ops.ingest import IngestError
    from landmark_lora.ops.promote import PromotionError
    from landmark_lora.stages.validate import DatasetContractError

    return DatasetContractError, ConfigError, PromotionError, IngestError


def is_transient_error(exc: BaseException | None) -> bool:
    """True for failures a retry may fix: StageFailed(transient), network errors, timeouts.

    A broken dataset contract, a bad config or a diverged model is hard: retrying cannot help."""
    seen: set[int] = set()
    network, hard = tuple(_network_error_types()), None
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, StageFailed):
            return exc.transient
        if isinstance(exc, network):
            return True
        hard = hard or _hard_error_types()
        if isinstance(exc, hard):
            return False
        if is_transient_text(str(exc)):
            return True
        exc = exc.__cause__ or exc.__context__
    return False
