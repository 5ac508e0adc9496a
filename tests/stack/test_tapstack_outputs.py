"""The synthesized stack's outputs are exactly the names of
:mod:`processor.contract.stack_outputs`, which every reader of ``terraform output``
uses (issue 12 item 3): an output renamed or added on one side only fails here."""

from __future__ import annotations

from lib.synthesized import SynthesizedStack
from processor.contract import stack_outputs


def test_the_stack_declares_exactly_the_contract_outputs(stack: SynthesizedStack) -> None:
    # cdktf writes the outputs sorted by name; the contract keeps the stack's order.
    assert sorted(stack.outputs) == sorted(stack_outputs.ALL)
    assert len(set(stack_outputs.ALL)) == len(stack_outputs.ALL)
