"""Synthesize the stack once per test session (importing the provider bindings costs
10-40 s; synth itself is milliseconds).

Two stacks are synthesized in one ``App``: ``TapStack`` with the defaults (what
``make synth`` produces) and ``TapStackProd`` with every non-default flag flipped,
so that flag behaviour is tested without a second import. Tests that use them are
put in one xdist group so a single worker pays for the import.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest
from stack_support import DEFAULT_CONFIG, PRODUCTION_CONFIG, Synth

from lib.synthesized import SynthesizedStack, stack_file


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups (--dist loadgroup)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.stack)
            if "synth" in getattr(item, "fixturenames", ()):
                item.add_marker(pytest.mark.xdist_group("synth"))


@pytest.fixture(scope="session")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    if "gevent.monkey" in sys.modules:
        # gevent's monkey-patching (Locust) makes the jsii kernel hang: fail, don't hang.
        pytest.fail("gevent was imported in this process; cdktf cannot synthesize here")
    from cdktf import App

    from lib.tap_stack import TapStack

    outdir = tmp_path_factory.mktemp("cdktf.out")
    started = time.perf_counter()
    app = App(outdir=str(outdir))
    TapStack(app, DEFAULT_CONFIG)
    TapStack(app, PRODUCTION_CONFIG, stack_id="TapStackProd")
    app.synth()
    seconds = time.perf_counter() - started
    return Synth(
        outdir=outdir,
        default=SynthesizedStack.load(stack_file(outdir, "TapStack")),
        production=SynthesizedStack.load(stack_file(outdir, "TapStackProd")),
        seconds=seconds,
    )


@pytest.fixture(scope="session")
def stack(synth: Synth) -> SynthesizedStack:
    return synth.default


@pytest.fixture(scope="session")
def prod_stack(synth: Synth) -> SynthesizedStack:
    return synth.production
