"""Production code does not pull in the fake third-party services or a dev-only dependency."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

ENTRY_MODULES = (
    "firesentry.app",
    "firesentry.cli",
    "api.app",
    "ingest.consumer",
    "ingest.pipeline",
)

_PROBE = """
import importlib, json, pkgutil, sys
import alerts
for name in sys.argv[1:]:
    importlib.import_module(name)
walked = [m.name for m in pkgutil.walk_packages(alerts.__path__, "alerts.")]
for name in walked:
    importlib.import_module(name)
leaked = sorted(
    m for m in sys.modules
    if m == "aiosmtpd" or m.startswith(("aiosmtpd.", "simulators.services"))
)
print(json.dumps({"walked": walked, "leaked": leaked}))
"""


def test_production_modules_import_no_fake_services_nor_aiosmtpd() -> None:
    """Importing the entry modules and every alerts module loads neither aiosmtpd nor a fake."""
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, *ENTRY_MODULES],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert "alerts.notify.email" in result["walked"], result["walked"]
    assert result["leaked"] == []
