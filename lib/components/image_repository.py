"""An ECR repository for one service's image: immutable tags, scanned on push,
encrypted with our key, the 30 newest images kept.

The processor and the read API each have one (:mod:`lib.components.processing`,
:mod:`lib.components.read_api`). :class:`ImageRepository` creates its resources in
the caller's scope, under the ids the components always gave them, instead of being
a construct node of its own: a node would add a segment to their construct paths,
so their Terraform addresses (``aws_ecr_repository.processing_repository_...``)
would change and a deploy would replace live repositories (and their images).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Final

from cdktf_cdktf_provider_aws.ecr_lifecycle_policy import EcrLifecyclePolicy
from cdktf_cdktf_provider_aws.ecr_repository import (
    EcrRepository,
    EcrRepositoryEncryptionConfiguration,
    EcrRepositoryImageScanningConfiguration,
)
from constructs import Construct

#: Images kept per repository: a rollback target or two, not every build forever.
KEEP_IMAGES: Final = 30


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageRepositoryConfig:
    """One service's image repository."""

    #: The repository's name (``ecr-<service>-<environment>-<suffix>``).
    name: str
    #: KMS key the images are encrypted with (the stack's data key).
    kms_key_arn: str


class ImageRepository:
    """``repository`` and ``repository-lifecycle`` in ``scope`` (see the module
    docstring for why not a construct of its own)."""

    def __init__(self, scope: Construct, *, config: ImageRepositoryConfig) -> None:
        repository = EcrRepository(
            scope,
            "repository",
            name=config.name,
            # A tag names one image forever: a task definition is what it says.
            image_tag_mutability="IMMUTABLE",
            image_scanning_configuration=EcrRepositoryImageScanningConfiguration(scan_on_push=True),
            encryption_configuration=[
                EcrRepositoryEncryptionConfiguration(
                    encryption_type="KMS", kms_key=config.kms_key_arn
                )
            ],
            force_delete=True,
        )
        EcrLifecyclePolicy(
            scope,
            "repository-lifecycle",
            repository=repository.name,
            policy=json.dumps(
                {
                    "rules": [
                        {
                            "rulePriority": 1,
                            "description": f"keep the {KEEP_IMAGES} most recent images",
                            "selection": {
                                "tagStatus": "any",
                                "countType": "imageCountMoreThan",
                                "countNumber": KEEP_IMAGES,
                            },
                            "action": {"type": "expire"},
                        }
                    ]
                }
            ),
        )
        self.resource: EcrRepository = repository
        #: The repository's ARN (what an execution role may pull from).
        self.arn: str = repository.arn
        #: Push the image here; task definitions name ``<url>:<tag>``.
        self.repository_url: str = repository.repository_url
