"""The pipeline on one machine: real PostgreSQL and Redis, emulated Kinesis
(kinesalite) and AWS control plane (moto) on loopback ports (``services``), the
synthesized stack made local (``stack_resources``, one synth per source tree in
``stack_synth``), processor processes (``processes``), and ``tap local
up|down|status`` as a supervised set of servers in a run folder (``cli``,
``supervisor``). See docs/LOCAL-STACK.md.

Nothing here imports the end-to-end suite (:mod:`e2e`); the simulator never imports
this package (import-linter contracts in pyproject.toml).
"""
