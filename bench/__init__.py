"""``tap bench``: the pipeline's speed, each figure measured beside its reference.

One module per benchmark, so that each figure can be run and read alone (``tap bench
--only NAME``), each with a ``run(stack, options) -> dict``:

* :mod:`bench.throughput` — one process: decode, validate, detect, PostgreSQL commit
  under a lease, Redis update; beside the COPY limit and the naive per-record baseline.
* :mod:`bench.latency` — event time to PostgreSQL commit and to Redis on the local
  stack with real processor processes, at increasing rates until it breaks.
* :mod:`bench.handoff` — SIGTERM handoff and ``kill -9`` takeover times.
* :mod:`bench.scale` — one and two processor processes draining a pre-filled stream.
* :mod:`bench.tooling` — synth, unit suite and (optionally) ``make test`` times.

:mod:`bench.stack` owns the servers of a run, :mod:`bench.machine` the facts about
the machine printed beside every figure, :mod:`bench.cli` the command line.
Speed is measured here and never asserted in a test: ``tests/bench`` only checks
that a smoke run produces every figure.
"""
