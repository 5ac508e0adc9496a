"""The TapStack: the pipeline's AWS infrastructure in CDKTF (see docs/STACK.md).

``lib.config`` and ``lib.synthesized`` are light (no cdktf import); ``lib.tap_stack``
and ``lib.components`` load the provider bindings (about 10 s on first import).
"""
