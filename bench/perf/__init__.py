"""Helpers of the HTTP benchmark suite (``bench/run.py``): databases, the server process, wrk, the report."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
BENCH = ROOT / "bench"
WRK_SCRIPTS = BENCH / "wrk"
RESULTS = BENCH / "results"

# The suite imports the service's own code (models, token encoding, password hashing).
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
