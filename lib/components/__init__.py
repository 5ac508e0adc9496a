"""One construct per AWS component; :mod:`lib.tap_stack` wires them together.

Each module holds a frozen ``...Config`` dataclass (safe defaults) and a construct
whose typed attributes are the values other components need.
"""
