"""The sensor-reading processor: the container that the ECS Fargate service runs.

Layout: ``processor.contract`` holds what crosses a boundary (record schema,
task environment, table and key names) and is imported by the stack, the
simulator and the harness; ``processor.core`` is pure (no I/O); the adapters to
Kinesis, PostgreSQL, Redis and Secrets Manager sit at the edge.
"""
