"""The read side (issue 13): ``tap api``, a read-only HTTP API over what the processor
stores (Redis first, PostgreSQL behind it) and the live plant board it serves.

Dependencies point one way: ``api`` imports the processor's contract and its edges
for Secrets Manager, PostgreSQL connections and client time bounds; nothing imports
``api`` but the CLI and the tests (``e2e`` may start it).
"""
