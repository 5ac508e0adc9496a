"""Deploy smoke: ``terraform apply`` / ``output`` / ``destroy`` of the synthesized stack
against emulated AWS (moto server), offline, in minutes. See docs/DEPLOY-SMOKE.md.

Steps (each logged in one run folder):

1. synthesize the stack as the real entry point (``main.py``) configures it, in a
   subprocess so the ~600 MB jsii runtime never lives in the caller's process, from
   the one synth per source tree (local_pipeline/stack_synth.py), or take an already
   synthesized ``cdk.tf.json``; either is copied into the run folder;
2. write ``deploy_smoke_override.tf.json`` beside it: the provider's ``endpoints``
   for every AWS service the stack uses (derived from its resource and data types),
   pointed at moto, plus dummy keys and skipped account/credential checks. Terraform
   merges ``*_override.tf.json`` files into the configuration, so the synthesized
   JSON is never edited and the stack's code knows nothing about emulators;
   The override also points a local backend at the run folder: the stack's own
   local state path is the project root (issue #11, item 1), which a smoke must
   never write to;
3. ``terraform init`` (offline provider mirror when present), ``plan -out`` and
   ``show -json`` of that plan, ``apply`` of it, ``output -json``, ``destroy``, each
   with a timeout;
4. after apply: the Redis AUTH token is read from the emulated Secrets Manager and
   searched for in the first plan's JSON, in the text of a new ``terraform plan`` and
   of ``terraform show``, and in a post-apply plan's JSON, where Terraform keeps
   sensitive values in clear by design (every occurrence there must be marked
   sensitive); the alarm topic's subscriptions are read back from the emulator.

Run it as ``python -m e2e.deploy_smoke`` (``--help`` for options); it prints a JSON
summary and exits non-zero when a step fails.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from e2e.terraform import (
    Terraform,
    TerraformError,
    find_provider_mirror,
    terraform_binary,
    terraform_environment,
    write_cli_config,
)
from lib.synthesized import stack_file
from local_pipeline.services.aws_emulator import (
    DUMMY_ACCESS_KEY_ID,
    DUMMY_SECRET_ACCESS_KEY,
    MotoServer,
    emulator_client,
)
from local_pipeline.stack_synth import SynthError, smoke_request, synthesized
from processor.contract import stack_outputs as out

REPO_ROOT: Final = Path(__file__).resolve().parent.parent
STACK: Final = "TapStack"
OVERRIDE_FILE: Final = "deploy_smoke_override.tf.json"
#: The issue's bar for apply + output + destroy in CI.
BUDGET_SECONDS: Final = 600.0

#: Resource/data type family -> the AWS provider's ``endpoints`` key (provider 5.x
#: names). The longest matching family wins: ``aws_cloudwatch_log_group`` is CloudWatch
#: Logs, ``aws_cloudwatch_metric_alarm`` CloudWatch. A family matches the type itself
#: and ``<family>_...`` (so ``aws_route`` covers ``aws_route_table`` but not
#: ``aws_route53_zone``). ``None``: computed locally, no API call.
#: Maintained by hand because the provider publishes no type -> service table; a type
#: missing here stops the smoke (:class:`UnmappedResourceType`) instead of letting the
#: provider call real AWS, so a new resource type cannot slip through unnoticed.
ENDPOINT_KEYS: Final[Mapping[str, str | None]] = {
    # Application Auto Scaling: the provider's key is "applicationautoscaling" (the
    # resource prefix "appautoscaling" is only an alias). Without it the provider
    # talks to the real regional endpoint.
    "aws_appautoscaling": "applicationautoscaling",
    "aws_caller_identity": "sts",
    "aws_cloudwatch": "cloudwatch",
    "aws_cloudwatch_event": "events",
    "aws_cloudwatch_log": "logs",
    "aws_db": "rds",
    "aws_rds": "rds",
    "aws_ecr": "ecr",
    "aws_ecs": "ecs",
    "aws_elasticache": "elasticache",
    "aws_iam": "iam",
    "aws_iam_policy_document": None,
    "aws_kinesis": "kinesis",
    "aws_kinesis_firehose": "firehose",
    "aws_kms": "kms",
    "aws_lambda": "lambda",
    "aws_partition": None,
    "aws_region": None,
    "aws_route53": "route53",
    "aws_s3": "s3",
    "aws_secretsmanager": "secretsmanager",
    "aws_sns": "sns",
    "aws_sqs": "sqs",
    "aws_ssm": "ssm",
    # EC2 (VPC networking is the EC2 API).
    "aws_availability_zones": "ec2",
    "aws_default_network_acl": "ec2",
    "aws_default_route_table": "ec2",
    "aws_default_security_group": "ec2",
    "aws_ec2": "ec2",
    "aws_egress_only_internet_gateway": "ec2",
    "aws_eip": "ec2",
    "aws_flow_log": "ec2",
    "aws_internet_gateway": "ec2",
    "aws_main_route_table_association": "ec2",
    "aws_nat_gateway": "ec2",
    "aws_network_acl": "ec2",
    "aws_route": "ec2",
    "aws_security_group": "ec2",
    "aws_subnet": "ec2",
    "aws_vpc": "ec2",
}
#: The provider's SDK retry count against the emulator (see :func:`provider_override`).
EMULATOR_MAX_RETRIES: Final = 5
#: Endpoints set whatever the stack holds: the provider may call STS on its own.
ALWAYS_ENDPOINTS: Final = frozenset({"sts"})


class TerraformMoto(MotoServer):
    """moto server with the settings the AWS provider needs (:mod:`e2e.deploy_smoke_moto`).

    Same supervision as the local stack's :class:`MotoServer`; only the entry point
    differs."""

    name = "moto-terraform"

    def argv(self) -> list[str]:
        return [
            sys.executable, "-m", "e2e.deploy_smoke_moto", "-H", self.host, "-p", str(self.port)
        ]  # fmt: skip


class UnmappedResourceType(LookupError):
    """The stack uses a type :data:`ENDPOINT_KEYS` does not know: add it there."""


def endpoint_key(type_name: str) -> str | None:
    """The ``endpoints`` key serving one resource or data source type."""
    families = [f for f in ENDPOINT_KEYS if type_name == f or type_name.startswith(f + "_")]
    if not families:
        raise UnmappedResourceType(
            f"{type_name}: no provider endpoint known for it; add its family to "
            "e2e.deploy_smoke.ENDPOINT_KEYS (otherwise terraform would call real AWS)"
        )
    return ENDPOINT_KEYS[max(families, key=len)]


def used_types(document: Mapping[str, Any]) -> set[str]:
    """Every resource and data source type in a synthesized ``cdk.tf.json``."""
    return set(document.get("resource", {})) | set(document.get("data", {}))


def endpoint_keys(document: Mapping[str, Any]) -> set[str]:
    keys = {endpoint_key(t) for t in used_types(document)}
    return {k for k in keys if k is not None} | ALWAYS_ENDPOINTS


def provider_override(document: Mapping[str, Any], endpoint_url: str) -> dict[str, Any]:
    """The ``*_override.tf.json`` content pointing the ``aws`` provider at an emulator.

    Terraform merges it argument by argument into the stack's provider block (region
    and default tags stay the stack's); ``endpoints`` is a nested block, which an
    override replaces as a whole, so it must list every service (it does).
    """
    providers = document.get("provider", {}).get("aws", [])
    aliases = [p.get("alias") for p in providers if p.get("alias")]
    if aliases:
        # Each aliased provider would need its own override block; none exists today.
        raise NotImplementedError(f"aliased aws providers are not overridden yet: {aliases}")
    return {
        "provider": {
            "aws": [
                {
                    "access_key": DUMMY_ACCESS_KEY_ID,
                    "secret_key": DUMMY_SECRET_ACCESS_KEY,
                    "skip_credentials_validation": True,
                    "skip_requesting_account_id": True,
                    "skip_metadata_api_check": True,
                    "skip_region_validation": True,
                    # Few SDK retries: an emulator answers at once or not at all. The
                    # default (25, exponential backoff up to 20 s) turned one call moto
                    # does not implement (HTTP 500) into ~8 minutes of "Still
                    # creating..." instead of an error naming the call.
                    "max_retries": EMULATOR_MAX_RETRIES,
                    "endpoints": [{key: endpoint_url for key in sorted(endpoint_keys(document))}],
                }
            ]
        }
    }


def stack_suffix(document: Mapping[str, Any]) -> str | None:
    """The deployment suffix, from the provider's default tags (``Suffix``)."""
    for provider in document.get("provider", {}).get("aws", []):
        for block in provider.get("default_tags", []):
            suffix = block.get("tags", {}).get("Suffix")
            if suffix:
                return str(suffix)
    return None


def backend_override(document: Mapping[str, Any], state_path: Path) -> dict[str, Any]:
    """A local backend writing to ``state_path`` (replaces the stack's, whose state
    file lives at the project root); nothing for a remote backend, which a smoke
    must not be given (synthesize drops ``TAP_STATE_BUCKET``)."""
    backend = document.get("terraform", {}).get("backend", {})
    if set(backend) != {"local"}:
        raise ValueError(f"the smoke needs a local backend, the stack has {sorted(backend)}")
    return {"terraform": {"backend": {"local": {"path": str(state_path)}}}}


def write_override(stack_dir: Path, endpoint_url: str) -> Path:
    document = json.loads((stack_dir / "cdk.tf.json").read_text(encoding="utf-8"))
    path = stack_dir / OVERRIDE_FILE
    override = provider_override(document, endpoint_url)
    override.update(backend_override(document, stack_dir / "terraform.tfstate"))
    path.write_text(json.dumps(override, indent=2) + "\n", encoding="utf-8")
    return path


#: Where plan JSON keeps the sensitivity marks of each kind of value.
_SENSITIVE_SIBLING: Final = {
    "values": "sensitive_values",
    "before": "before_sensitive",
    "after": "after_sensitive",
}


def occurrences(value: Any, needle: str, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Paths (keys and indexes) of every string in a JSON value containing ``needle``."""
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in occurrences(v, needle, (*path, k))]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in occurrences(v, needle, (*path, i))]
    return [path] if isinstance(value, str) and needle in value else []


def marked_sensitive(document: Any, path: tuple[Any, ...]) -> bool:
    """Whether Terraform's plan/state JSON marks the value at ``path`` as sensitive:
    the nearest ``values``/``before``/``after`` on the path has a sibling
    ``sensitive_values``/``before_sensitive``/``after_sensitive`` whose tree holds
    ``true`` at (a prefix of) the rest of the path."""
    for cut in range(len(path) - 1, -1, -1):
        sibling = _SENSITIVE_SIBLING.get(path[cut]) if isinstance(path[cut], str) else None
        if sibling is None:
            continue
        parent: Any = document
        for step in path[:cut]:
            parent = parent[step]
        marks: Any = parent.get(sibling) if isinstance(parent, dict) else None
        for step in path[cut + 1 :]:
            if marks is True:
                return True
            in_dict = isinstance(marks, dict) and step in marks
            in_list = isinstance(marks, list) and isinstance(step, int) and step < len(marks)
            if not (in_dict or in_list):
                return False
            marks = marks[step]
        return marks is True
    return False


def unmarked_occurrences(document: Any, needle: str) -> list[str]:
    """Where ``needle`` appears in plan/state JSON without a sensitivity mark."""
    return [
        "/".join(map(str, p))
        for p in occurrences(document, needle)
        if not marked_sensitive(document, p)
    ]


def synthesize(
    log: Path,
    *,
    suffix: str = "smoke",
    environment: str = "dev",
    extra_env: Mapping[str, str] | None = None,
    # 293 s measured on the shared 2-core machine at load average 12 (2026-11-30).
    timeout: float = 900,
) -> Path:
    """The stack folder of ``main.py``'s synth with the smoke's environment
    (:func:`local_pipeline.stack_synth.smoke_environment`); returns the stack folder.

    From the one synth per source tree (:mod:`local_pipeline.stack_synth`, a subprocess
    on purpose: the provider bindings cost ~600 MB and must not be imported next to
    locust or the e2e fixtures): the test smoke's configuration is one of the
    standard ones, so a fresh clone imports the bindings once for it, the stack
    tests and the local stack. The cache's folder is returned: ``stage_stack``
    copies the document into the run folder.
    """
    request = smoke_request(os.environ, suffix=suffix, environment=environment, extra_env=extra_env)
    lines: list[str] = []
    try:
        folder = synthesized(request, timeout=timeout, log=lines.append)
    except SynthError as exc:
        log.write_text(f"{exc}\n", encoding="utf-8")
        raise RuntimeError(f"synth failed; see {log}") from exc
    log.write_text("".join(f"{line}\n" for line in lines) or "synth: from the cache\n")
    stack_dir = stack_file(folder).parent
    if not stack_dir.joinpath("cdk.tf.json").is_file():
        raise RuntimeError(f"synth failed (no {stack_dir}/cdk.tf.json); see {log}")
    return stack_dir


def stage_stack(source: Path, run_dir: Path) -> Path:
    """Copy a synthesized ``cdk.tf.json`` (a file or its stack folder) into the run
    folder: terraform writes ``.terraform``, state and the override next to it, which
    must not land in the shared ``cdktf.out``."""
    source_file = source / "cdk.tf.json" if source.is_dir() else source
    stack_dir = run_dir / "stack"
    stack_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source_file, stack_dir / "cdk.tf.json")
    return stack_dir


@dataclass
class SmokeResult:
    run_dir: Path
    stack_dir: Path
    endpoint_keys: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    scalable_targets: list[dict[str, Any]] = field(default_factory=list)
    #: ``protocol:endpoint`` of every subscription of the alarm topic, read from moto.
    alarm_subscriptions: list[str] = field(default_factory=list)
    #: Where the Redis AUTH token was found (see :func:`scan_for_token`); the key
    #: ``token_read`` says whether the token was read at all.
    token_findings: dict[str, Any] = field(default_factory=dict)
    leftovers: dict[str, list[str]] = field(default_factory=dict)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def output_values(self) -> dict[str, Any]:
        return {name: item.get("value") for name, item in self.outputs.items()}

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "error": self.error,
            "run_dir": str(self.run_dir),
            "endpoint_keys": self.endpoint_keys,
            "seconds": {k: round(v, 1) for k, v in self.seconds.items()},
            "outputs": sorted(self.outputs),
            "scalable_targets": [t["ResourceId"] for t in self.scalable_targets],
            "alarm_subscriptions": self.alarm_subscriptions,
            "token_findings": self.token_findings,
            "leftovers": self.leftovers,
        }


def scalable_targets(endpoint_url: str) -> list[dict[str, Any]]:
    """ECS scalable targets registered in the emulator."""
    client = emulator_client("application-autoscaling", endpoint_url)
    targets: list[dict[str, Any]] = client.describe_scalable_targets(ServiceNamespace="ecs")[
        "ScalableTargets"
    ]
    return targets


def alarm_subscriptions(endpoint_url: str, topic_arn: str) -> list[str]:
    """``protocol:endpoint`` of every subscription of the alarm topic in the emulator."""
    client = emulator_client("sns", endpoint_url)
    found = client.list_subscriptions_by_topic(TopicArn=topic_arn)["Subscriptions"]
    return sorted(f"{s['Protocol']}:{s['Endpoint']}" for s in found)


def scan_for_token(
    terraform: Terraform, endpoint_url: str, outputs: Mapping[str, Any], *,
    first_plan: Path, timeout: float,
) -> dict[str, Any]:  # fmt: skip
    """Search the Redis AUTH token (read from the emulated secret) in every plan and
    show output the smoke can produce. Returns where it was found; empty lists mean
    nowhere (``token_read`` says the search had a token to look for)."""
    secret_arn = outputs[out.REDIS_AUTH_SECRET_ARN]["value"]
    secret = emulator_client("secretsmanager", endpoint_url).get_secret_value(SecretId=secret_arn)
    token = str(json.loads(secret["SecretString"])["auth_token"])
    findings: dict[str, Any] = {"token_read": len(token) >= 16}
    # 1. The plan the stack was applied from (what a CI job would publish).
    findings["first_plan_json"] = [
        "/".join(map(str, p))
        for p in occurrences(json.loads(first_plan.read_text(encoding="utf-8")), token)
    ]
    # 2. What a person sees: plan and show in the terminal.
    # -refresh=false: the state as stored is what matters (and moto's read-back drift
    # would only slow the plan down); data sources are still read.
    after = terraform.run(
        "plan-after", "plan", "-input=false", "-no-color", "-refresh=false",
        "-out=tfplan-after", timeout=timeout, separate_stdout=True,
    )  # fmt: skip
    show = terraform.run("show", "show", "-no-color", timeout=timeout, separate_stdout=True)
    findings["plan_text"] = after.stdout.read_text(encoding="utf-8").count(token)
    findings["show_text"] = show.stdout.read_text(encoding="utf-8").count(token)
    # 3. Post-apply plan JSON holds state values in clear (Terraform's design): each
    # occurrence must carry the sensitive mark that makes tools redact it.
    after_json = terraform.run(
        "show-plan-after", "show", "-json", "tfplan-after", timeout=timeout,
        separate_stdout=True,
    )  # fmt: skip
    document = json.loads(after_json.stdout.read_text(encoding="utf-8"))
    findings["post_apply_plan_json_unmarked"] = unmarked_occurrences(document, token)
    findings["post_apply_plan_json_marked"] = len(occurrences(document, token))
    return findings


def leftovers(endpoint_url: str, names: Iterable[str]) -> dict[str, list[str]]:
    """Resources of the smoke still in the emulator (after destroy: should be none).

    Only the services whose leftovers would cost money or block a redeploy are asked.
    ``names``: strings identifying this run's resources (e.g. the name suffix).
    """
    wanted = [n for n in names if n]

    def ours(values: Iterable[str]) -> list[str]:
        return sorted(v for v in values if any(n in v for n in wanted))

    kinesis = emulator_client("kinesis", endpoint_url)
    rds = emulator_client("rds", endpoint_url)
    ecs = emulator_client("ecs", endpoint_url)
    elasticache = emulator_client("elasticache", endpoint_url)
    cluster_arns = ecs.list_clusters()["clusterArns"]
    found = {
        "kinesis_streams": ours(kinesis.list_streams()["StreamNames"]),
        "rds_instances": ours(
            d["DBInstanceIdentifier"] for d in rds.describe_db_instances()["DBInstances"]
        ),
        "ecs_clusters": ours(
            c["clusterName"]
            for c in ecs.describe_clusters(clusters=cluster_arns)["clusters"]
            if c.get("status") == "ACTIVE"
        ),
        "elasticache_replication_groups": ours(
            g["ReplicationGroupId"]
            for g in elasticache.describe_replication_groups()["ReplicationGroups"]
        ),
        "scalable_targets": ours(t["ResourceId"] for t in scalable_targets(endpoint_url)),
    }
    return {k: v for k, v in found.items() if v}


def run_smoke(
    run_dir: Path,
    *,
    suffix: str = "smoke",
    stack_source: Path | None = None,
    parallelism: int = 10,
    budget_seconds: float = BUDGET_SECONDS,
    destroy: bool = True,
    moto: MotoServer | None = None,
    synth_env: Mapping[str, str] | None = None,
) -> SmokeResult:
    """Synthesize (or stage), start moto (unless given), apply, read outputs, destroy.

    Does not raise for a failing step: the error lands in ``SmokeResult.error`` so
    the caller still gets timings and the run folder. Destroy runs even after a failed
    apply, so a half-applied stack does not linger in a long-lived emulator.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    result = SmokeResult(run_dir=run_dir, stack_dir=run_dir / "stack")
    binary = terraform_binary()
    if binary is None:
        result.error = "terraform is not on PATH"
        return result
    own_moto = moto is None
    server = moto or TerraformMoto(run_dir / "moto.log")
    terraform: Terraform | None = None
    started = time.perf_counter()
    applied = False

    def remaining() -> float:
        return max(30.0, budget_seconds - (time.perf_counter() - started))

    try:
        clock = time.perf_counter()
        if stack_source is None:
            synth_dir = synthesize(run_dir / "synth.log", suffix=suffix, extra_env=synth_env)
            result.stack_dir = stage_stack(synth_dir, run_dir)
        else:
            result.stack_dir = stage_stack(stack_source, run_dir)
        result.seconds["synth"] = time.perf_counter() - clock
        # The terraform budget starts after synth: synth time depends on the machine's
        # load (jsii), not on the deploy path this smoke measures.
        started = time.perf_counter()

        clock = time.perf_counter()
        if own_moto:
            server.start()
        result.seconds["moto_start"] = time.perf_counter() - clock
        write_override(result.stack_dir, server.endpoint_url)
        document = json.loads((result.stack_dir / "cdk.tf.json").read_text(encoding="utf-8"))
        result.endpoint_keys = sorted(endpoint_keys(document))
        # A staged stack may carry another suffix than asked for: leftovers are
        # searched by the suffix the resources really have.
        suffix = stack_suffix(document) or suffix

        mirror = find_provider_mirror()
        cli_config = write_cli_config(run_dir, mirror) if mirror else None
        env = terraform_environment(
            cli_config,
            {
                # Nothing from the caller's AWS setup may reach real AWS or change
                # the provider's credential chain.
                "AWS_EC2_METADATA_DISABLED": "true",
                "AWS_ACCESS_KEY_ID": DUMMY_ACCESS_KEY_ID,
                "AWS_SECRET_ACCESS_KEY": DUMMY_SECRET_ACCESS_KEY,
            },
        )
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
            env.pop(name, None)
        terraform = Terraform(result.stack_dir, run_dir, binary, env)

        terraform.init(timeout=min(180.0, remaining()))
        result.seconds["init"] = terraform.steps[-1].seconds
        applied = True  # from here on, something may exist to destroy
        # Plan to a file, keep its JSON, apply exactly that plan.
        terraform.run(
            "plan", "plan", "-input=false", "-no-color", f"-parallelism={parallelism}",
            "-out=tfplan", timeout=remaining(),
        )  # fmt: skip
        result.seconds["plan"] = terraform.steps[-1].seconds
        first_plan = terraform.run(
            "show-plan", "show", "-json", "tfplan", timeout=min(120.0, remaining()),
            separate_stdout=True,
        ).stdout  # fmt: skip
        terraform.run(
            "apply", "apply", "-input=false", "-no-color", f"-parallelism={parallelism}",
            "tfplan", timeout=remaining(),
        )  # fmt: skip
        result.seconds["apply"] = terraform.steps[-1].seconds
        result.outputs = terraform.output_json(timeout=min(60.0, remaining()))
        (run_dir / "outputs.json").write_text(
            json.dumps(result.outputs, indent=2) + "\n", encoding="utf-8"
        )
        result.scalable_targets = scalable_targets(server.endpoint_url)
        result.alarm_subscriptions = alarm_subscriptions(
            server.endpoint_url, result.outputs[out.ALARM_TOPIC_ARN]["value"]
        )
        clock = time.perf_counter()
        result.token_findings = scan_for_token(
            terraform, server.endpoint_url, result.outputs,
            first_plan=first_plan, timeout=min(180.0, remaining()),
        )  # fmt: skip
        result.seconds["token_scan"] = time.perf_counter() - clock
        # The scan is a check, not the deploy path the budget measures: it must not
        # eat the time destroy needs (like synth, it is left out of the budget).
        started += result.seconds["token_scan"]
    except Exception as exc:
        # Any failure (terraform, synth, moto, an unmapped resource type, a boto3
        # error) becomes the result's error: the caller still gets timings, logs
        # and the destroy below.
        result.error = _describe(exc)
    except BaseException as exc:
        # Ctrl-C, SIGTERM turned into SystemExit, pytest-timeout: still tear down
        # (below), record why, and let the interruption go on.
        result.error = f"interrupted ({type(exc).__name__})"
        raise
    finally:
        try:
            if terraform is not None and applied and destroy:
                try:
                    # Destroy gets its own floor: an apply that ate the budget must
                    # still be torn down.
                    terraform.destroy(parallelism=parallelism, timeout=max(180.0, remaining()))
                    result.seconds["destroy"] = terraform.steps[-1].seconds
                    left = terraform.state_resources()
                    if left:
                        result.leftovers["terraform_state"] = left
                    result.leftovers.update(leftovers(server.endpoint_url, [suffix]))
                    if result.leftovers and result.error is None:
                        result.error = f"left after destroy: {result.leftovers}"
                except Exception as exc:
                    result.error = result.error or _describe(exc)
            result.seconds["total_terraform"] = time.perf_counter() - started
        finally:
            if own_moto:
                server.stop()
        (run_dir / "summary.json").write_text(
            json.dumps(result.to_json(), indent=2) + "\n", encoding="utf-8"
        )
    return result


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return text if isinstance(exc, TerraformError) else f"{type(exc).__name__}: {text}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m e2e.deploy_smoke",
        description="terraform apply/output/destroy of the synthesized stack against moto",
    )
    parser.add_argument("--suffix", default="smoke", help="ENVIRONMENT_SUFFIX (default: smoke)")
    parser.add_argument(
        "--stack",
        type=Path,
        help="use this synthesized cdk.tf.json (or its folder) instead of synthesizing",
    )
    parser.add_argument("--run-dir", type=Path, help="logs and state (default: a new temp dir)")
    parser.add_argument("--parallelism", type=int, default=10)
    parser.add_argument("--budget", type=float, default=BUDGET_SECONDS, help="seconds")
    parser.add_argument(
        "--keep",
        action="store_true",
        help="skip destroy, to inspect the state in the run folder (moto still stops)",
    )
    args = parser.parse_args(argv)
    run_dir = args.run_dir or Path(
        tempfile.mkdtemp(prefix=f"tap-deploy-smoke-{time.strftime('%Y%m%d-%H%M%S')}-")
    )
    result = run_smoke(
        run_dir,
        suffix=args.suffix,
        stack_source=args.stack,
        parallelism=args.parallelism,
        budget_seconds=args.budget,
        destroy=not args.keep,
    )
    print(json.dumps(result.to_json(), indent=2))
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
