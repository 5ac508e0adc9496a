"""The end-to-end suite and its tools: scenarios on the local pipeline or a deployed
stack, the checks (``verify``), the report, ``tap demo`` and the deploy smoke. The
local servers and the local stack live in :mod:`local_pipeline`.

See docs/E2E.md.
"""
