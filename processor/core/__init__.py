"""The pure core of the processor: no I/O, no clock reads, no globals.

Everything here is a function of its inputs (times are passed in), so it is
unit-tested with plain values and a fake clock.
"""
