"""Contracts that cross a boundary, defined once.

- :mod:`processor.contract.record`: the JSON reading a sensor sends (simulator,
  Locust, processor).
- :mod:`processor.contract.environment`: the processor task's environment
  variables (the CDKTF task definition is built from it).
- :mod:`processor.contract.storage`: PostgreSQL table and Redis key names
  (processor, e2e verifier, Locust's end-to-end listener).

This package must stay light: it is imported by the stack and the simulator and
may depend only on the standard library and msgspec.
"""
