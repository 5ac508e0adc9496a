"""The local stack and end-to-end harness: real PostgreSQL and Redis, emulated
Kinesis (kinesalite) and AWS control plane (moto), supervised on loopback ports.

See docs/LOCAL-STACK.md.
"""
