"""``python -m simulator``: the same as ``tap simulate``."""

from __future__ import annotations

from simulator.cli import main

raise SystemExit(main())
