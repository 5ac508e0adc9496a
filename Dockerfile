# The images of the two ECS services, one Dockerfile with a target each (they shared
# most of their lines as two files). Build from the repo root, for the tasks' CPU
# architecture (X86_64 in lib/components/processing.py and read_api.py; a build on
# an ARM machine would otherwise produce an image Fargate cannot start):
#   docker build --platform linux/amd64 --target processor -t tap-processor .
#   docker build --platform linux/amd64 --target api -t tap-api .
# (`processor` is the last stage: a build without --target makes the processor.)
# Stages: each service's pinned wheels in a virtualenv of its own (the processor image
# deliberately carries no web stack, docs/API.md), the RDS CA bundle, a common
# runtime (non-root uid 10001, /tmp for the read-only root filesystem, the bundle),
# then each target adds its virtualenv and code: no pip cache, no compiler, no cdktf.

ARG PYTHON_IMAGE=python:3.12-slim-bookworm

FROM ${PYTHON_IMAGE} AS venv-builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv

FROM venv-builder AS processor-venv
COPY processor/requirements.txt /tmp/requirements.txt
# --only-binary: every pinned dependency ships manylinux wheels, so the builder
# needs no compiler either. --no-deps: only what requirements.txt pins.
RUN /opt/venv/bin/pip install --no-deps --only-binary=:all: -r /tmp/requirements.txt \
 && /opt/venv/bin/python -c "import boto3, msgspec, psycopg, redis, aws_embedded_metrics" \
 && /opt/venv/bin/pip uninstall --yes pip

FROM venv-builder AS api-venv
# api/requirements.txt includes the processor's (`-r processor-requirements.txt`).
COPY processor/requirements.txt /tmp/processor-requirements.txt
COPY api/requirements.txt /tmp/requirements.txt
RUN /opt/venv/bin/pip install --no-deps --only-binary=:all: -r /tmp/requirements.txt \
 && /opt/venv/bin/python -c "import boto3, psycopg, redis, hiredis, fastapi, uvicorn, httptools, pydantic" \
 && /opt/venv/bin/pip uninstall --yes pip

FROM ${PYTHON_IMAGE} AS rds-ca
# The RDS global CA bundle, for PostgreSQL `verify-full` (TAP_DB_CA_BUNDLE's default).
# urllib instead of curl: the slim image has no curl and the targets must not either.
RUN python -c "import urllib.request; urllib.request.urlretrieve('https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem', '/tmp/rds-global-bundle.pem')" \
 && grep -q 'BEGIN CERTIFICATE' /tmp/rds-global-bundle.pem

FROM ${PYTHON_IMAGE} AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN groupadd --system --gid 10001 tap \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin tap \
 && chown 10001:10001 /tmp && chmod 0700 /tmp
# The task mounts its ephemeral storage at /tmp (the root filesystem is read-only).
# ECS creates such a volume root-owned 0755 unless the image declares the path as a
# VOLUME: then the directory above (owner 10001, 0700) seeds it. Fargate has no tmpfs.
VOLUME ["/tmp"]
COPY --from=rds-ca --chmod=0644 /tmp/rds-global-bundle.pem /etc/ssl/certs/rds-global-bundle.pem
WORKDIR /app

FROM runtime AS api
# TAP_API_HOST: behind the load balancer the API listens on every interface of the
# task (the security group admits the load balancer only).
ENV TAP_API_HOST=0.0.0.0 \
    TAP_API_PORT=8000
COPY --from=api-venv /opt/venv /opt/venv
COPY --chown=root:root processor/ /app/processor/
COPY --chown=root:root api/ /app/api/
USER 10001:10001
EXPOSE 8000
STOPSIGNAL SIGTERM
ENTRYPOINT ["python", "-m", "api.cli"]

FROM runtime AS processor
ENV AWS_EMF_ENVIRONMENT=Local \
    TAP_HEALTH_PORT=8080
COPY --from=processor-venv /opt/venv /opt/venv
COPY --chown=root:root processor/ /app/processor/
USER 10001:10001
EXPOSE 8080
# Liveness only: readiness (PostgreSQL, Redis) going red must not get every task killed.
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python", "-m", "processor.health"]
# SIGTERM (ECS stop) triggers the graceful handoff: stop fetching, commit, release leases.
STOPSIGNAL SIGTERM
ENTRYPOINT ["python", "-m", "processor"]
