"""Storage names are written once, in :mod:`processor.contract.storage` (issue 12 item 3).

A table of schema :data:`~processor.contract.storage.PG_SCHEMA` written as a literal
(``"... FROM tap.readings"``) or a Redis field written as a literal
(``hget(key, "seq")``, ``cached[b"seq"]``) outside the contract keeps working until
someone renames it in the contract; then that reader silently reads nothing. This
test reads the source (AST, so comments and docstrings do not count) of every package
and fails naming each such literal. The SQL migrations are the schema itself and are
not Python; ``tests/`` is not scanned: tests pin the stored format on purpose.

The contract against the schema the migrations create is compared in
``tests/integration/test_postgres.py`` (real PostgreSQL).
"""

from __future__ import annotations

import ast
import dataclasses
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from processor.contract import storage
from processor.postgres import reads

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("lib", "processor", "simulator", "local_pipeline", "e2e", "bench", "tap_cli", "api")
#: The one place the names may be written.
CONTRACT_DIR = Path("processor", "contract")

#: ``<schema>.<identifier>`` not preceded by a word character or a dot.
SCHEMA_NAME = re.compile(rf"(?<![\w.]){re.escape(storage.PG_SCHEMA)}\.[A-Za-z_]\w*")
#: redis-py hash commands whose arguments after the key are field names.
HASH_COMMANDS = frozenset(
    {"hget", "hmget", "hset", "hsetnx", "hdel", "hexists", "hincrby", "hincrbyfloat", "hstrlen"}
)
#: Every Redis hash and stream field name of the contract.
REDIS_FIELDS = frozenset(
    f.value for enum_ in (storage.LatestField, storage.AnomalyStreamField) for f in enum_
)


def _docstring_nodes(tree: ast.AST) -> set[int]:
    """ids of string constants that are statements (docstrings, bare strings)."""
    return {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
    }


def violations_in(source: str, name: str) -> Iterator[str]:
    tree = ast.parse(source, filename=name)
    docstrings = _docstring_nodes(tree)
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in docstrings
        ):
            for match in SCHEMA_NAME.finditer(node.value):
                yield f"{name}:{node.lineno}: table literal {match.group()!r}"
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in HASH_COMMANDS
        ):
            for arg in node.args[1:]:
                if isinstance(arg, ast.Constant) and arg.value in REDIS_FIELDS:
                    command = node.func.attr
                    yield f"{name}:{node.lineno}: Redis field literal {arg.value!r} in {command}()"
        # Bytes: a field looked up in a reply (hgetall answers bytes keys), cached[b"seq"],
        # cached.get(b"seq"), or passed as bytes to a command.
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, bytes)
            and node.value.decode(errors="replace") in REDIS_FIELDS
        ):
            yield f"{name}:{node.lineno}: Redis field literal {node.value!r}"


def violations(root: Path) -> list[str]:
    found: list[str] = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            relative = path.relative_to(root)
            if relative.is_relative_to(CONTRACT_DIR):
                continue
            found += violations_in(path.read_text(), str(relative))
    return found


def test_no_table_or_redis_field_literal_outside_the_contract() -> None:
    found = violations(ROOT)
    assert found == [], (
        "storage names written as literals; use processor.contract.storage "
        "(psycopg.sql.Identifier(*split_qualified(TABLE)) for SQL, LatestField for Redis):\n"
        + "\n".join(found)
    )


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ('q = "SELECT count(*) FROM {schema}.readings"', "table literal"),
        ('q = f"DELETE FROM {schema}.workers WHERE id = {{x}}"', "table literal"),
        ('pipe.hmget(key, "seq", "ts_us")', "Redis field literal 'seq' in hmget()"),
        ('client.hget(key, b"ts")', "Redis field literal b'ts'"),
        ('seq = cached.get(b"seq")', "Redis field literal b'seq'"),
    ],
)
def test_the_scan_finds_each_kind_of_literal(source: str, expected: str) -> None:
    found = list(violations_in(source.replace("{schema}", storage.PG_SCHEMA), "example.py"))
    assert any(expected in line for line in found), found


@pytest.mark.parametrize(
    "source",
    [
        f'"""Rows of ``{storage.PG_SCHEMA}.readings``: a docstring."""',
        "q = sql.SQL('SELECT 1 FROM {}').format(table_identifier(READINGS_TABLE))",
        'record = {"seq": 1, "ts": "2026-11-30T00:00:00Z"}',  # the record schema, not Redis
        'log = {"ts": now}',
        f'name = "{storage.PG_SCHEMA}_processor"',  # not a schema-qualified name
    ],
)
def test_the_scan_lets_the_contract_names_and_other_literals_pass(source: str) -> None:
    assert list(violations_in(source, "example.py")) == []


def test_every_table_is_schema_qualified_and_listed() -> None:
    tables = {
        value
        for name, value in vars(storage).items()
        if name.endswith("_TABLE") and isinstance(value, str)
    }
    assert tables == set(storage.TABLES)
    assert set(storage.APP_ROLE_TABLE_PRIVILEGES) == set(storage.TABLES)
    for table in storage.TABLES:
        assert storage.split_qualified(table)[0] == storage.PG_SCHEMA, table
    with pytest.raises(ValueError, match="not a schema-qualified name"):
        storage.split_qualified("readings")


def test_readers_that_unpack_rows_follow_the_contract_column_order() -> None:
    """``StoredAnomaly(*row)`` and ``StoredDeadLetter(*row)`` select the contract's
    columns in the contract's order; their fields must be that order."""
    anomaly_fields = [f.name for f in dataclasses.fields(reads.StoredAnomaly)]
    assert anomaly_fields == [
        *storage.ANOMALIES_COPY_COLUMNS,
        *storage.ANOMALIES_GENERATED_COLUMNS,
    ]
    dead_letter_fields = [f.name for f in dataclasses.fields(reads.StoredDeadLetter)]
    assert dead_letter_fields == list(storage.DEAD_LETTERS_COPY_COLUMNS)


def test_the_latest_hash_is_written_in_the_contract_order() -> None:
    from processor import redis_cache

    assert tuple(f.value for f in storage.LatestField) == redis_cache.LATEST_FIELDS
