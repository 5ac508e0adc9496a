"""The locustfile of ``tap load``: a fleet of simulated sensors against Kinesis, with
end-to-end latency to PostgreSQL and Redis in the same report (docs/LOAD.md).

With ``--readers``, :class:`ReaderUser` reads the API (``tap api``) in the same
campaign; ``tap load`` names the user classes to run on Locust's command line.

Thin on purpose: the user, shape, options and listener live in
:mod:`simulator.load.campaign`. Importing this module imports Locust, which
monkey-patches the process with gevent: never import it from the processor, the
stack (cdktf) or the unit tests.
"""

from __future__ import annotations

from simulator.load.campaign import CampaignShape, FleetUser, ReaderUser

__all__ = ["CampaignShape", "FleetUser", "ReaderUser"]
