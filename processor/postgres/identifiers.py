"""The storage contract's table and column names as :mod:`psycopg.sql` identifiers.

Every module of the edge (and the e2e verifier, which reads the same tables) writes
its SQL from :mod:`processor.contract.storage` through these two functions, so no
table name is a literal in a query and every name is quoted the same way. A module
of its own because all the others need it and it needs nothing of them.
"""

from __future__ import annotations

from collections.abc import Sequence

from psycopg import sql

from processor.contract.storage import split_qualified


def table_identifier(qualified: str) -> sql.Identifier:
    """``schema.table`` of the contract as a quoted SQL identifier."""
    return sql.Identifier(*split_qualified(qualified))


def column_list(columns: Sequence[str], alias: str | None = None) -> sql.Composable:
    """``a, b, c`` (or ``t.a, t.b, t.c``) as quoted identifiers."""
    prefix = () if alias is None else (alias,)
    return sql.SQL(", ").join(sql.Identifier(*prefix, c) for c in columns)
