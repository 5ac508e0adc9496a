"""moto server configured for ``terraform apply``/``destroy`` of the whole stack.

``python -m e2e.deploy_smoke_moto -H 127.0.0.1 -p PORT`` is ``python -m moto.server``
plus the few settings and gap-fillers the AWS provider needs from the emulator.
Each closes a gap between moto and AWS's documented behaviour; none changes what
the stack asks for. See docs/DEPLOY-SMOKE.md ("Emulator configuration").

- ``MOTO_IAM_LOAD_MANAGED_POLICIES=true``: AWS-managed policies exist in every AWS
  account (the stack attaches ``AmazonRDSEnhancedMonitoringRole``); moto loads them
  only on request.
- Application Auto Scaling tags: AWS has ``TagResource``, ``UntagResource`` and
  ``ListTagsForResource`` for scalable targets (since 2023-03); moto 5.2 has none,
  answers HTTP 500 "not implemented", and the provider (which tags the target with
  the stack's ``default_tags`` and reads the tags back after ``RegisterScalableTarget``)
  retries that 500 with backoff: ``aws_appautoscaling_target`` sat in "Still
  creating..." for minutes. The three calls are added, keeping tags per target ARN.
- RDS CA: a new DB instance gets ``rds-ca-rsa2048-g1`` on AWS (the default since
  2024); moto says ``rds-ca-default``, so the provider, seeing the stack's pinned CA
  differ, issued a ``ModifyDBInstance`` and waited a second time (+80 s). moto's
  default is set to AWS's.
- EC2 ``RevokeSecurityGroupIngress``/``Egress`` by rule id: for an id that does not
  exist AWS answers ``InvalidSecurityGroupRuleId.NotFound`` (the provider then treats
  an ``aws_vpc_security_group_*_rule`` as already deleted); moto answered
  ``InvalidPermission.NotFound``, so a revoke retried after a lost response (seen
  once under heavy load) failed the whole destroy. moto now answers AWS's code.
- ElastiCache replication groups: moto lists member clusters (``<id>-001``...) but
  creates no cache cluster behind them, and ``DeleteReplicationGroup`` leaves the
  group "deleting" forever. The provider reads the first member cluster after
  create and waits for the group to disappear on destroy. The member clusters are
  created with the group, and deletion completes (AWS finishes it in minutes).
  ``DeleteCacheSubnetGroup`` (not implemented in moto 5.2: HTTP 500) is added.
- Secrets Manager ``CancelRotateSecret`` on a secret RDS manages
  (``manage_master_user_password``): rotation of such a secret is done by RDS, with
  no Lambda; AWS accepts the cancel (terraform-aws-modules/rds turns that rotation
  off exactly this way, by destroying the rotation resource), moto demands a Lambda
  ARN and refused, so
  destroying ``aws_secretsmanager_secret_rotation`` failed. For secrets owned by a
  service the cancel now just turns rotation off; other secrets keep moto's check.

Kept in its own process entry point so the supervisor (:class:`MotoServer`) and the
rest of the local stack keep running plain moto.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

_F = TypeVar("_F", bound=Callable[..., Any])

#: Settings moto reads from its environment (applied unless the caller set them).
MOTO_SETTINGS: dict[str, str] = {"MOTO_IAM_LOAD_MANAGED_POLICIES": "true"}


def _wraps(original: _F) -> Callable[[Callable[..., Any]], _F]:
    def decorate(replacement: Callable[..., Any]) -> _F:
        wrapped = functools.wraps(original)(replacement)
        wrapped.__deploy_smoke_patch__ = True  # type: ignore[attr-defined]
        return wrapped  # type: ignore[return-value]

    return decorate


def _patch_elasticache() -> None:
    from moto.elasticache.models import CacheCluster, ElastiCacheBackend
    from moto.elasticache.responses import ElastiCacheResponse

    create = ElastiCacheBackend.create_replication_group
    delete = ElastiCacheBackend.delete_replication_group
    if getattr(create, "__deploy_smoke_patch__", False):
        return

    @_wraps(create)
    def create_replication_group(self: Any, *args: Any, **kwargs: Any) -> Any:
        group = create(self, *args, **kwargs)
        for member in group.member_clusters:
            if member in self.cache_clusters:
                continue
            # The attributes the provider reads from the first member cluster
            # (engine, version, node type, windows, subnet and parameter group).
            self.cache_clusters[member] = CacheCluster(
                account_id=self.account_id,
                region_name=self.region_name,
                cache_cluster_id=member,
                cache_node_type=kwargs.get("cache_node_type") or "cache.t4g.small",
                replication_group_id=group.replication_group_id,
                az_mode=None,
                preferred_availability_zone=None,
                num_cache_nodes=1,
                engine=kwargs.get("engine") or "redis",
                engine_version=kwargs.get("engine_version"),
                cache_parameter_group_name=kwargs.get("cache_parameter_group_name"),
                cache_subnet_group_name=kwargs.get("cache_subnet_group_name"),
                transit_encryption_enabled=kwargs.get("transit_encryption_enabled"),
                network_type=kwargs.get("network_type"),
                ip_discovery=kwargs.get("ip_discovery"),
                snapshot_name=None,
                preferred_maintenance_window=kwargs.get("preferred_maintenance_window"),
                port=kwargs.get("port"),
                notification_topic_arn=kwargs.get("notification_topic_arn"),
                auto_minor_version_upgrade=kwargs.get("auto_minor_version_upgrade"),
                snapshot_retention_limit=kwargs.get("snapshot_retention_limit"),
                snapshot_window=kwargs.get("snapshot_window"),
                auth_token=None,  # the token lives on the group, never on a member
                outpost_mode=None,
                preferred_outpost_arn=None,
                preferred_availability_zones=None,
                cache_security_group_names=kwargs.get("cache_security_group_names"),
                security_group_ids=kwargs.get("security_group_ids"),
                tags=None,
                snapshot_arns=None,
                preferred_outpost_arns=None,
                log_delivery_configurations=[],
                cache_node_ids_to_remove=None,
                cache_node_ids_to_reboot=None,
            )
        return group

    @_wraps(delete)
    def delete_replication_group(
        self: Any, replication_group_id: str, retain_primary_cluster: bool | None
    ) -> Any:
        members = list(self.replication_groups.get(replication_group_id, _NoGroup).member_clusters)
        group = delete(self, replication_group_id, retain_primary_cluster)
        # The response still says "deleting" (as AWS's does); the next Describe says
        # ReplicationGroupNotFoundFault, which is what the provider's waiter waits for.
        self.replication_groups.pop(replication_group_id, None)
        for member in members:
            self.cache_clusters.pop(member, None)
        return group

    def delete_cache_subnet_group(self: Any, cache_subnet_group_name: str) -> Any:
        # describe raises CacheSubnetGroupNotFound, the fault AWS answers with.
        (group,) = self.describe_cache_subnet_groups(cache_subnet_group_name)
        in_use = [
            g.replication_group_id
            for g in self.replication_groups.values()
            if getattr(g, "cache_subnet_group_name", None) == cache_subnet_group_name
        ]
        if in_use:
            from moto.elasticache.exceptions import InvalidParameterValueException

            raise InvalidParameterValueException(
                f"Cache subnet group {cache_subnet_group_name} is in use by {in_use}"
            )
        del self.cache_subnet_groups[cache_subnet_group_name]
        return group

    def delete_cache_subnet_group_response(self: Any) -> Any:
        from moto.core.responses import EmptyResult

        name = self._get_param("CacheSubnetGroupName")
        self.elasticache_backend.delete_cache_subnet_group(name)
        return EmptyResult()

    backend: Any = ElastiCacheBackend
    backend.create_replication_group = create_replication_group
    backend.delete_replication_group = delete_replication_group
    if not hasattr(backend, "delete_cache_subnet_group"):
        backend.delete_cache_subnet_group = delete_cache_subnet_group
        response: Any = ElastiCacheResponse
        response.delete_cache_subnet_group = delete_cache_subnet_group_response


class _NoGroup:
    member_clusters: tuple[str, ...] = ()


#: The CA AWS gives a new RDS DB instance when none is requested (since January 2024).
AWS_DEFAULT_RDS_CA = "rds-ca-rsa2048-g1"


def _patch_rds() -> None:
    from moto.rds.models import RDSBackend

    create = RDSBackend.create_db_instance
    if getattr(create, "__deploy_smoke_patch__", False):
        return

    @_wraps(create)
    def create_db_instance(self: Any, db_kwargs: dict[str, Any]) -> Any:
        if not db_kwargs.get("ca_certificate_identifier"):
            db_kwargs = {**db_kwargs, "ca_certificate_identifier": AWS_DEFAULT_RDS_CA}
        return create(self, db_kwargs)

    RDSBackend.create_db_instance = create_db_instance  # type: ignore[method-assign]


def _patch_applicationautoscaling() -> None:
    from moto.applicationautoscaling.responses import ApplicationAutoScalingResponse
    from moto.core.exceptions import JsonRESTError

    if hasattr(ApplicationAutoScalingResponse, "list_tags_for_resource"):
        return  # moto implements them now: keep moto's

    def tags_of(response: Any) -> dict[str, dict[str, str]]:
        backend = response.applicationautoscaling_backend
        if not hasattr(backend, "deploy_smoke_tags"):
            backend.deploy_smoke_tags = {}
        store: dict[str, dict[str, str]] = backend.deploy_smoke_tags
        return store

    def known_arn(response: Any, arn: str) -> None:
        targets = response.applicationautoscaling_backend.targets
        arns = {t.arn for by_id in targets.values() for t in by_id.values()}
        if arn not in arns:
            raise JsonRESTError("ResourceNotFoundException", f"No scalable target {arn}")

    register = ApplicationAutoScalingResponse.register_scalable_target
    deregister = ApplicationAutoScalingResponse.deregister_scalable_target

    @_wraps(register)
    def register_scalable_target(self: Any) -> str:
        body: str = register(self)
        tags = self._get_param("Tags")
        if tags:
            arn = json.loads(body)["ScalableTargetARN"]
            tags_of(self).setdefault(arn, {}).update(tags)
        return body

    @_wraps(deregister)
    def deregister_scalable_target(self: Any) -> str:
        before = {
            t.arn
            for by_id in self.applicationautoscaling_backend.targets.values()
            for t in by_id.values()
        }
        body: str = deregister(self)
        after = {
            t.arn
            for by_id in self.applicationautoscaling_backend.targets.values()
            for t in by_id.values()
        }
        for arn in before - after:
            tags_of(self).pop(arn, None)
        return body

    def list_tags_for_resource(self: Any) -> str:
        arn = self._get_param("ResourceARN")
        known_arn(self, arn)
        return json.dumps({"Tags": tags_of(self).get(arn, {})})

    def tag_resource(self: Any) -> str:
        arn = self._get_param("ResourceARN")
        known_arn(self, arn)
        tags_of(self).setdefault(arn, {}).update(self._get_param("Tags") or {})
        return "{}"

    def untag_resource(self: Any) -> str:
        arn = self._get_param("ResourceARN")
        known_arn(self, arn)
        current = tags_of(self).setdefault(arn, {})
        for key in self._get_param("TagKeys") or []:
            current.pop(key, None)
        return "{}"

    cls: Any = ApplicationAutoScalingResponse
    cls.register_scalable_target = register_scalable_target
    cls.deregister_scalable_target = deregister_scalable_target
    cls.list_tags_for_resource = list_tags_for_resource
    cls.tag_resource = tag_resource
    cls.untag_resource = untag_resource


def _patch_ec2_rule_revoke() -> None:
    from moto.ec2.exceptions import InvalidSecurityGroupRuleIdNotFoundError
    from moto.ec2.models.security_groups import SecurityGroupBackend

    def patch(method_name: str, rules_attribute: str) -> None:
        original = getattr(SecurityGroupBackend, method_name)
        if getattr(original, "__deploy_smoke_patch__", False):
            return

        @_wraps(original)
        def revoke(self: Any, *args: Any, **kwargs: Any) -> Any:
            rule_ids = kwargs.get("security_rule_ids")
            if rule_ids:
                group = self.get_security_group_by_name_or_id(
                    kwargs.get("group_name_or_id"), kwargs.get("vpc_id")
                )
                if group is not None:
                    known = {rule.id for rule in getattr(group, rules_attribute)}
                    unknown = [rule_id for rule_id in rule_ids if rule_id not in known]
                    if unknown:
                        raise InvalidSecurityGroupRuleIdNotFoundError(unknown[0])
            return original(self, *args, **kwargs)

        setattr(SecurityGroupBackend, method_name, revoke)

    patch("revoke_security_group_ingress", "ingress_rules")
    patch("revoke_security_group_egress", "egress_rules")


def _service_owned(secret: Any) -> bool:
    """A secret another AWS service manages (RDS master user secrets in moto carry
    ``aws:rds:...`` tags; AWS also sets ``OwningService``)."""
    if getattr(secret, "owning_service", None):
        return True
    return any(str(tag.get("Key", "")).startswith("aws:rds:") for tag in secret.tags or [])


def _patch_secretsmanager() -> None:
    from moto.secretsmanager.models import ReplicaSecret, SecretsManagerBackend

    cancel = SecretsManagerBackend.cancel_rotate_secret
    if getattr(cancel, "__deploy_smoke_patch__", False):
        return

    @_wraps(cancel)
    def cancel_rotate_secret(self: Any, secret_id: str) -> Any:
        secret = self.secrets.get(secret_id) if self._is_valid_identifier(secret_id) else None
        if (
            secret is not None
            and not isinstance(secret, ReplicaSecret)
            and not getattr(secret, "rotation_lambda_arn", None)
            and not secret.is_deleted()
            and _service_owned(secret)
        ):
            secret.rotation_enabled = False
            return secret.to_short_dict()
        return cancel(self, secret_id)

    SecretsManagerBackend.cancel_rotate_secret = cancel_rotate_secret  # type: ignore[method-assign]


def _patch_elasticache_user_groups() -> None:
    """ElastiCache RBAC user groups (issue 13: the read API's read-only Redis user):
    moto 5.2 has users but no ``CreateUserGroup``/``DescribeUserGroups``/
    ``DeleteUserGroup`` (HTTP 500), and refuses tags on a user group's ARN, which AWS
    accepts. The three calls keep groups in memory per backend, "active" at once (AWS
    takes a minute); the ARN check admits ``usergroup``."""
    from moto.core.responses import ActionResult
    from moto.elasticache.models import ElastiCacheBackend
    from moto.elasticache.responses import ElastiCacheResponse

    list_tags = ElastiCacheBackend.list_tags_for_resource
    if getattr(list_tags, "__deploy_smoke_patch__", False):
        return

    def groups_of(backend: Any) -> dict[str, dict[str, Any]]:
        if not hasattr(backend, "deploy_smoke_user_groups"):
            backend.deploy_smoke_user_groups = {}
        store: dict[str, dict[str, Any]] = backend.deploy_smoke_user_groups
        return store

    def fault(code: str, message: str) -> Exception:
        from moto.elasticache.exceptions import ElastiCacheException

        return ElastiCacheException(code, message)

    @_wraps(list_tags)
    def list_tags_for_resource(self: Any, arn: str) -> Any:
        if ":usergroup:" in arn:
            return self.tagging_service.list_tags_for_resource(arn)
        return list_tags(self, arn)

    def create_user_group(self: Any) -> ActionResult:
        backend = self.elasticache_backend
        group_id = self._get_param("UserGroupId")
        groups = groups_of(backend)
        if group_id in groups:
            raise fault("UserGroupAlreadyExists", f"User group {group_id} already exists")
        user_ids = self._get_param("UserIds") or []
        missing = [u for u in user_ids if u not in backend.users]
        if missing:
            raise fault("UserNotFound", f"Users {missing} not found")
        arn = f"arn:aws:elasticache:{backend.region_name}:{backend.account_id}:usergroup:{group_id}"
        group = {
            "UserGroupId": group_id,
            "Status": "active",
            "Engine": (self._get_param("Engine") or "redis").lower(),
            "UserIds": list(user_ids),
            "MinimumEngineVersion": "6.0",
            "PendingChanges": {},
            "ReplicationGroups": [],
            "ServerlessCaches": [],
            "ARN": arn,
        }
        tags = self._get_param("Tags") or []
        if tags:
            backend.tagging_service.tag_resource(arn, tags)
        groups[group_id] = group
        return ActionResult(group)

    def describe_user_groups(self: Any) -> ActionResult:
        groups = groups_of(self.elasticache_backend)
        group_id = self._get_param("UserGroupId")
        if group_id:
            if group_id not in groups:
                raise fault("UserGroupNotFound", f"User group {group_id} not found")
            return ActionResult({"UserGroups": [groups[group_id]]})
        return ActionResult({"UserGroups": list(groups.values())})

    def delete_user_group(self: Any) -> ActionResult:
        groups = groups_of(self.elasticache_backend)
        group_id = self._get_param("UserGroupId")
        group = groups.pop(group_id, None)
        if group is None:
            raise fault("UserGroupNotFound", f"User group {group_id} not found")
        return ActionResult({**group, "Status": "deleting"})

    backend_class: Any = ElastiCacheBackend
    backend_class.list_tags_for_resource = list_tags_for_resource
    response: Any = ElastiCacheResponse
    if not hasattr(response, "create_user_group"):
        response.create_user_group = create_user_group
        response.describe_user_groups = describe_user_groups
        response.delete_user_group = delete_user_group


def configure() -> None:
    """Apply the settings and patches in this process (before moto serves a request)."""
    for name, value in MOTO_SETTINGS.items():
        os.environ.setdefault(name, value)
    _patch_applicationautoscaling()
    _patch_rds()
    _patch_elasticache()
    _patch_elasticache_user_groups()
    _patch_secretsmanager()
    _patch_ec2_rule_revoke()


def main(argv: Sequence[str] | None = None) -> None:
    configure()
    from moto.server import main as moto_main

    moto_main(list(argv) if argv is not None else sys.argv[1:])


if __name__ == "__main__":
    main()
