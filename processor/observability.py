"""JSON logs and CloudWatch embedded-metric-format (EMF) metrics of the processor.

Logs: one JSON object per line on stderr (``ts``, ``level``, ``logger``, ``msg`` and
every ``extra=`` field). Nothing here formats a secret: secrets never reach a log
call in the first place (the secrets module hands them straight to the drivers),
and driver exceptions are logged by type and by their redacted message.

Metrics go through ``aws-embedded-metrics``. They are aggregated in memory and
flushed once per interval (10 s by default) and at shutdown, never per record or
per batch, so the stdout stream stays readable locally and cheap in CloudWatch.
The EMF environment defaults to ``Local`` (stdout): on Fargate the awslogs driver
ships stdout to CloudWatch Logs, which extracts the metrics; set
``AWS_EMF_ENVIRONMENT`` to override (e.g. ``Agent`` with a CloudWatch agent side-car).

Metric names (namespace from ``TAP_METRICS_NAMESPACE``, dimension ``Stream``):
``Records``, ``Readings``, ``Batches``, ``DeadLetters``, ``Anomalies`` (also per
``AnomalyType``), ``EndToEndLatency`` (ms, event time to commit, sampled),
``CommitLatency`` (ms per batch), ``MillisBehindLatest`` (per ``ShardId``),
``LeasesHeld``, ``LeasesLost``, ``StoreRetries``, ``RedisErrors``, ``Duplicates``
(readings already stored: producer retries and replays), ``DetectorStatesEvicted``
(idle devices dropped from memory, their state kept in Redis),
``SilenceEntriesEvicted`` (silence registry entries dropped from memory once their
silence was reported and saved, kept in Redis), ``SeqConflicts``
(readings repeating a stored key with another payload, dead-lettered).
"""

from __future__ import annotations

import json
import logging
import random
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Final, TextIO

log = logging.getLogger(__name__)

#: LogRecord attributes that are not ``extra=`` fields.
_STANDARD_ATTRS: Final = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)

#: EMF accepts at most 100 values per metric in one event.
MAX_SAMPLES: Final = 100


class JsonFormatter(logging.Formatter):
    """One JSON object per record; ``extra`` fields become top-level keys."""

    def __init__(self, static: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.static = dict(static or {})

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            **self.static,
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                out[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            out["exc_type"] = record.exc_info[0].__name__
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, separators=(",", ":"))


def configure_logging(
    level: str = "INFO", *, worker_id: str = "", stream: TextIO | None = None
) -> None:
    """Route every logger to one JSON handler (idempotent)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_tap_json", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter({"worker": worker_id} if worker_id else None))
    handler._tap_json = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    # Chatty libraries: their INFO lines are per request.
    for noisy in ("botocore", "boto3", "urllib3", "aws_embedded_metrics"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


class Metrics:
    """Thread-safe in-memory aggregation, flushed as EMF every ``interval_s``."""

    def __init__(
        self,
        namespace: str,
        stream_name: str,
        *,
        interval_s: float = 10.0,
        enabled: bool = True,
    ) -> None:
        self.namespace = namespace
        self.stream_name = stream_name
        self.interval_s = interval_s
        self.enabled = enabled
        self._lock = threading.Lock()
        self._counters: Counter[str] = Counter()
        self._anomalies: Counter[str] = Counter()
        self._latency: list[float] = []
        self._latency_seen = 0
        self._commit_ms: list[float] = []
        self._behind: dict[str, int] = {}
        self._leases_held = 0
        self._last_flush = time.monotonic()
        #: Totals since start (for the health endpoint and tests), never reset.
        self.totals: Counter[str] = Counter()
        self._rng = random.Random()  # noqa: S311 - sampling, not security
        if enabled:
            _default_emf_environment()

    # -- recording ---------------------------------------------------------------

    def batch_committed(
        self,
        *,
        records: int,
        readings: int,
        dead_letters: int,
        anomaly_types: Iterable[str],
        latencies_ms: Iterable[float],
        commit_ms: float,
    ) -> None:
        types = Counter(anomaly_types)
        with self._lock:
            for name, value in (
                ("Records", records),
                ("Readings", readings),
                ("Batches", 1),
                ("DeadLetters", dead_letters),
                ("Anomalies", sum(types.values())),
            ):
                self._counters[name] += value
                self.totals[name] += value
            self._anomalies.update(types)
            for latency in latencies_ms:
                self._sample(latency)
            if len(self._commit_ms) < MAX_SAMPLES:
                self._commit_ms.append(commit_ms)

    def _sample(self, value: float) -> None:
        # Reservoir sampling keeps MAX_SAMPLES uniformly chosen latencies per interval.
        self._latency_seen += 1
        if len(self._latency) < MAX_SAMPLES:
            self._latency.append(value)
        else:
            slot = self._rng.randrange(self._latency_seen)
            if slot < MAX_SAMPLES:
                self._latency[slot] = value

    def count(self, name: str, value: int = 1) -> None:
        with self._lock:
            self._counters[name] += value
            self.totals[name] += value

    def millis_behind(self, shard_id: str, millis: int) -> None:
        with self._lock:
            # The worst value of the interval is what an alarm wants.
            self._behind[shard_id] = max(millis, self._behind.get(shard_id, 0))

    def leases_held(self, count: int) -> None:
        with self._lock:
            self._leases_held = count

    # -- flushing ----------------------------------------------------------------

    def maybe_flush(self) -> None:
        if time.monotonic() - self._last_flush >= self.interval_s:
            self.flush()

    def flush(self) -> None:
        with self._lock:
            counters, self._counters = self._counters, Counter()
            anomalies, self._anomalies = self._anomalies, Counter()
            latency, self._latency, self._latency_seen = self._latency, [], 0
            commit_ms, self._commit_ms = self._commit_ms, []
            behind, self._behind = self._behind, {}
            leases = self._leases_held
            self._last_flush = time.monotonic()
        if not self.enabled:
            return
        try:
            self._emit(counters, anomalies, latency, commit_ms, behind, leases)
        except Exception:  # metrics must never stop the pipeline
            log.warning("metrics flush failed", exc_info=True)

    def _logger(self, dimensions: dict[str, str]) -> Any:
        from aws_embedded_metrics.logger.metrics_logger_factory import create_metrics_logger

        metrics = create_metrics_logger()
        metrics.set_namespace(self.namespace)
        metrics.set_dimensions(dimensions, use_default=False)
        return metrics

    def _emit(
        self,
        counters: Counter[str],
        anomalies: Counter[str],
        latency: list[float],
        commit_ms: list[float],
        behind: dict[str, int],
        leases: int,
    ) -> None:
        base = {"Stream": self.stream_name}
        main = self._logger(base)
        for name in ("Records", "Readings", "Batches", "DeadLetters", "Anomalies"):
            main.put_metric(name, counters.get(name, 0), "Count")
        for name in (
            "LeasesLost",
            "StoreRetries",
            "RedisErrors",
            "Duplicates",
            "DetectorStatesEvicted",  # issue 10 item 9
            "SilenceEntriesEvicted",  # issue 10 item 9, the silence registry
            "SeqConflicts",  # issue 10 item 4
        ):
            if counters.get(name):
                main.put_metric(name, counters[name], "Count")
        main.put_metric("LeasesHeld", leases, "Count")
        for value in latency:
            main.put_metric("EndToEndLatency", value, "Milliseconds")
        for value in commit_ms:
            main.put_metric("CommitLatency", value, "Milliseconds")
        main.flush_sync()
        for anomaly_type, count in sorted(anomalies.items()):
            per_type = self._logger({**base, "AnomalyType": anomaly_type})
            per_type.put_metric("Anomalies", count, "Count")
            per_type.flush_sync()
        for shard_id, millis in sorted(behind.items()):
            per_shard = self._logger({**base, "ShardId": shard_id})
            per_shard.put_metric("MillisBehindLatest", millis, "Milliseconds")
            per_shard.flush_sync()


def _default_emf_environment() -> None:
    """Write EMF to stdout unless an environment was configured explicitly.

    Without this the library probes the EC2 metadata endpoint and then falls back
    to a TCP agent at 127.0.0.1:25888, neither of which exists on Fargate with the
    awslogs driver."""
    from aws_embedded_metrics.config import get_config

    config = get_config()
    if not config.environment:
        config.environment = "local"
