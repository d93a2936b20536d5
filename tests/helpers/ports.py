"""A free TCP port on loopback, for servers the tests and tools start (mlflow, moto).

    from tests.helpers.ports import free_port
    port = free_port()
"""

from __future__ import annotations

import socket


def free_port() -> int:
    """A port nothing listens on right now (the OS picks it; another process could still take it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
