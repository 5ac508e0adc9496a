"""One construct per AWS component; :mod:`lib.tap_stack` wires them together.

Each module holds a frozen, keyword-only ``...Config`` dataclass and a construct whose
one public attribute, ``outputs``, is a frozen ``...Outputs`` dataclass: the values other
components need. Every field is documented on the line above it; a deployment
setting's default lives in :class:`lib.config.StackConfig` only, a component-internal
default in the component only (docs/STACK.md, "Components";
tests/unit/test_component_configs.py).
"""
