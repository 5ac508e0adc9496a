"""The e2e suite's target: the local stack with processors started from the
synthesized stack (default), or a deployed stack (``TAP_TARGET=deployed``); see
e2e/tests/targets.py and docs/E2E.md."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e.tests.targets import Capability, LocalTarget, Target, make_target
from local_pipeline.services.local_stack import LocalServices

#: Processors the local target runs (the demo's count; the shards spread 2/2).
LOCAL_PROCESSORS = 2


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "needs(capability): skip unless the target can do it (e2e.tests.targets)"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.e2e)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Synthesize (or find in the cache) before the first test: a cold synth takes
    10-110 s, which must not count against the first scenario's timeout."""
    import os

    from e2e.tests.targets import TARGET_ENV

    here = Path(__file__).parent
    wanted = any(
        here in Path(str(item.fspath)).parents and "target" in getattr(item, "fixturenames", ())
        for item in session.items
    )
    if wanted and os.environ.get(TARGET_ENV, "local") == "local":
        from local_pipeline.stack_resources import synthesize

        synthesize(log=lambda message: print(f"e2e: {message}"))


@pytest.fixture(scope="session")
def target(local_services_lazy: LocalServices) -> Iterator[Target]:
    """The pipeline under test, up for the whole session."""
    from local_pipeline.pipeline import LocalPipeline

    pipelines: list[LocalPipeline] = []

    def open_local() -> LocalPipeline:
        pipeline = LocalPipeline(
            local_services_lazy.run_dir,
            processors=LOCAL_PROCESSORS,
            services=local_services_lazy,
            log=lambda message: print(f"e2e: {message}"),
        )
        pipelines.append(pipeline)
        return pipeline.start()

    chosen = make_target(open_local)
    try:
        yield chosen
    finally:
        chosen.close()
        for pipeline in pipelines:
            pipeline.stop()


@pytest.fixture
def pipeline(target: Target, request: pytest.FixtureRequest) -> Iterator[Target]:
    """The target in its steady state before the test (every processor up, every
    shard owned), and brought back to it after (a scenario may kill one). A test
    marked ``needs(Capability.X)`` the target lacks is skipped before any of that."""
    for marker in request.node.iter_markers("needs"):
        require(target, marker.args[0])
    target.recover()
    yield target
    target.recover()


@pytest.fixture
def prefix(request: pytest.FixtureRequest) -> str:
    """Device id prefix unique to this test run (scopes every check to its devices)."""
    name = request.node.name.removeprefix("test_").replace("_", "")[:16]
    return f"e2e-{name}-{uuid.uuid4().hex[:6]}"


def require(target: Target, capability: Capability) -> None:
    reason = target.unsupported.get(capability)
    if reason:
        pytest.skip(f"{target.name} target cannot {capability}: {reason}")


def local_only(target: Target) -> LocalTarget:
    if not isinstance(target, LocalTarget):
        pytest.skip("needs the local target's process control")
    return target
