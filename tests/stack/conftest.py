"""The stack tests' two stacks, from the one synth per source tree
(:mod:`local_pipeline.stack_synth`): the first session of a fresh clone that needs a
synth (these tests, the local stack, the deploy smoke) imports the provider bindings
once for all of them, in a subprocess; the result is cached outside the repository,
keyed by the sources, the clone's path and the configurations
(``TAP_SYNTH_CACHE=off`` synthesizes anyway, into a folder of its own).

Two stacks are synthesized in one ``App``: ``TapStack`` with the defaults (what
``make synth`` produces) and ``TapStackProd`` with every non-default flag flipped,
so that flag behaviour is tested in the same synth.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from stack_support import Synth

from lib.synthesized import DEFAULT_STACK, SynthesizedStack, stack_file
from local_pipeline.stack_synth import TEST_PRODUCTION_STACK, stack_tests_request, synthesized


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.stack)


@pytest.fixture(scope="session")
def synth() -> Synth:
    started = time.perf_counter()
    outdir = synthesized(stack_tests_request())
    seconds = time.perf_counter() - started
    return Synth(
        outdir=outdir,
        default=SynthesizedStack.load(stack_file(outdir, DEFAULT_STACK)),
        production=SynthesizedStack.load(stack_file(outdir, TEST_PRODUCTION_STACK)),
        seconds=seconds,
    )


@pytest.fixture(scope="session")
def stack(synth: Synth) -> SynthesizedStack:
    return synth.default


@pytest.fixture(scope="session")
def prod_stack(synth: Synth) -> SynthesizedStack:
    return synth.production
