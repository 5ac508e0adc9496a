"""Read ``tap.detector_overrides`` at run time (the edge of :mod:`processor.core.overrides`).

:func:`load_overrides` is one query; :class:`OverridesRefresher` keeps the current
:class:`~processor.core.overrides.DetectorOverrides` and re-reads the table every
``TAP_DETECTOR_OVERRIDES_REFRESH_S`` seconds in a daemon thread, on one of the
store's pooled connections, so a plant's change applies within that time without a
deploy. The detector bank calls
:meth:`OverridesRefresher.current` per reading (an attribute read).

Failures never stop detection: a refused row is logged (naming its id and field)
and the rest apply; an unreachable database or a missing table (a processor
started before the migration) keeps the previous set and is logged.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, Final

from psycopg import sql

from processor.contract.storage import DETECTOR_OVERRIDES_TABLE
from processor.core.detection import DetectorConfig
from processor.core.overrides import DetectorOverrides, OverrideRow
from processor.postgres.identifiers import table_identifier

log = logging.getLogger(__name__)

_SELECT_OVERRIDES: Final = sql.SQL(
    "SELECT id, scope, match, setting, value FROM {table} ORDER BY id"
).format(table=table_identifier(DETECTOR_OVERRIDES_TABLE))


def load_overrides(conn: Any, base: DetectorConfig | None = None) -> DetectorOverrides:
    """Every row of the table, validated (refused rows are in ``.errors``)."""
    rows = conn.execute(_SELECT_OVERRIDES).fetchall()
    return DetectorOverrides.from_rows(
        (
            OverrideRow(scope, match, setting, value, f"id={row_id}")
            for row_id, scope, match, setting, value in rows
        ),
        base,
    )


#: Runs a function on a database connection and returns its result:
#: :meth:`processor.postgres.PostgresStore.run_query` in the worker.
RunQuery = Callable[[Callable[[Any], DetectorOverrides]], DetectorOverrides]


class OverridesRefresher:
    """The current overrides, refreshed in the background through ``run_query``.

    The worker passes its store's :meth:`~processor.postgres.PostgresStore.run_query`:
    each refresh borrows one of the store's pooled connections for one short query,
    instead of a login of its own every ``TAP_DETECTOR_OVERRIDES_REFRESH_S`` (a TLS
    handshake and a SCRAM exchange per worker per period), and runs under the pool's
    client-side deadline, so a frozen server cannot hold the refresh thread. During
    a PostgreSQL outage the call fails fast (:class:`~processor.postgres.errors.
    StoreUnavailable`) and the previous set stays; the first refresh after the
    outage reads the table again (tests/integration/test_detector_overrides.py).
    """

    def __init__(
        self,
        run_query: RunQuery,
        refresh_s: float,
        base: DetectorConfig | None = None,
    ) -> None:
        self._run_query = run_query
        self._refresh_s = refresh_s
        self._base = base
        self._current: DetectorOverrides | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="overrides", daemon=True)

    def current(self) -> DetectorOverrides | None:
        return self._current

    def start(self) -> OverridesRefresher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def refresh(self) -> None:
        """One read; keeps the previous set when it fails."""
        try:
            loaded = self._run_query(lambda conn: load_overrides(conn, self._base))
        except Exception as exc:
            log.warning(
                "detector overrides not refreshed; keeping the previous set",
                extra={"event": "detector_overrides_failed", "error": str(exc)},
            )
            return
        for error in loaded.errors:
            log.error(
                "detector override refused: %s",
                error,
                extra={"event": "detector_override_refused"},
            )
        self._current = loaded if loaded else None

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.refresh()
            self._stop.wait(self._refresh_s)
