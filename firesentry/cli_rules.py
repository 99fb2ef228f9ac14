"""`firesentry rules check|reload`: validate a rule file, or make the running engine re-read it."""

from __future__ import annotations

import argparse
import os
import signal
from pathlib import Path

from firesentry.config import Settings
from rules.loader import RuleFileError, load_rules


def _check(settings: Settings, args: argparse.Namespace) -> int:
    path = Path(args.file) if args.file else settings.rules.file
    try:
        rf = load_rules(path)
    except RuleFileError as exc:
        print(exc)
        return 1
    kinds: dict[str, int] = {}
    for r in rf.rules:
        kinds[r.kind] = kinds.get(r.kind, 0) + 1
    summary = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
    print(f"{path or '(default rules)'}: {len(rf.rules)} rules OK ({summary})")
    return 0


def _reload(settings: Settings, args: argparse.Namespace) -> int:
    # Validate first: a broken file is reported here instead of only in the engine's log.
    if _check(settings, args) != 0:
        return 1
    pid_file = settings.embedded.dir / "engine.pid"
    try:
        pid = int(pid_file.read_text().strip())
        os.kill(pid, signal.SIGHUP)
    except (OSError, ValueError):
        print(f"no running engine found ({pid_file}); start one with `firesentry run`")
        return 1
    print(f"asked engine {pid} to reload its rules")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `rules` command and its subcommands."""
    rules = sub.add_parser("rules", help="check or reload the rule file")
    rsub = rules.add_subparsers(dest="rules_command", required=True)
    check = rsub.add_parser("check", help="validate a rule file (default: the configured one)")
    check.add_argument("file", nargs="?", help="rule file to check")
    check.set_defaults(fn=_check)
    reload = rsub.add_parser("reload", help="make the running engine re-read its rule file")
    reload.set_defaults(fn=_reload, file=None)
