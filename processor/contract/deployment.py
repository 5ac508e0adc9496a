"""Where the stack runs and what its hosts hold, defined once for every side.

The stack (``lib/config.py``), the processor's settings defaults
(:mod:`processor.contract.environment`), the simulator's and harness's AWS clients
(``simulator/aws_client.py``), ``tap load --target deployed`` and the e2e suite's
deployed target import these instead of writing them again.
"""

from __future__ import annotations

from typing import Final

#: eu-west-2 (London) is where the plant's data must stay.
DEFAULT_REGION: Final = "eu-west-2"

#: Where Amazon RDS's CA bundle is: the processor image copies it here
#: (the root Dockerfile; tests/unit/test_dockerfile.py checks the two agree), and a
#: host that reaches a deployed database is expected to keep it here too
#: (``TAP_DB_CA_BUNDLE`` names another path).
RDS_CA_BUNDLE: Final = "/etc/ssl/certs/rds-global-bundle.pem"
