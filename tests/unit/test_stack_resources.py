"""Local processors get the synthesized task definition's environment unchanged,
except the documented local overrides (local_pipeline/stack_resources.py).

Runs on a document shaped like ``cdk.tf.json`` (no cdktf import, milliseconds) and,
when a synthesized stack is at hand (``TAP_STACK_OUT``, ``cdktf.out/`` or the synth
cache of the local stack), on the real one too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lib.synthesized import DEFAULT_STACK as DEFAULT_STACK_ID
from lib.synthesized import SynthesizedStack, stack_file
from local_pipeline.stack_resources import (
    ADDED_VARIABLES,
    CONDITIONAL_OVERRIDES,
    LOCAL_OVERRIDES,
    ON_DEMAND_LOCAL_SHARDS,
    StackResourceError,
    StackResources,
    changed_variables,
    local_environment,
    with_overrides,
)
from local_pipeline.stack_synth import (
    SMOKE_EXTRA_ENV,
    SMOKE_SUFFIX,
    TEST_DEFAULT_CONFIG,
    SynthRequest,
    bundle_key,
    default_cache_dir,
    local_request,
    smoke_request,
    smoke_test_request,
    stack_tests_request,
    standard_requests,
)
from processor.contract.environment import TASK_VARIABLES, ProcessorSettings, SettingsError

REPO = Path(__file__).resolve().parents[2]
STREAM = "aws_kinesis_stream.ingestion_stream_1"
ARN = "arn:aws:secretsmanager:eu-west-2:123456789012:secret:{}-AbCdEf"


def _document(*, on_demand: bool = False, extra_env: dict[str, str] | None = None) -> dict:
    environment = {
        "TAP_STREAM_NAME": f"${{{STREAM}.name}}",
        "AWS_REGION": "eu-west-2",
        "TAP_ENVIRONMENT": "dev",
        "TAP_DB_HOST": "${aws_db_instance.database_instance_1.address}",
        "TAP_DB_PORT": "5432",
        "TAP_DB_NAME": "tap",
        "TAP_DB_SECRET_ARN": (
            "${aws_db_instance.database_instance_1.master_user_secret[0].secret_arn}"
        ),
        "TAP_DB_SSLMODE": "verify-full",
        "TAP_DB_CA_BUNDLE": "/etc/ssl/certs/rds-global-bundle.pem",
        "TAP_REDIS_HOST": (
            "${aws_elasticache_replication_group.cache_rg_1.primary_endpoint_address}"
        ),
        "TAP_REDIS_PORT": "6379",
        "TAP_REDIS_AUTH_SECRET_ARN": "${aws_secretsmanager_secret.cache_auth_1.arn}",
        "TAP_REDIS_TLS": "true",
        "TAP_HEALTH_PORT": "8080",
        "TAP_METRICS_NAMESPACE": "TapPipeline",
        **(extra_env or {}),
    }
    container = {
        "name": "processor",
        "environment": [{"name": k, "value": v} for k, v in environment.items()],
    }
    stream: dict[str, Any] = {
        "name": "kinesis-readings-dev-local",
        "stream_mode_details": {"stream_mode": "ON_DEMAND" if on_demand else "PROVISIONED"},
    }
    if not on_demand:
        stream["shard_count"] = 3
    return {
        "resource": {
            "aws_kinesis_stream": {"ingestion_stream_1": stream},
            "aws_db_instance": {"database_instance_1": {"identifier": "postgres-dev-local"}},
            "aws_secretsmanager_secret": {"cache_auth_1": {"name": "secret-redis-auth-dev-local"}},
            "aws_ecs_task_definition": {
                "processing_task_1": {"container_definitions": json.dumps([container])}
            },
        }
    }


def _load(tmp_path: Path, document: dict) -> StackResources:
    path = tmp_path / "cdk.tf.json"
    path.write_text(json.dumps(document))
    return StackResources.load(path)


def _local(
    resources: StackResources, *, tls: bool = True, db_name: str = "tap", stream: str | None = None
) -> dict:
    return local_environment(
        resources,
        endpoints={
            "AWS_ENDPOINT_URL": "http://127.0.0.1:1",
            "AWS_ENDPOINT_URL_KINESIS": "http://127.0.0.1:2",
            "AWS_ENDPOINT_URL_SECRETS_MANAGER": "http://127.0.0.1:1",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "eu-west-2",
            "AWS_DEFAULT_REGION": "eu-west-2",
            "AWS_EC2_METADATA_DISABLED": "true",
        },
        db_host="127.0.0.1",
        db_port=40001,
        db_name=db_name,
        db_tls=tls,
        db_ca_path="/run/tls/ca.pem" if tls else None,
        db_secret_arn=ARN.format("rds!db-postgres-dev-local"),
        redis_host="127.0.0.1",
        redis_port=40002,
        redis_tls=tls,
        redis_ca_path="/run/tls/ca.pem" if tls else None,
        redis_secret_arn=ARN.format("secret-redis-auth-dev-local"),
        health_port=40003,
        worker_id="processor-1",
        stream_name=stream,
    )


def _real_stack() -> Path | None:
    import os

    candidates = []
    if os.environ.get("TAP_STACK_OUT"):
        candidates.append(stack_file(os.environ["TAP_STACK_OUT"]))
    bundle = default_cache_dir(os.environ) / bundle_key(standard_requests(os.environ), REPO)
    candidates += [
        stack_file(bundle / local_request(os.environ).name),
        stack_file(REPO / "cdktf.out"),
    ]
    return next((path for path in candidates if path.is_file()), None)


def _stacks(tmp_path: Path) -> list[StackResources]:
    stacks = [_load(tmp_path, _document())]
    real = _real_stack()
    if real is not None:
        stacks.append(StackResources.load(real))
    return stacks


def test_resources_come_from_the_stack(tmp_path: Path) -> None:
    resources = _load(tmp_path, _document())
    assert resources.stream_name == "kinesis-readings-dev-local"
    assert resources.shard_count == 3
    assert resources.redis_secret_name == "secret-redis-auth-dev-local"
    assert resources.db_secret_name == "rds!db-postgres-dev-local"
    assert resources.stream_references == {"TAP_STREAM_NAME"}


def test_on_demand_stream_gets_four_local_shards(tmp_path: Path) -> None:
    resources = _load(tmp_path, _document(on_demand=True))
    assert resources.on_demand and resources.shard_count == ON_DEMAND_LOCAL_SHARDS


def test_every_variable_not_overridden_is_the_synthesized_value(tmp_path: Path) -> None:
    for resources in _stacks(tmp_path):
        env = _local(resources)
        for name, synthesized in resources.task_environment.items():
            if name in resources.stream_references:
                assert env[name] == resources.stream_name
            elif name not in LOCAL_OVERRIDES:
                assert env[name] == synthesized, f"{name} changed locally ({resources.stack_path})"
        # Only the documented variables differ, and only additions are the SDK's.
        assert set(changed_variables(resources, env)) <= set(LOCAL_OVERRIDES)
        added = set(env) - set(resources.task_environment)
        assert added <= ADDED_VARIABLES | set(LOCAL_OVERRIDES), sorted(added)
        ProcessorSettings.from_environ(env)


def test_conditional_overrides_apply_only_when_the_local_server_cannot_match(
    tmp_path: Path,
) -> None:
    resources = _load(tmp_path, _document())
    with_tls = _local(resources)
    assert with_tls["TAP_DB_SSLMODE"] == "verify-full" and with_tls["TAP_REDIS_TLS"] == "true"
    without = _local(resources, tls=False, db_name="other")
    assert without["TAP_DB_SSLMODE"] == "disable" and without["TAP_REDIS_TLS"] == "false"
    assert without["TAP_DB_NAME"] == "other"
    assert set(changed_variables(resources, without)) <= set(LOCAL_OVERRIDES) | set(
        CONDITIONAL_OVERRIDES
    )


def test_override_list_names_only_contract_variables() -> None:
    names = {var.name for var in TASK_VARIABLES}
    assert set(LOCAL_OVERRIDES) <= names
    assert set(CONDITIONAL_OVERRIDES) <= names
    # Nothing the stack sets as plain configuration is on the list.
    for kept in ("TAP_METRICS_NAMESPACE", "TAP_ENVIRONMENT", "AWS_REGION", "TAP_STREAM_NAME"):
        assert kept not in LOCAL_OVERRIDES


def test_an_unknown_reference_stops_the_local_stack(tmp_path: Path) -> None:
    document = _document(extra_env={"TAP_LOG_LEVEL": "${aws_ssm_parameter.level.value}"})
    with pytest.raises(StackResourceError, match="TAP_LOG_LEVEL"):
        _load(tmp_path, document)


def _tree(root: Path) -> Path:
    (root / "lib").mkdir(parents=True)
    (root / "lib" / "config.py").write_text("# the stack's configuration\n")
    (root / "main.py").write_text("print()\n")
    return root


def test_synth_key_follows_sources_and_stack_configuration(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    base = bundle_key([local_request({})], root)
    # A variable the stack does not read leaves the synth as it is; one it reads not.
    assert bundle_key([local_request({"TAP_PG_DSN": "x"})], root) == base
    assert bundle_key([local_request({"TAP_AZ_COUNT": "3"})], root) != base
    (root / "main.py").write_text("print(1)\n")
    assert bundle_key([local_request({})], root) != base


def test_every_synth_of_make_test_is_one_bundle() -> None:
    # The stack tests, the local stack and the deploy smoke each imported the
    # provider bindings (27-68 s of CPU); one process now synthesizes all three, so
    # a fresh clone pays one import. A configuration outside the set gets its own.
    standard = standard_requests({})
    assert stack_tests_request() in standard
    assert local_request({}) in standard
    assert smoke_test_request({}) in standard
    assert len({r.name for r in standard}) == len(standard) == 3
    assert (DEFAULT_STACK_ID, TEST_DEFAULT_CONFIG) in stack_tests_request().stacks
    assert local_request({}, "other") not in standard
    assert smoke_request({"TAP_STATE_BUCKET": "b"}) == smoke_request({})


def test_the_deploy_smoke_tests_synth_is_in_the_bundle() -> None:
    # What e2e/tests/test_deploy_smoke.py asks for (run_smoke(suffix=SMOKE_SUFFIX,
    # synth_env=SMOKE_EXTRA_ENV), the alarm subscriptions included): outside the
    # standard set it got a bundle of its own, a second import of the provider
    # bindings (about 60 s of CPU) in every fresh clone's `make test`.
    asked = smoke_request({}, suffix=SMOKE_SUFFIX, extra_env=dict(SMOKE_EXTRA_ENV))
    assert asked in standard_requests({})
    ((_, config),) = asked.stacks
    assert config.alarm_emails and config.alarm_https_endpoints


def test_the_smoke_synth_is_main_py_with_the_smoke_environment() -> None:
    ((_, config),) = smoke_request({}, extra_env={"TAP_ALARM_EMAILS": "a@example.com"}).stacks
    assert (config.suffix, config.environment) == ("smoke", "dev")
    assert config.alarm_emails == ("a@example.com",)
    assert isinstance(smoke_request({}), SynthRequest)


def test_synthesized_stack_parser_is_the_stack_tests_one(tmp_path: Path) -> None:
    # The local stack reads the same SynthesizedStack the stack tests read.
    path = tmp_path / "cdk.tf.json"
    path.write_text(json.dumps(_document()))
    assert SynthesizedStack.load(path).task_environment()["TAP_DB_PORT"] == "5432"


def test_synth_key_differs_between_two_clones_with_the_same_sources(tmp_path: Path) -> None:
    # The synthesized document names the checkout's absolute path (the local state
    # file lives at the project root), so one clone must not reuse another's synth
    # from the shared cache: CI's clone once read a worktree's state path.
    keys = [bundle_key([local_request({})], _tree(tmp_path / clone)) for clone in ("one", "two")]
    assert keys[0] != keys[1]


def test_a_runs_own_stream_and_explicit_overrides_are_the_only_changes(
    tmp_path: Path,
) -> None:
    # Every local processor starts from the synthesized task environment (issue 12:
    # the hand-built one is gone). A test's own stream and database, and the settings
    # it overrides on purpose, are the only other differences, each named.
    for resources in _stacks(tmp_path):
        env = _local(resources, stream="tap-test-0123", db_name="tap_test_0123")
        assert {env[name] for name in resources.stream_references} == {"tap-test-0123"}
        overridden = with_overrides(env, {"lease_duration_s": 7, "db_host": "10.0.0.9"})
        differ = {k for k in set(env) | set(overridden) if env.get(k) != overridden.get(k)}
        assert differ == {"TAP_LEASE_DURATION_S", "TAP_DB_HOST"}
        assert overridden["TAP_DB_HOST"] == "10.0.0.9"
        assert ProcessorSettings.from_environ(overridden).lease_duration_s == 7.0
        changed = set(changed_variables(resources, overridden))
        local = set(LOCAL_OVERRIDES) | set(CONDITIONAL_OVERRIDES)
        assert changed <= local | {"TAP_LEASE_DURATION_S"}, sorted(changed - local)


def test_an_override_that_is_no_setting_or_no_valid_value_is_refused(tmp_path: Path) -> None:
    env = _local(_load(tmp_path, _document()))
    with pytest.raises(StackResourceError, match="lease_seconds"):
        with_overrides(env, {"lease_seconds": 3})
    with pytest.raises(SettingsError, match="TAP_LEASE_DURATION_S"):
        with_overrides(env, {"lease_duration_s": "soon"})


def test_only_the_processor_cluster_starts_processor_processes() -> None:
    # One class starts processors, from the synthesized environment: a second
    # ProcessorProcess.start elsewhere would be a second way (and a second
    # environment) again.
    callers = sorted(
        str(path.relative_to(REPO))
        for folder in ("local_pipeline", "e2e", "bench", "tap_cli", "simulator", "tests")
        for path in (REPO / folder).rglob("*.py")
        if "ProcessorProcess." + "start(" in path.read_text()
    )
    assert callers == ["local_pipeline/verify.py"], callers
