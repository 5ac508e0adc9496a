"""Locust load campaigns against Kinesis with end-to-end latency (see docs/LOAD.md).

Modules that import Locust (and with it gevent's monkey-patching) are
:mod:`simulator.load.kinesis_user`, :mod:`simulator.load.e2e_listener` and
:mod:`simulator.load.campaign`; only ``simulator/locustfile.py`` imports them.
Everything else here (shapes, summary, report, target, cli) is plain Python, so
``tap load`` itself, the unit tests and the processor never patch their process.
"""
