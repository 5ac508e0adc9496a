"""Load tests import Locust (``simulator.load.kinesis_user``) in the pytest process:
tell it not to monkey-patch, or gevent would turn the fixtures' threads and
subprocesses (PostgreSQL, Redis, emulators) into greenlets. ``tap load`` removes
the variable again for the Locust process it starts, which needs the patching."""

from __future__ import annotations

import os

os.environ.setdefault("LOCUST_SKIP_MONKEY_PATCH", "1")
