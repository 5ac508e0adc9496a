"""Where the e2e scenarios run: the local stack (default) or a deployed stack
(``TAP_TARGET=deployed``). Scenarios speak only to :class:`Target`, so the same test
runs on both; what a target cannot do (``kill -9`` of a Fargate task) is skipped
with the reason.

Local: :class:`local_pipeline.pipeline.LocalPipeline`, processors started with the
synthesized task environment (local_pipeline/stack_resources.py).

Deployed: stack outputs from ``terraform output -json`` (``TAP_STACK_OUTPUTS`` names
a file holding that JSON; otherwise terraform runs in ``TAP_STACK_DIR``, default
``cdktf.out/stacks/TapStack``), normal AWS credentials, and a host inside the VPC
(RDS and ElastiCache have no public endpoint). See docs/E2E.md.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

from local_pipeline.verify import StoreView, wait_until
from simulator.aws_client import aws_client, kinesis_client
from simulator.deployed_stack import DeployedStack, output_values, read_secret

TARGET_ENV: Final = "TAP_TARGET"
OUTPUTS_ENV: Final = "TAP_STACK_OUTPUTS"
STACK_DIR_ENV: Final = "TAP_STACK_DIR"


class Capability(StrEnum):
    KILL_PROCESSOR = "kill -9 a processor"
    SIGTERM_PROCESSOR = "SIGTERM a processor"
    RESTART_POSTGRES = "restart PostgreSQL"
    RESTART_REDIS = "restart Redis"
    ROTATE_DB_SECRET = "rotate the DB secret"
    SPLIT_SHARD = "split a shard"


@dataclass
class Target:
    """What a scenario needs from the pipeline under test."""

    name: str
    stream_name: str
    view: StoreView
    #: Capability -> why it is not available here (absent: available).
    unsupported: dict[Capability, str] = field(default_factory=dict)

    def kinesis_client(self) -> Any:
        raise NotImplementedError

    def redis_client(self) -> Any:
        raise NotImplementedError

    def workers(self) -> list[str]:
        """Live processors, by the lease owner name they use."""
        raise NotImplementedError

    def kill(self, worker: str) -> float:
        raise NotImplementedError

    def terminate(self, worker: str) -> float:
        """Stop a processor gracefully; returns the epoch time the stop was sent."""
        raise NotImplementedError

    def restart_postgres(self) -> None:
        raise NotImplementedError

    def restart_redis(self) -> None:
        raise NotImplementedError

    def rotate_db_secret(self) -> None:
        raise NotImplementedError

    def lease_duration_s(self) -> float:
        raise NotImplementedError

    def recover(self) -> None:
        """Back to the steady state between scenarios (all processors up, shards owned)."""

    def logs(self) -> str:
        return ""

    def close(self) -> None:
        self.view.close()


def wait_shards_reowned(
    view: StoreView, gone: str, shards: set[str], *, timeout: float
) -> float | None:
    """Seconds until every shard in ``shards`` is owned by someone other than
    ``gone`` (read from the lease table, on the database clock), or None."""
    began = time.time()

    def moved() -> bool:
        owners = view.owners()
        return all(owners.get(s) not in (None, gone) for s in shards)

    return time.time() - began if wait_until(moved, timeout=timeout, interval=0.05) else None


# --- local ---------------------------------------------------------------------------


class LocalTarget(Target):
    def __init__(self, pipeline: Any) -> None:
        assert pipeline.view is not None
        super().__init__("local", pipeline.stream_name, pipeline.view)
        self.pipeline = pipeline

    def kinesis_client(self) -> Any:
        return self.pipeline.kinesis_client()

    def redis_client(self) -> Any:
        return self.pipeline.redis_client()

    def workers(self) -> list[str]:
        return list(self.pipeline.alive())

    def kill(self, worker: str) -> float:
        at = time.time()
        self.pipeline.processors[worker].kill()
        return at

    def terminate(self, worker: str) -> float:
        return float(self.pipeline.processors[worker].terminate())

    def restart_postgres(self) -> None:
        self.pipeline.services.postgres.restart()

    def restart_redis(self) -> None:
        self.pipeline.services.redis.restart()

    def rotate_db_secret(self) -> None:
        from processor.contract.storage import APP_ROLE
        from processor.migrate_command import CLONE_SUFFIX

        services = self.pipeline.services
        assert self.pipeline.resources is not None
        server = services.postgres
        # The processors' secret is the application role's, rotated by alternating
        # users as AWS's multi-user function does (issue 11).
        app_arn = services.app_logins.prepare(
            self.pipeline.resources.db_secret_arn, server, server.database
        )
        services.app_logins.rotate(app_arn, server)
        # Open sessions outlive a password change (as on RDS); end them so every
        # processor must log in again.
        with server.admin_connection(server.database) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE usename = ANY(%s) AND pid <> pg_backend_pid()",
                ([APP_ROLE, APP_ROLE + CLONE_SUFFIX],),
            )

    def lease_duration_s(self) -> float:
        from processor.contract.environment import ProcessorSettings

        assert self.pipeline.resources is not None
        env = self.pipeline.resources.processor_environment("probe", health_port=1)
        return float(ProcessorSettings.from_environ(env).lease_duration_s)

    def recover(self) -> None:
        self.pipeline.ensure_processors(timeout=60)

    def logs(self) -> str:
        return str(self.pipeline.tail_logs())

    def close(self) -> None:
        super().close()


# --- deployed -------------------------------------------------------------------------


def stack_outputs(environ: dict[str, str] | None = None) -> dict[str, Any]:
    """``terraform output -json`` as name -> value."""
    env = os.environ if environ is None else environ
    if env.get(OUTPUTS_ENV):
        raw = json.loads(Path(env[OUTPUTS_ENV]).read_text())
    else:
        folder = env.get(STACK_DIR_ENV, "cdktf.out/stacks/TapStack")
        done = subprocess.run(
            ["terraform", f"-chdir={folder}", "output", "-json"],
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        raw = json.loads(done.stdout)
    return output_values(raw)


class DeployedTarget(Target):
    """A deployed stack, reached with the caller's AWS credentials from inside its VPC."""

    def __init__(self, outputs: dict[str, Any]) -> None:
        self.stack = DeployedStack.from_outputs(outputs, "stack outputs")
        self._secrets = aws_client("secretsmanager")
        self._ecs = aws_client("ecs")
        super().__init__(
            "deployed",
            self.stack.stream_name,
            StoreView(self._pg_connection),
            unsupported={
                Capability.KILL_PROCESSOR: "Fargate has no SIGKILL of a task: StopTask is "
                "SIGTERM then SIGKILL after stopTimeout (the SIGTERM scenario covers it)",
                Capability.RESTART_POSTGRES: "a Multi-AZ RDS reboot takes minutes, beyond "
                "the suite's budget; covered by the local target",
                Capability.RESTART_REDIS: "an ElastiCache failover takes minutes, beyond "
                "the suite's budget; covered by the local target",
            },
        )

    def _pg_connection(self) -> Any:
        import psycopg

        secret = read_secret(self._secrets, self.stack.db_secret_arn)
        dsn = self.stack.postgres_dsn(secret, os.environ)
        return psycopg.connect(dsn, autocommit=True, connect_timeout=10)

    def kinesis_client(self) -> Any:
        """The producer's client: through the stack's producer role when it has one, so
        every scenario proves that role's policy is enough to write."""
        return kinesis_client(role_arn=self.stack.producer_role_arn)

    def redis_client(self) -> Any:
        import redis

        secret = read_secret(self._secrets, self.stack.redis_auth_secret_arn)
        return redis.Redis.from_url(
            self.stack.redis_url(secret), ssl_cert_reqs="required", socket_timeout=5
        )

    def _tasks(self) -> list[str]:
        return list(
            self._ecs.list_tasks(
                cluster=self.stack.ecs_cluster_name,
                serviceName=self.stack.ecs_service_name,
                desiredStatus="RUNNING",
            )["taskArns"]
        )

    def _task_of(self, worker: str) -> str | None:
        """The task running ``worker``. A processor's default worker id is
        ``<host name>-<pid>``, and a Fargate task's host name is
        ``ip-<private IP with dashes>...``: match on that."""
        tasks = self._tasks()
        if not tasks:
            return None
        described = self._ecs.describe_tasks(cluster=self.stack.ecs_cluster_name, tasks=tasks)
        for task in described["tasks"]:
            for attachment in task.get("attachments", []):
                for detail in attachment.get("details", []):
                    if detail.get("name") == "privateIPv4Address":
                        marker = "ip-" + str(detail["value"]).replace(".", "-")
                        if worker.startswith(marker):
                            return str(task["taskArn"])
        return None

    def workers(self) -> list[str]:
        # Lease owners are the processors' worker ids (host name + pid on Fargate).
        return sorted({o for o in self.view.owners().values() if o})

    def terminate(self, worker: str) -> float:
        task = self._task_of(worker)
        if task is None:
            raise RuntimeError(f"no running task found for worker {worker!r}")
        at = time.time()
        self._ecs.stop_task(cluster=self.stack.ecs_cluster_name, task=task, reason="e2e scale-in")
        return at

    def rotate_db_secret(self) -> None:
        # The processors' secret: AWS's alternating-users function rotates it.
        self._secrets.rotate_secret(SecretId=str(self.stack.db_app_secret_arn))

    def lease_duration_s(self) -> float:
        return float(self.stack.task_environment.get("TAP_LEASE_DURATION_S", 10))

    def recover(self) -> None:
        # ECS replaces a stopped task to keep the desired count; wait until it runs
        # and every open shard is leased again.
        service = self._ecs.describe_services(
            cluster=self.stack.ecs_cluster_name, services=[self.stack.ecs_service_name]
        )["services"][0]
        desired = int(service.get("desiredCount", 1))
        kinesis = kinesis_client()  # ListShards: not a producer's permission

        def steady() -> bool:
            shards = kinesis.list_shards(StreamName=self.stream_name)["Shards"]
            open_shards = {
                s["ShardId"]
                for s in shards
                if "EndingSequenceNumber" not in s["SequenceNumberRange"]
            }
            owners = self.view.owners()
            return len(self._tasks()) >= desired and open_shards <= set(owners)

        wait_until(steady, timeout=300, interval=5)


def make_target(open_local: Callable[[], Any]) -> Target:
    """The target named by ``TAP_TARGET`` (``local`` by default)."""
    kind = os.environ.get(TARGET_ENV, "local")
    if kind == "deployed":
        return DeployedTarget(stack_outputs())
    if kind != "local":
        raise ValueError(f"{TARGET_ENV}={kind!r}: expected local or deployed")
    return LocalTarget(open_local())
