"""Where benchmark results go and what they record about the machine."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import socket
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def children_of(pid: int) -> list[int]:
    """The processes whose parent is pid, from /proc."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue  # ended meanwhile
            # The command may hold spaces and parentheses: the fields after its last ')' do not.
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(d.name))
    return out


def machine() -> dict[str, Any]:
    """CPU count, Python, numpy and host of this run."""
    import numpy

    return {
        "host": socket.gethostname(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "machine": platform.machine(),
    }


def write(name: str, result: dict[str, Any]) -> Path:
    """Write a result as bench/results/<name>-<date>-<host>.json and return the path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"{name}-{stamp}-{socket.gethostname()}.json"
    path.write_text(
        json.dumps({"benchmark": name, "at": stamp, "machine": machine(), **result}, indent=2)
        + "\n"
    )
    return path
