"""``tap local up|down|status``: the local stack as a long-running, supervised set of
servers in a run folder (see docs/LOCAL-STACK.md)."""
