"""Drift check: every path and query parameter the campaign's read side requests is a
GET route of the API's OpenAPI schema (the simulator may not import the API, so its
paths are strings; this test is their one link to ``api.app``)."""

from __future__ import annotations

from api.app import create_app
from processor.contract.api_environment import ApiSettings
from simulator.load.read_mix import REQUESTED_PARAMETERS, REQUESTED_PATHS


def schema_paths() -> dict[str, set[str]]:
    settings = ApiSettings(
        aws_region="eu-west-2", environment="local", db_host="127.0.0.1", db_port=5432,
        db_name="tap", db_sslmode="disable", db_ca_bundle="", redis_host="127.0.0.1",
        redis_port=6379, redis_tls=False, redis_ca_bundle="", log_level="INFO",
        db_secret_arn="arn:aws:secretsmanager:eu-west-2:000000000000:secret:db",
        redis_secret_arn="arn:aws:secretsmanager:eu-west-2:000000000000:secret:redis",
    )  # fmt: skip
    schema = create_app(settings).openapi()
    return {
        path: {p["name"] for p in item["get"].get("parameters", []) if p["in"] == "query"}
        for path, item in schema["paths"].items()
        if "get" in item
    }


def test_every_requested_path_and_parameter_is_in_the_api() -> None:
    routes = schema_paths()
    missing = [path for path in REQUESTED_PATHS if path not in routes]
    assert not missing, f"the read user requests paths the API lacks: {missing}"
    for path, parameters in REQUESTED_PARAMETERS.items():
        unknown = parameters - routes[path]
        assert not unknown, f"{path}: the API has no query parameter(s) {sorted(unknown)}"
