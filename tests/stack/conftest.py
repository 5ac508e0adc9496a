"""Synthesize the stack once per input, not once per session: importing the provider
bindings costs 10-150 s (synth itself is milliseconds), so the result is cached
outside the repository, keyed by a hash of everything it depends on (see
:func:`_synth_cache_key`; ``TAP_SYNTH_CACHE=off`` bypasses it).

Two stacks are synthesized in one ``App``: ``TapStack`` with the defaults (what
``make synth`` produces) and ``TapStackProd`` with every non-default flag flipped,
so that flag behaviour is tested without a second import. Tests that use them are
put in one xdist group so a single worker pays for the import.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pytest
from stack_support import DEFAULT_CONFIG, DEV_HTTP_CONFIG, PRODUCTION_CONFIG, Synth

from lib.synthesized import SynthesizedStack, stack_file


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups (--dist loadgroup)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.stack)
            if "synth" in getattr(item, "fixturenames", ()):
                item.add_marker(pytest.mark.xdist_group("synth"))


#: ``TAP_SYNTH_CACHE=off`` synthesizes even when the cache has this exact synth.
SYNTH_CACHE_ENV = "TAP_SYNTH_CACHE"
#: Packages whose version changes the synthesized JSON.
SYNTH_PACKAGES = ("cdktf", "cdktf-cdktf-provider-aws", "constructs", "jsii")


def _synth_cache_key() -> str:
    """Everything the two test stacks depend on: the stack's sources and TAP_*
    configuration (the key the local stack's synth cache uses), this folder's
    configurations, and the versions of the CDKTF packages."""
    from importlib.metadata import PackageNotFoundError, version

    from e2e.local.stack_resources import synth_key

    digest = hashlib.sha256(synth_key().encode())
    for path in (Path(__file__), Path(__file__).with_name("stack_support.py")):
        digest.update(path.read_bytes())
    for package in SYNTH_PACKAGES:
        try:
            digest.update(f"{package}={version(package)}".encode())
        except PackageNotFoundError:
            digest.update(f"{package}=-".encode())
    return digest.hexdigest()[:16]


def _synthesize(outdir: Path) -> None:
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    if "gevent.monkey" in sys.modules:
        # gevent's monkey-patching (Locust) makes the jsii kernel hang: fail, don't hang.
        pytest.fail("gevent was imported in this process; cdktf cannot synthesize here")
    from cdktf import App

    from lib.tap_stack import TapStack

    app = App(outdir=str(outdir))
    TapStack(app, DEFAULT_CONFIG)
    TapStack(app, PRODUCTION_CONFIG, stack_id="TapStackProd")
    TapStack(app, DEV_HTTP_CONFIG, stack_id="TapStackDevHttp")
    app.synth()


def _cached_synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synth folder for this exact input, from the cache (``~/.cache/
    tap-iot-pipeline/stack-tests/<key>``) or synthesized into it. Importing the
    provider bindings costs 35-150 s depending on the machine's load; with the
    cache, a second session (another tox env, another clone) with the same inputs
    pays nothing."""
    if os.environ.get(SYNTH_CACHE_ENV, "").lower() in {"0", "off", "no", "false"}:
        outdir = tmp_path_factory.mktemp("cdktf.out")
        _synthesize(outdir)
        return outdir
    from e2e.local.stack_resources import default_cache_dir

    cache = default_cache_dir(os.environ).parent / "stack-tests"
    target = cache / _synth_cache_key()
    names = ("TapStack", "TapStackProd", "TapStackDevHttp")
    if all(stack_file(target, name).is_file() for name in names):
        return target
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one synth per key (parallel sessions)
        if not all(stack_file(target, name).is_file() for name in names):
            staging = Path(tempfile.mkdtemp(prefix="synth-", dir=cache))
            try:
                _synthesize(staging)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            shutil.rmtree(target, ignore_errors=True)
            staging.rename(target)
    return target


@pytest.fixture(scope="session")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    started = time.perf_counter()
    outdir = _cached_synth(tmp_path_factory)
    seconds = time.perf_counter() - started
    return Synth(
        outdir=outdir,
        default=SynthesizedStack.load(stack_file(outdir, "TapStack")),
        production=SynthesizedStack.load(stack_file(outdir, "TapStackProd")),
        seconds=seconds,
        dev_http=SynthesizedStack.load(stack_file(outdir, "TapStackDevHttp")),
    )


@pytest.fixture(scope="session")
def stack(synth: Synth) -> SynthesizedStack:
    return synth.default


@pytest.fixture(scope="session")
def prod_stack(synth: Synth) -> SynthesizedStack:
    return synth.production
