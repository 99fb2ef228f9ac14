"""`firesentry deadletters list|stats|show|replay`: what ingest refused, why, and a second try."""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import re
import sys
import time
from collections import Counter
from typing import Any

import psycopg

from firesentry.config import Settings
from store import deadletters
from store.deadletters import DeadLetter, ReplayStatus

CONFIRM_ABOVE = 100  # a replay of more rows than this needs --yes (or a yes typed at a terminal)
EXIT_QUEUED = 3  # replay requested, but not every row was replayed before --wait-s ran out
_RELATIVE = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
_POLL_S = 0.2
_SHOWN_IDS = 10

REPLAY_EPILOG = f"""\
The running engine does the replay: this command marks the rows requested, the engine's ingest
thread takes them between batches and feeds them through the same pipeline as MQTT messages
(readings already stored are skipped, so a replay is idempotent). A message rejected again
becomes a new dead letter pointing at its original (see `deadletters show ID`).

Every criterion given must hold (IDs and filters combine with AND); with none, nothing is
replayed. Left out: rows replayed before (unless --again), rows whose payload was truncated
(they cannot be replayed faithfully) and status messages (a status is only true when it is
sent). Replayed events are evaluated like new ones: a fire alarm opens an alert and notifies.
More than {CONFIRM_ABOVE} rows need --yes (or a yes typed at a terminal).

exit status: 0 every requested row was replayed (whatever its outcome) or nothing matched,
  or --wait-s 0; 1 unknown IDs, no criterion, or no confirmation;
  {EXIT_QUEUED} the deadline passed with rows still queued: they stay queued and the engine
  replays them when it runs.
"""


def _connect(settings: Settings) -> psycopg.Connection[Any]:
    from firesentry.app import resolve_endpoints

    return psycopg.connect(resolve_endpoints(settings).dsn(), autocommit=True)


def _when(t: dt.datetime | None) -> str:
    return "-" if t is None else t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _replay_mark(d: DeadLetter) -> str:
    marks = []
    if d.replay_of is not None:
        marks.append(f"replay of #{d.replay_of}")
    if d.replayed_at is not None:
        marks.append(f"replayed {_when(d.replayed_at)}")
    elif d.replay_requested_at is not None:
        marks.append("replay queued")
    if d.payload_truncated:
        marks.append("truncated")
    return f"  [{', '.join(marks)}]" if marks else ""


def _list(settings: Settings, args: argparse.Namespace) -> int:
    with _connect(settings) as conn:
        rows = deadletters.recent(conn, reason=args.reason, device_id=args.device, limit=args.limit)
    for d in rows:
        payload = d.payload[:80].decode("utf-8", "replace").replace("\n", " ")
        print(
            f"#{d.id} {d.received_at:%Y-%m-%d %H:%M:%S} {d.reason:18} {d.device_id or '-':16} "
            f"{d.topic}{_replay_mark(d)}\n    {d.detail}\n    payload: {payload!r}"
        )
    if not rows:
        print("no dead letters")
    return 0


def _stats(settings: Settings, args: argparse.Namespace) -> int:
    since = dt.datetime.now(dt.UTC) - dt.timedelta(hours=args.hours)
    with _connect(settings) as conn:
        rows = deadletters.stats(conn, since)
    print(f"dead letters in the last {args.hours} h")
    print(f"{'reason':20} {'messages':>9} {'devices':>8}  last")
    for reason, n, devices, last in rows:
        print(f"{reason:20} {n:>9} {devices:>8}  {last:%Y-%m-%d %H:%M:%S}")
    return 0


# --- show ---


def payload_text(payload: bytes) -> str | None:
    """The payload as text with non-printables escaped, or None when it is binary (show as hex)."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        return None
    odd = sum(1 for ch in text if not ch.isprintable() and ch not in "\n\t")
    if odd * 10 > len(text):  # mostly control bytes: a binary frame that happens to be ASCII
        return None
    return "".join(
        ch if ch.isprintable() or ch in "\n\t" else ch.encode("unicode_escape").decode("ascii")
        for ch in text
    )


def hexdump(payload: bytes) -> str:
    """Offset, 16 bytes in hex and their printable ASCII, a line each (as `hexdump -C`)."""
    lines = []
    for off in range(0, len(payload), 16):
        chunk = payload[off : off + 16]
        hexes = (
            " ".join(f"{b:02x}" for b in chunk[:8]) + "  " + " ".join(f"{b:02x}" for b in chunk[8:])
        )
        ascii_ = "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in chunk)
        lines.append(f"{off:08x}  {hexes:<48}  |{ascii_}|")
    return "\n".join(lines)


def _outcome(st: ReplayStatus) -> str:
    if st.requested_at is None:
        return "not requested"
    line = f"requested {_when(st.requested_at)} by {st.requested_by or '?'}; "
    if st.replayed_at is None:
        return line + "queued (the running engine replays it between batches)"
    line += f"replayed {_when(st.replayed_at)}: "
    if not st.rejected_again:
        return line + "stored (or already present)"
    again = ", ".join(f"#{r.id} {r.reason}: {r.detail}" for r in st.rejected_again)
    return line + f"rejected again as {again}"


def _show(settings: Settings, args: argparse.Namespace) -> int:
    with _connect(settings) as conn:
        d = deadletters.get(conn, args.id)
        status = deadletters.replay_status(conn, [args.id]) if d is not None else []
    if d is None:
        print(f"firesentry: no dead letter #{args.id}", file=sys.stderr)
        return 1
    if args.raw:
        sys.stdout.flush()
        sys.stdout.buffer.write(d.payload)
        sys.stdout.buffer.flush()
        return 0
    size = f"{len(d.payload)} bytes"
    if d.payload_truncated:
        size += " kept (truncated: the message was larger; it cannot be replayed)"
    fields = [
        ("id", str(d.id)),
        ("received_at", _when(d.received_at)),
        ("topic", d.topic),
        ("device_id", d.device_id or "-"),
        ("reason", d.reason),
        ("detail", d.detail),
        ("payload_size", size),
    ]
    if d.replay_of is not None:
        fields.append(("replay_of", f"#{d.replay_of}"))
    fields.append(("replay", _outcome(status[0])))
    for key, value in fields:
        print(f"{key:13}{value}")
    text = None if args.hex else payload_text(d.payload)
    if text is not None:
        print("payload (UTF-8 text, non-printables escaped):")
        print(text)
    else:
        print("payload (hex):")
        print(hexdump(d.payload))
    return 0


# --- replay ---


def since_arg(text: str) -> dt.datetime:
    """An RFC 3339 time with offset, or a span back from now such as 30m, 2h, 1d."""
    m = _RELATIVE.match(text)
    if m:
        delta = dt.timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})
        return dt.datetime.now(dt.UTC) - delta
    try:
        t = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            "use RFC 3339 (2026-03-01T08:00:00Z) or a span back from now (45s, 30m, 2h, 1d)"
        ) from None
    if t.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no UTC offset; add Z or +08:00")
    return t


def _ids(ids: list[int]) -> str:
    shown = " ".join(f"#{i}" for i in ids[:_SHOWN_IDS])
    return shown + (f" … (+{len(ids) - _SHOWN_IDS})" if len(ids) > _SHOWN_IDS else "")


def _confirmed(n: int, yes: bool) -> bool:
    if yes or n <= CONFIRM_ABOVE:
        return True
    if not sys.stdin.isatty():
        print(f"firesentry: {n} dead letters match; add --yes to replay them", file=sys.stderr)
        return False
    answer = input(f"replay {n} dead letters? [y/N] ")
    return answer.strip().lower() in ("y", "yes")


def _actor(given: str | None) -> str:
    if given:
        return given
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name and no passwd entry (some containers)
        return "unknown"


def _summary(done: list[ReplayStatus]) -> str:
    again = [r for st in done for r in st.rejected_again]
    clean = sum(1 for st in done if not st.rejected_again)
    line = f"replayed {len(done)}: {clean} stored (or already present)"
    if again:
        reasons = Counter(r.reason for r in again)
        per = ", ".join(f"{reason} {n}" for reason, n in reasons.most_common())
        rejected = sum(1 for st in done if st.rejected_again)
        line += (
            f", {rejected} rejected again ({per}): new dead letters {_ids([r.id for r in again])}"
        )
    return line


def _replay(settings: Settings, args: argparse.Namespace) -> int:
    if not args.ids and args.reason is None and args.since is None and args.device is None:
        print(
            "firesentry: give dead-letter IDs or a filter (--reason, --since, --device);"
            " replaying everything is never the default",
            file=sys.stderr,
        )
        return 1
    with _connect(settings) as conn:
        sel = deadletters.select_for_replay(
            conn,
            ids=args.ids or None,
            reason=args.reason,
            since=args.since,
            device=args.device,
            again=args.again,
        )
        if sel.missing:
            print(f"firesentry: no dead letter {_ids(sel.missing)}", file=sys.stderr)
            return 1
        matched = len(sel.ids) + len(sel.truncated) + len(sel.already_replayed) + len(sel.status)
        kinds = ", ".join(f"{n} {k}" for k, n in sorted(sel.kinds.items()))
        print(
            f"{matched} dead letters match; {len(sel.ids)} to replay"
            + (f" ({kinds})" if kinds else "")
        )
        if sel.truncated:
            print(
                f"  skipped {len(sel.truncated)} with a truncated payload (cannot be replayed"
                f" faithfully): {_ids(sel.truncated)}"
            )
        if sel.status:
            print(
                f"  skipped {len(sel.status)} status messages (a status is only true when sent):"
                f" {_ids(sel.status)}"
            )
        if sel.already_replayed:
            print(
                f"  skipped {len(sel.already_replayed)} replayed before (add --again):"
                f" {_ids(sel.already_replayed)}"
            )
        if not sel.ids:
            print("nothing to replay")
            return 0
        if not _confirmed(len(sel.ids), args.yes):
            return 1
        actor = _actor(args.actor)
        n = deadletters.request_replay(conn, sel.ids, actor)
        print(f"replay of {n} dead letters requested by {actor}")
        if args.wait_s <= 0:
            print("not waiting: the engine replays them between batches; see `deadletters show ID`")
            return 0
        print(f"waiting up to {args.wait_s:g} s for the engine")
        deadline = time.monotonic() + args.wait_s
        while True:
            status = deadletters.replay_status(conn, sel.ids)
            done = [st for st in status if st.replayed_at is not None]
            if len(done) == len(status) or time.monotonic() >= deadline:
                break
            time.sleep(_POLL_S)
    if done:
        print(_summary(done))
    if len(done) == len(status):
        return 0
    left = len(status) - len(done)
    who = "no engine picked them up" if not done else f"{left} were not replayed"
    print(
        f"{who} within {args.wait_s:g} s; they stay queued and the engine will replay them when"
        " it runs (`deadletters show ID` tells the outcome)"
    )
    return EXIT_QUEUED


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `deadletters` command."""
    p = sub.add_parser(
        "deadletters", help="rejected messages: recent ones, counts per reason, show, replay"
    )
    dsub = p.add_subparsers(dest="deadletters_command", required=True)
    ls = dsub.add_parser("list", help="newest rejected messages")
    ls.add_argument("--reason")
    ls.add_argument("--device")
    ls.add_argument("--limit", type=int, default=20)
    ls.set_defaults(fn=_list)
    st = dsub.add_parser("stats", help="counts per reason")
    st.add_argument("--hours", type=float, default=24)
    st.set_defaults(fn=_stats)
    sh = dsub.add_parser(
        "show",
        help="one dead letter in full: fields, payload, replay status",
        description="Print one dead letter. The payload is shown as text when it is UTF-8 and"
        " mostly printable (other characters escaped), else as a hex dump. Exit 1 for an"
        " unknown ID.",
    )
    sh.add_argument("id", type=int)
    form = sh.add_mutually_exclusive_group()
    form.add_argument("--hex", action="store_true", help="show the payload as hex, always")
    form.add_argument(
        "--raw", action="store_true", help="write only the payload's raw bytes to stdout"
    )
    sh.set_defaults(fn=_show)
    rp = dsub.add_parser(
        "replay",
        help="feed dead letters through the running engine again (after a registry or rule fix)",
        epilog=REPLAY_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    rp.add_argument("ids", nargs="*", type=int, metavar="ID", help="dead-letter ids (see `list`)")
    rp.add_argument("--reason", help="only this rejection reason, e.g. unknown_device")
    rp.add_argument("--since", type=since_arg, help="received since: RFC 3339, or 30m, 2h, 1d back")
    rp.add_argument("--device", help="only this device id")
    rp.add_argument("--again", action="store_true", help="include rows replayed before")
    rp.add_argument("--yes", action="store_true", help=f"confirm more than {CONFIRM_ABOVE} rows")
    rp.add_argument("--actor", help="who asks (recorded; default: the OS user)")
    rp.add_argument(
        "--wait-s",
        type=float,
        default=30.0,
        help="wait this long for the engine to replay them (default 30; 0: do not wait)",
    )
    rp.set_defaults(fn=_replay)
