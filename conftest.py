"""Root conftest: makes the local-stack fixtures (real PostgreSQL and Redis,
emulated Kinesis and Secrets Manager) available to every test folder."""

pytest_plugins = ["e2e.fixtures"]
