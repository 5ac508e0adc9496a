"""Alarms to an encrypted SNS topic, a processor-error metric filter, a dashboard.

The dead-letter alarm reads the processor's embedded-metric-format metric
``DeadLetters`` in the contract's ``TAP_METRICS_NAMESPACE`` namespace with the
dimension ``Stream`` = stream name (``processor/observability.py``). Processor errors
are counted from its JSON log lines (``"level": "ERROR"`` or ``"CRITICAL"``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from cdktf_cdktf_provider_aws.cloudwatch_dashboard import CloudwatchDashboard
from cdktf_cdktf_provider_aws.cloudwatch_log_metric_filter import (
    CloudwatchLogMetricFilter,
    CloudwatchLogMetricFilterMetricTransformation,
)
from cdktf_cdktf_provider_aws.cloudwatch_metric_alarm import (
    CloudwatchMetricAlarm,
    CloudwatchMetricAlarmMetricQuery,
    CloudwatchMetricAlarmMetricQueryMetric,
)
from cdktf_cdktf_provider_aws.sns_topic import SnsTopic
from cdktf_cdktf_provider_aws.sns_topic_subscription import SnsTopicSubscription
from constructs import Construct

from lib.config import Naming

PROCESSOR_ERRORS_METRIC = "ProcessorErrors"
DEAD_LETTERS_METRIC = "DeadLetters"
#: The processor logs one JSON object per line with a ``level`` field.
ERROR_FILTER_PATTERN = '{ ($.level = "ERROR") || ($.level = "CRITICAL") }'
#: Dimension the processor puts on its pipeline metrics.
STREAM_DIMENSION = "Stream"


@dataclass(frozen=True, slots=True, kw_only=True)
class MonitoringConfig:
    """Alarms, their topic and subscriptions, and the dashboard. Deployment settings
    have no default here: the one default is :class:`lib.config.StackConfig`'s
    (named in brackets)."""

    #: Names every resource ``<type>-<environment>-<suffix>``.
    naming: Naming
    #: Region of the dashboard's widgets.
    region: str
    #: KMS key of the alarm topic (the ``notifications`` key).
    kms_key_arn: str
    #: The stream whose iterator age and throttling are watched.
    stream_name: str
    #: The ECS cluster of the processor service.
    cluster_name: str
    #: The processor service (running-task and CPU alarms).
    service_name: str
    #: The processor's log group (the dashboard's log widget).
    processor_log_group_name: str
    #: The RDS instance identifier (CPU and free-storage alarms).
    db_identifier: str
    #: Redis member cluster ids (a memory alarm per node).
    redis_member_ids: tuple[str, ...]
    #: Triggered when the iterator age passes ``iterator_age_threshold_ms`` (scale out).
    lag_scaling_policy_arn: str
    #: Triggered when the stream is nearly drained for 15 minutes (scale in by one).
    idle_scaling_policy_arn: str
    #: CloudWatch namespace of the processor's own metrics [StackConfig.metrics_namespace,
    #: from the processor contract's TAP_METRICS_NAMESPACE].
    metrics_namespace: str
    #: Iterator age (ms) that alarms and scales out [StackConfig.iterator_age_alarm_ms].
    iterator_age_threshold_ms: int
    #: Iterator age (ms) below which, for 15 minutes, the service scales in; below the
    #: scale-out threshold by design, so the two alarms cannot both be in ALARM
    #: [StackConfig.iterator_age_scale_in_ms].
    iterator_age_scale_in_ms: int
    #: E-mail addresses told about alarms (validated in lib.config; each waits for the
    #: recipient's confirmation) [StackConfig.alarm_emails, TAP_ALARM_EMAILS].
    alarm_emails: tuple[str, ...]
    #: HTTPS endpoints told about alarms (must answer SNS's SubscriptionConfirmation)
    #: [StackConfig.alarm_https_endpoints, TAP_ALARM_HTTPS_ENDPOINTS].
    alarm_https_endpoints: tuple[str, ...]
    #: Free storage (bytes) below which the database alarms; the stack passes a tenth
    #: of the allocated storage.
    db_free_storage_bytes: int
    #: Database CPU (percent, 5-minute average) above which it alarms.
    db_cpu_percent: float = 80.0
    #: Redis memory use (percent of the node's) above which it alarms, well before
    #: eviction or refused writes.
    redis_memory_percent: float = 80.0


@dataclass(frozen=True, slots=True, kw_only=True)
class MonitoringOutputs:
    #: The SNS topic every alarm notifies.
    topic_arn: str
    #: The CloudWatch dashboard of the pipeline.
    dashboard_name: str
    #: Every alarm the stack creates.
    alarm_names: tuple[str, ...]
    #: ``protocol:endpoint`` of every alarm subscription.
    subscription_endpoints: tuple[str, ...]


class Monitoring(Construct):
    def __init__(self, scope: Construct, id_: str, *, config: MonitoringConfig) -> None:
        super().__init__(scope, id_)
        naming = config.naming
        self._config = config
        topic = SnsTopic(
            self,
            "alarms-topic",
            name=naming.name("sns-alarms"),
            kms_master_key_id=config.kms_key_arn,
        )
        self._actions = [topic.arn]
        self._alarm_names: list[str] = []
        self._subscription_endpoints: list[str] = []
        for protocol, endpoints in (
            ("email", config.alarm_emails),
            ("https", config.alarm_https_endpoints),
        ):
            for endpoint in endpoints:
                # Id from the endpoint, not its position: removing one address from
                # the list must not re-create (and re-confirm) the others.
                digest = hashlib.sha256(endpoint.encode()).hexdigest()[:10]
                SnsTopicSubscription(
                    self,
                    f"alarm-{protocol}-{digest}",
                    topic_arn=topic.arn,
                    protocol=protocol,
                    endpoint=endpoint,
                )
                self._subscription_endpoints.append(f"{protocol}:{endpoint}")

        CloudwatchLogMetricFilter(
            self,
            "errors-filter",
            name=naming.name("processor-errors"),
            log_group_name=config.processor_log_group_name,
            pattern=ERROR_FILTER_PATTERN,
            metric_transformation=CloudwatchLogMetricFilterMetricTransformation(
                name=PROCESSOR_ERRORS_METRIC,
                namespace=config.metrics_namespace,
                value="1",
                default_value="0",
            ),
        )

        stream = {"StreamName": config.stream_name}
        self._alarm(
            "iterator-age",
            "Processor lags: records wait in the stream (also scales the service out)",
            namespace="AWS/Kinesis",
            metric_name="GetRecords.IteratorAgeMilliseconds",
            dimensions=stream,
            statistic="Maximum",
            threshold=config.iterator_age_threshold_ms,
            evaluation_periods=3,
            extra_actions=[config.lag_scaling_policy_arn],
        )
        # Scale-in only: not a problem worth a notification, so no SNS action.
        idle = CloudwatchMetricAlarm(
            self,
            "alarm-processor-idle",
            alarm_name=naming.name("alarm-processor-idle"),
            alarm_description="Stream nearly drained for 15 min: one processor fewer",
            namespace="AWS/Kinesis",
            metric_name="GetRecords.IteratorAgeMilliseconds",
            dimensions=stream,
            statistic="Maximum",
            period=60,
            evaluation_periods=15,
            threshold=config.iterator_age_scale_in_ms,
            comparison_operator="LessThanThreshold",
            treat_missing_data="missing",
            actions_enabled=True,
            alarm_actions=[config.idle_scaling_policy_arn],
        )
        self._alarm_names.append(idle.alarm_name)
        self._alarm(
            "processor-errors",
            "Processor logged errors",
            namespace=config.metrics_namespace,
            metric_name=PROCESSOR_ERRORS_METRIC,
            statistic="Sum",
            threshold=0,
            period=300,
            treat_missing_data="notBreaching",
        )
        self._alarm(
            "dead-letters",
            "Records failed validation and went to the dead-letter table",
            namespace=config.metrics_namespace,
            metric_name=DEAD_LETTERS_METRIC,
            dimensions={STREAM_DIMENSION: config.stream_name},
            statistic="Sum",
            threshold=0,
            period=300,
            treat_missing_data="notBreaching",
        )
        ecs = {"ClusterName": config.cluster_name, "ServiceName": config.service_name}
        running_below = CloudwatchMetricAlarm(
            self,
            "alarm-tasks-below-desired",
            alarm_name=naming.name("alarm-tasks-below-desired"),
            alarm_description="Fewer processor tasks run than desired (crash loop, capacity)",
            comparison_operator="GreaterThanThreshold",
            threshold=0,
            evaluation_periods=5,
            treat_missing_data="breaching",
            actions_enabled=True,
            alarm_actions=self._actions,
            ok_actions=self._actions,
            metric_query=[
                CloudwatchMetricAlarmMetricQuery(
                    id="desired",
                    metric=CloudwatchMetricAlarmMetricQueryMetric(
                        namespace="ECS/ContainerInsights",
                        metric_name="DesiredTaskCount",
                        dimensions=ecs,
                        stat="Maximum",
                        period=60,
                    ),
                ),
                CloudwatchMetricAlarmMetricQuery(
                    id="running",
                    metric=CloudwatchMetricAlarmMetricQueryMetric(
                        namespace="ECS/ContainerInsights",
                        metric_name="RunningTaskCount",
                        dimensions=ecs,
                        stat="Minimum",
                        period=60,
                    ),
                ),
                CloudwatchMetricAlarmMetricQuery(
                    id="missing",
                    expression="desired - running",
                    label="Tasks below desired",
                    return_data=True,
                ),
            ],
        )
        self._alarm_names.append(running_below.alarm_name)
        db = {"DBInstanceIdentifier": config.db_identifier}
        self._alarm(
            "db-cpu",
            "PostgreSQL CPU high",
            namespace="AWS/RDS",
            metric_name="CPUUtilization",
            dimensions=db,
            statistic="Average",
            threshold=config.db_cpu_percent,
            evaluation_periods=3,
            period=300,
        )
        self._alarm(
            "db-free-storage",
            "PostgreSQL free storage low",
            namespace="AWS/RDS",
            metric_name="FreeStorageSpace",
            dimensions=db,
            statistic="Minimum",
            threshold=config.db_free_storage_bytes,
            comparison="LessThanThreshold",
            period=300,
        )
        for member in config.redis_member_ids:
            node = {"CacheClusterId": member}
            self._alarm(
                f"redis-memory-{member[-3:]}",
                f"Redis memory high on {member}",
                namespace="AWS/ElastiCache",
                metric_name="DatabaseMemoryUsagePercentage",
                dimensions=node,
                statistic="Maximum",
                threshold=config.redis_memory_percent,
                evaluation_periods=3,
                period=300,
            )
            self._alarm(
                f"redis-evictions-{member[-3:]}",
                f"Redis evicts keys on {member} (latest state lost)",
                namespace="AWS/ElastiCache",
                metric_name="Evictions",
                dimensions=node,
                statistic="Sum",
                threshold=0,
                period=300,
                treat_missing_data="notBreaching",
            )

        dashboard = CloudwatchDashboard(
            self,
            "dashboard",
            dashboard_name=naming.name("dashboard-pipeline"),
            dashboard_body=json.dumps(self._dashboard()),
        )
        self.outputs = MonitoringOutputs(
            topic_arn=topic.arn,
            dashboard_name=dashboard.dashboard_name,
            alarm_names=tuple(self._alarm_names),
            subscription_endpoints=tuple(self._subscription_endpoints),
        )

    def _alarm(
        self,
        id_: str,
        description: str,
        *,
        namespace: str,
        metric_name: str,
        statistic: str,
        threshold: float,
        dimensions: dict[str, str] | None = None,
        comparison: str = "GreaterThanThreshold",
        evaluation_periods: int = 1,
        period: int = 60,
        treat_missing_data: str = "missing",
        extra_actions: list[str] | None = None,
    ) -> None:
        alarm = CloudwatchMetricAlarm(
            self,
            f"alarm-{id_}",
            alarm_name=self._config.naming.name(f"alarm-{id_}"),
            alarm_description=description,
            namespace=namespace,
            metric_name=metric_name,
            dimensions=dimensions,
            statistic=statistic,
            period=period,
            evaluation_periods=evaluation_periods,
            threshold=threshold,
            comparison_operator=comparison,
            treat_missing_data=treat_missing_data,
            actions_enabled=True,
            alarm_actions=[*self._actions, *(extra_actions or [])],
            ok_actions=self._actions,
        )
        self._alarm_names.append(alarm.alarm_name)

    def _dashboard(self) -> dict[str, Any]:
        c = self._config

        def widget(title: str, metrics: list[list[Any]], x: int, y: int) -> dict[str, Any]:
            return {
                "type": "metric",
                "x": x,
                "y": y,
                "width": 12,
                "height": 6,
                "properties": {
                    "title": title,
                    "region": c.region,
                    "stat": "Sum",
                    "period": 60,
                    "view": "timeSeries",
                    "metrics": metrics,
                },
            }

        redis = [
            ["AWS/ElastiCache", "DatabaseMemoryUsagePercentage", "CacheClusterId", m,
             {"stat": "Maximum"}]
            for m in c.redis_member_ids
        ]  # fmt: skip
        return {
            "widgets": [
                widget(
                    "Ingestion: records in / out",
                    [
                        ["AWS/Kinesis", "IncomingRecords", "StreamName", c.stream_name],
                        ["AWS/Kinesis", "GetRecords.Records", "StreamName", c.stream_name],
                    ],
                    0,
                    0,
                ),
                widget(
                    "Lag: iterator age (ms)",
                    [
                        [
                            "AWS/Kinesis",
                            "GetRecords.IteratorAgeMilliseconds",
                            "StreamName",
                            c.stream_name,
                            {"stat": "Maximum"},
                        ]
                    ],
                    12,
                    0,
                ),
                widget(
                    "Processor: CPU and tasks",
                    [
                        [
                            "AWS/ECS",
                            "CPUUtilization",
                            "ClusterName",
                            c.cluster_name,
                            "ServiceName",
                            c.service_name,
                            {"stat": "Average"},
                        ],
                        [
                            "ECS/ContainerInsights",
                            "RunningTaskCount",
                            "ClusterName",
                            c.cluster_name,
                            "ServiceName",
                            c.service_name,
                            {"stat": "Maximum"},
                        ],
                    ],
                    0,
                    6,
                ),
                widget(
                    "Processor: errors and dead letters",
                    [
                        [c.metrics_namespace, PROCESSOR_ERRORS_METRIC],
                        [c.metrics_namespace, DEAD_LETTERS_METRIC, STREAM_DIMENSION, c.stream_name],
                    ],
                    12,
                    6,
                ),
                widget(
                    "PostgreSQL: CPU",
                    [
                        [
                            "AWS/RDS",
                            "CPUUtilization",
                            "DBInstanceIdentifier",
                            c.db_identifier,
                            {"stat": "Average"},
                        ]
                    ],
                    0,
                    12,
                ),
                widget("Redis: memory %", redis, 12, 12),
            ]
        }
