"""The one place that decides what an error means for the processor (issue 10, item 1).

Every edge raises its own exceptions (psycopg, redis-py, botocore, our secrets
provider); the worker needs one answer for each of them:

* :attr:`ErrorKind.RETRYABLE`: transient; retry the same call later on the same or a
  new connection (serialization failure, lock timeout, too many connections, a login
  refused during a rotation, Secrets Manager unreachable).
* :attr:`ErrorKind.CONNECTION_UNUSABLE`: transient, but the connection that raised it
  must be thrown away, never pooled again: SQLSTATE classes **08** (connection
  exception), **25** (invalid transaction state: ``idle_in_transaction_session_timeout``
  ended the session, ``read_only_sql_transaction`` means we reached a replica or a
  demoted primary during a failover, a failed transaction) and **57** (operator
  intervention: admin shutdown, crash shutdown, cannot connect now, query cancelled),
  ``XX`` (internal error), and client-side connection losses (no SQLSTATE).
* :attr:`ErrorKind.FATAL`: retrying the same thing cannot help (a malformed secret,
  a missing privilege, a bug); the caller stops what it was doing (a shard runner
  gives its lease up and exits; the planner takes the shard again after a cool-down).

Pure: no I/O; it inspects exception types and SQLSTATE codes only, so it is
unit-tested with the drivers' real exception classes
(``tests/unit/test_error_kinds.py``).
"""

from __future__ import annotations

import enum
from typing import Final

import botocore.exceptions
import psycopg
import redis.exceptions

from processor.secrets import SecretFormatError, SecretsUnavailable


class ErrorKind(enum.StrEnum):
    RETRYABLE = "retryable"
    CONNECTION_UNUSABLE = "connection_unusable"
    FATAL = "fatal"


#: SQLSTATE classes (first two characters) after which the session cannot be trusted.
CONNECTION_UNUSABLE_CLASSES: Final = frozenset({"08", "25", "57", "XX"})
#: SQLSTATE classes worth retrying on the same connection: transaction rollback
#: (serialization failure, deadlock), insufficient resources (too many connections,
#: disk full for a moment), system error (I/O), invalid authorization (a password
#: rotation in progress: the connector refreshes the secret).
RETRYABLE_CLASSES: Final = frozenset({"40", "53", "58", "28"})
#: Single SQLSTATEs worth retrying whose class is otherwise fatal: lock_not_available
#: (``lock_timeout``) is class 55, "object not in prerequisite state".
RETRYABLE_STATES: Final = frozenset({"55P03"})

#: AWS error codes that mean "later" rather than "never".
_RETRYABLE_AWS_CODES: Final = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "RequestLimitExceeded",
        "ProvisionedThroughputExceededException",
        "LimitExceededException",
        "InternalFailure",
        "InternalServiceError",
        "ServiceUnavailable",
        "KMSThrottlingException",
    }
)


def classify_sqlstate(sqlstate: str | None) -> ErrorKind:
    """The kind of a PostgreSQL error by its SQLSTATE (None: client-side failure,
    which for a driver error means the connection broke)."""
    if sqlstate is None:
        return ErrorKind.CONNECTION_UNUSABLE
    if sqlstate in RETRYABLE_STATES or sqlstate[:2] in RETRYABLE_CLASSES:
        return ErrorKind.RETRYABLE
    if sqlstate[:2] in CONNECTION_UNUSABLE_CLASSES:
        return ErrorKind.CONNECTION_UNUSABLE
    return ErrorKind.FATAL


def classify(exc: BaseException) -> ErrorKind:
    """The kind of any exception the processor's edges raise."""
    # Imported here: processor.postgres.connection imports this module.
    from processor.postgres import StoreError, StoreUnavailable

    if isinstance(exc, StoreUnavailable | SecretsUnavailable):
        return ErrorKind.RETRYABLE
    if isinstance(exc, StoreError | SecretFormatError):
        return ErrorKind.FATAL  # LeaseLost, MigrationError: nothing to retry
    if isinstance(exc, psycopg.Error):
        if exc.sqlstate is None and not isinstance(
            exc, psycopg.OperationalError | psycopg.InterfaceError
        ):
            return ErrorKind.FATAL  # e.g. a ProgrammingError raised by the client: a bug
        return classify_sqlstate(exc.sqlstate)
    if isinstance(exc, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError):
        return ErrorKind.CONNECTION_UNUSABLE
    if isinstance(exc, redis.exceptions.RedisError):
        return ErrorKind.RETRYABLE
    if isinstance(exc, botocore.exceptions.ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        return ErrorKind.RETRYABLE if code in _RETRYABLE_AWS_CODES else ErrorKind.FATAL
    if isinstance(exc, botocore.exceptions.BotoCoreError):
        return ErrorKind.CONNECTION_UNUSABLE  # endpoint unreachable, read/connect timeout
    if isinstance(exc, TimeoutError | ConnectionError):
        return ErrorKind.CONNECTION_UNUSABLE
    return ErrorKind.FATAL
