"""The one error classification (issue 10, item 1), with the drivers' real exception
classes and SQLSTATEs."""

from __future__ import annotations

import botocore.exceptions
import psycopg
import pytest
import redis.exceptions
from psycopg import errors

from processor.core.model import LeaseToken
from processor.error_kinds import ErrorKind, classify, classify_sqlstate
from processor.postgres import AuthenticationFailed, LeaseLost, StoreUnavailable
from processor.secrets import SecretFormatError, SecretsUnavailable

R, C, F = ErrorKind.RETRYABLE, ErrorKind.CONNECTION_UNUSABLE, ErrorKind.FATAL


@pytest.mark.parametrize(
    ("exc_class", "kind"),
    [
        # class 08: connection exception
        (errors.ConnectionFailure, C),
        (errors.ConnectionException, C),
        # class 25: the session is gone or on a read-only node (failover)
        (errors.IdleInTransactionSessionTimeout, C),
        (errors.ReadOnlySqlTransaction, C),
        (errors.InFailedSqlTransaction, C),
        # class 57: operator intervention (restart, failover, statement timeout)
        (errors.AdminShutdown, C),
        (errors.CrashShutdown, C),
        (errors.CannotConnectNow, C),
        (errors.QueryCanceled, C),
        (errors.InternalError_, C),
        # transient on a healthy connection
        (errors.SerializationFailure, R),
        (errors.DeadlockDetected, R),
        (errors.LockNotAvailable, R),
        (errors.TooManyConnections, R),
        (errors.InvalidPassword, R),
        # retrying cannot help
        (errors.InsufficientPrivilege, F),
        (errors.UndefinedTable, F),
        (errors.NotNullViolation, F),
        (errors.SyntaxError, F),
    ],
)
def test_postgres_errors_by_sqlstate(exc_class: type[psycopg.Error], kind: ErrorKind) -> None:
    assert exc_class.sqlstate is not None
    assert classify_sqlstate(exc_class.sqlstate) is kind
    assert classify(exc_class("x")) is kind


def test_client_side_connection_losses_are_unusable() -> None:
    # What psycopg raises when the socket dies: no SQLSTATE.
    assert classify(psycopg.OperationalError("server closed the connection")) is C
    assert classify(psycopg.InterfaceError("the connection is closed")) is C
    assert classify_sqlstate(None) is C
    # A client-side ProgrammingError without SQLSTATE is our bug.
    assert classify(psycopg.ProgrammingError("wrong number of parameters")) is F


def test_our_own_and_other_edges_errors() -> None:
    assert classify(StoreUnavailable("down")) is R
    assert classify(AuthenticationFailed("rotating")) is R
    assert classify(LeaseLost(LeaseToken("s", "w", 1))) is F
    assert classify(SecretsUnavailable("unreachable")) is R
    assert classify(SecretFormatError("lacks password")) is F
    assert classify(redis.exceptions.ConnectionError()) is C
    assert classify(redis.exceptions.TimeoutError()) is C
    assert classify(redis.exceptions.ResponseError("BUSY")) is R
    throttled = botocore.exceptions.ClientError(
        {"Error": {"Code": "ThrottlingException"}}, "GetSecretValue"
    )
    denied = botocore.exceptions.ClientError(
        {"Error": {"Code": "AccessDeniedException"}}, "GetSecretValue"
    )
    assert classify(throttled) is R
    assert classify(denied) is F
    assert classify(botocore.exceptions.ReadTimeoutError(endpoint_url="http://x")) is C
    assert classify(TimeoutError()) is C
    assert classify(ValueError("bug")) is F
    assert classify(KeyError("bug")) is F
