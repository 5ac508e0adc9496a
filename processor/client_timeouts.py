"""Client-side time bounds of every call the processor makes (issue 10, item 3).

A failed-over endpoint often drops packets without a reset, and a middlebox or a
frozen server can accept bytes and never answer. Without client-side bounds a
blocked call waits for the kernel's retransmissions (about 15 minutes with Linux's
``tcp_retries2=15``) or forever, and it blocks the thread that made it: a runner, the
renew thread (then every lease of the worker expires), the chores. Each figure below
says why it is what it is; the edges read them from here (one source of truth,
``tests/unit/test_client_timeouts.py`` checks the clients are built with them).
"""

from __future__ import annotations

from typing import Final

# -- PostgreSQL (libpq parameters and our own per-call deadline) -------------------------

#: libpq ``connect_timeout``: the whole connection set-up (TCP, TLS, login). RDS in
#: the same VPC answers in milliseconds; 5 s leaves room for a cold TLS handshake on
#: a busy task and still lets a retry loop tick well inside the liveness limit (15 s).
PG_CONNECT_TIMEOUT_S: Final = 5
#: libpq ``tcp_user_timeout``: how long sent data may stay unacknowledged before the
#: kernel gives up on the connection (instead of ~15 minutes of retransmissions after
#: a failover's black hole). 10 s is longer than any healthy round trip by orders of
#: magnitude and shorter than the default lease (10 s) plus one renewal period.
PG_TCP_USER_TIMEOUT_MS: Final = 10_000
#: TCP keepalives: a silent peer is noticed while we wait for an answer after
#: ``idle + interval * count`` = 25 s instead of the kernel's two hours.
PG_KEEPALIVES_IDLE_S: Final = 10
PG_KEEPALIVES_INTERVAL_S: Final = 5
PG_KEEPALIVES_COUNT: Final = 3
#: Server-side ``statement_timeout`` of pooled connections. The longest statement of
#: the hot path is a batch commit of at most 10,000 records, about 1.4 s at the 7.2k
#: records/s the throughput benchmark measured for the whole path; 20 s is more than
#: ten times that. Migrations run without it (they wait for a peer's advisory lock).
PG_STATEMENT_TIMEOUT_MS: Final = 20_000
#: Client-side deadline of a pooled call = statement timeout + this margin. The server
#: normally ends a slow statement first (with an error we classify); the deadline is
#: for a connection on which no answer can ever arrive (a middlebox that acknowledges
#: and drops, a frozen server): TCP keepalives and ``tcp_user_timeout`` never fire
#: there, because the peer's kernel keeps acknowledging. A watchdog then shuts the
#: socket down, the call fails as connection-unusable and is retried on a new one.
PG_CALL_MARGIN_S: Final = 5.0
#: Deadline of the liveness ping of a pooled connection idle for more than a second.
PG_PING_TIMEOUT_S: Final = 2.0
#: How often the watchdog looks for overdue calls (the deadlines' resolution).
PG_WATCHDOG_TICK_S: Final = 0.25

# -- Redis (redis-py) -------------------------------------------------------------------

#: ``socket_timeout``: each command's reply. The processor's commands are one Lua
#: script per batch (milliseconds) and a few small reads; 2 s bounds what a dead
#: Redis costs a batch (the cache is then marked stale and skipped until it answers).
REDIS_SOCKET_TIMEOUT_S: Final = 2.0
#: ``socket_connect_timeout``: TCP + TLS set-up to an in-VPC ElastiCache endpoint.
REDIS_CONNECT_TIMEOUT_S: Final = 2.0
#: ``health_check_interval``: a pooled connection idle this long is PINGed before use,
#: so a connection a failover cut is found out before it carries a batch's writes.
REDIS_HEALTH_CHECK_INTERVAL_S: Final = 30

# -- AWS APIs (botocore Config) ---------------------------------------------------------

#: TCP + TLS to a regional endpoint (or the VPC endpoint).
AWS_CONNECT_TIMEOUT_S: Final = 5
#: GetRecords returns at most 10 MB; 10 s per attempt is generous even then.
KINESIS_READ_TIMEOUT_S: Final = 10
#: GetSecretValue returns a few hundred bytes: 5 s per attempt. A secret is fetched
#: while a connection is being opened, so this bounds how long a login can hang.
SECRETS_READ_TIMEOUT_S: Final = 5
#: botocore "standard" retry mode, ``total_max_attempts`` (the first call included):
#: throttling and transient errors back off inside the SDK, bounded to a few attempts
#: so that the caller's own retry loop (and its logs and health) stays in charge.
AWS_MAX_ATTEMPTS: Final = 3
