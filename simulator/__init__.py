"""The sensor-fleet simulator: plant model, signals, anomaly scenarios, poison
records and sinks (Kinesis, JSONL, memory). See docs/SIMULATOR.md.

The record schema is not defined here: every reading is built to the shared
contract in :mod:`processor.contract.record`.
"""
