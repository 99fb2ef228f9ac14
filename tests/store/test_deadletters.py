"""`firesentry deadletters show|replay` as an operator types them, and the replay queue's store side."""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

import psycopg
import pytest

from firesentry.cli_deadletters import hexdump, payload_text
from firesentry.embedded import Endpoints
from ingest.decode import Rejection
from store import deadletters
from tests.helpers import scalar, wait_until
from tests.store.test_devices_cli import run

TEXT = b'{"ts": 1700000000000, "seq": 1,\n "metrics": {"level_m": 2.9}}\r\x1b[31m'
FRAME = b"@@\x00\x01\x02\x00\xff\xfe\x00\x00#\x00\x10\x05\x00\x00\x00##"


def add(
    dsn: str,
    *,
    device: str = "d1",
    kind: str = "telemetry",
    reason: str = "unknown_device",
    payload: bytes = b'{"ts": 1, "metrics": {}}',
    age: dt.timedelta = dt.timedelta(0),
    truncated: bool = False,
    replay_of: int | None = None,
) -> int:
    """Insert one dead letter and return its id."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "INSERT INTO rejected_messages"
            " (received_at, topic, device_id, reason, detail, payload, payload_truncated, replay_of)"
            " VALUES (now() - %s, %s, %s, %s, 'why', %s, %s, %s) RETURNING id",
            (age, f"fs/v1/{device}/{kind}", device, reason, payload, truncated, replay_of),
        ).fetchone()
    assert row is not None
    return int(row[0])


def requested(dsn: str) -> set[int]:
    """Ids of the rows marked for replay."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT id FROM rejected_messages WHERE replay_requested_at IS NOT NULL"
        ).fetchall()
    return {int(r[0]) for r in rows}


def fields(out: str) -> dict[str, str]:
    """The `key value` lines of `deadletters show`, up to the payload."""
    head = out.split("\npayload (", 1)[0]
    return dict(line.split(None, 1) for line in head.splitlines())


def fake_engine(dsn: str, reject: set[int], errors: list[BaseException]) -> None:
    """Do what the engine does with requested rows: claim, store or re-reject, mark replayed."""
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            claimed = wait_until(lambda: deadletters.claim_replays(conn, 100), 10, "a request")
            with conn.transaction():
                for req in claimed:
                    if req.id in reject:
                        conn.execute(
                            "INSERT INTO rejected_messages (topic, device_id, reason, detail,"
                            " payload, replay_of) VALUES (%s, 'd1', 'unknown_device',"
                            " 'still unknown', %s, %s)",
                            (req.topic, req.payload, req.id),
                        )
                deadletters.mark_replayed(conn, [req.id for req in claimed])
    except BaseException as exc:  # handed to the test thread
        errors.append(exc)


# --- show ---


def test_show_prints_every_field_and_text_payload(
    cli_env: Endpoints, capsys: pytest.CaptureFixture[str]
) -> None:
    """show prints the fields, the size and a UTF-8 payload as text with control bytes escaped."""
    i = add(cli_env.dsn(), payload=TEXT)
    rc, out, _ = run(capsys, "deadletters", "show", str(i))
    assert rc == 0
    f = fields(out)
    assert f["id"] == str(i) and f["topic"] == "fs/v1/d1/telemetry" and f["device_id"] == "d1"
    assert f["reason"] == "unknown_device" and f["detail"] == "why"
    assert f["payload_size"] == f"{len(TEXT)} bytes" and f["replay"] == "not requested"
    assert f["received_at"].endswith("Z")
    body = out.split("payload (UTF-8 text, non-printables escaped):\n", 1)[1]
    assert body == '{"ts": 1700000000000, "seq": 1,\n "metrics": {"level_m": 2.9}}\\r\\x1b[31m\n'


def test_show_binary_payload_as_hex(cli_env: Endpoints, capsys: pytest.CaptureFixture[str]) -> None:
    """A payload with NUL and non-UTF-8 bytes is shown as a hex dump with an ASCII column."""
    i = add(cli_env.dsn(), payload=FRAME)
    rc, out, _ = run(capsys, "deadletters", "show", str(i))
    assert rc == 0 and "payload (hex):" in out
    assert "00000000  40 40 00 01 02 00 ff fe  00 00 23 00 10 05 00 00  |@@........#.....|" in out
    assert "00000010  00 23 23" in out and "|.##|" in out


def test_show_hex_and_raw_options(
    cli_env: Endpoints, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    """--hex forces a hex dump of a text payload; --raw writes the stored bytes and nothing else."""
    i = add(cli_env.dsn(), payload=FRAME)
    t = add(cli_env.dsn(), payload=b'{"a": 1}')
    from firesentry.cli import main

    assert main(["deadletters", "show", str(t), "--hex"]) == 0
    out = capsysbinary.readouterr().out
    assert b"payload (hex):\n00000000  7b 22 61 22 3a 20 31 7d" in out
    assert main(["deadletters", "show", str(i), "--raw"]) == 0
    assert capsysbinary.readouterr().out == FRAME


def test_show_unknown_id(cli_env: Endpoints, capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown id is said so on stderr with exit status 1."""
    rc, out, err = run(capsys, "deadletters", "show", "987654")
    assert rc == 1 and out == "" and "no dead letter #987654" in err


def test_payload_text_and_hexdump_rules() -> None:
    """Text is UTF-8 that is mostly printable; binary frames and invalid UTF-8 go to hex."""
    assert payload_text('{"t": "温度"}\x00'.encode()) == '{"t": "温度"}\\x00'
    assert payload_text(b"\xff\xfe") is None
    assert payload_text(b"@@\x00\x00\x01\x02\x00\x00") is None
    assert payload_text(b"") == ""
    assert hexdump(b"") == ""
    assert hexdump(b"A" * 17).splitlines()[1] == "00000010  " + "41".ljust(48) + "  |A|"


# --- replay: selection ---


def test_replay_refuses_without_ids_or_filters(
    cli_env: Endpoints, capsys: pytest.CaptureFixture[str]
) -> None:
    """With neither ids nor filters nothing is requested and the command exits 1."""
    add(cli_env.dsn())
    rc, _, err = run(capsys, "deadletters", "replay", "--yes")
    assert rc == 1 and "give dead-letter IDs or a filter" in err
    assert requested(cli_env.dsn()) == set()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["#a", "#c"], {"a", "c"}),
        (["--reason", "unknown_device"], {"a", "b"}),
        (["--device", "d1"], {"a", "c"}),
        (["--since", "1h"], {"b", "c"}),
        (["--since", "90m"], {"b", "c"}),
        (["--since", "@2h"], {"b", "c"}),
        (["#a", "#b", "#c", "--reason", "unknown_device", "--device", "d2"], {"b"}),
    ],
)
def test_replay_selects_by_ids_and_filters(
    cli_env: Endpoints, capsys: pytest.CaptureFixture[str], args: list[str], expected: set[str]
) -> None:
    """IDs, --reason, --device and --since (relative or RFC 3339) select rows, all ANDed."""
    dsn = cli_env.dsn()
    ids = {
        "a": add(dsn, device="d1", age=dt.timedelta(hours=3)),
        "b": add(dsn, device="d2"),
        "c": add(dsn, device="d1", reason="malformed"),
    }
    two_h_ago = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    argv = [str(ids[a[1:]]) if a.startswith("#") else two_h_ago if a == "@2h" else a for a in args]
    rc, out, _ = run(capsys, "deadletters", "replay", *argv, "--wait-s", "0")
    assert rc == 0, out
    assert f"{len(expected)} dead letters match; {len(expected)} to replay" in out
    assert requested(dsn) == {ids[k] for k in expected}


def test_replay_rejects_a_since_without_offset(
    cli_env: Endpoints, capsys: pytest.CaptureFixture[str]
) -> None:
    """A --since time without a UTC offset is a usage error, not a guess at the time zone."""
    with pytest.raises(SystemExit) as exc:
        run(capsys, "deadletters", "replay", "--since", "2026-01-01T08:00:00")
    assert exc.value.code == 2 and "has no UTC offset" in capsys.readouterr().err


def test_replay_unknown_id(cli_env: Endpoints, capsys: pytest.CaptureFixture[str]) -> None:
    """Asking for an id that does not exist requests nothing and exits 1."""
    i = add(cli_env.dsn())
    rc, _, err = run(capsys, "deadletters", "replay", str(i), "987654", "--wait-s", "0")
    assert rc == 1 and "no dead letter #987654" in err
    assert requested(cli_env.dsn()) == set()


def test_replayed_rows_are_selected_again_only_with_again(
    cli_env: Endpoints, capsys: pytest.CaptureFixture[str]
) -> None:
    """A row replayed before is skipped and named; --again queues it once more."""
    dsn = cli_env.dsn()
    i = add(dsn)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "UPDATE rejected_messages SET replay_requested_at = now(), replayed_at = now()"
        )
    rc, out, _ = run(capsys, "deadletters", "replay", str(i), "--wait-s", "0")
    assert rc == 0 and "skipped 1 replayed before (add --again)" in out
    assert "nothing to replay" in out
    rc, out, _ = run(capsys, "deadletters", "replay", str(i), "--again", "--wait-s", "0")
    assert rc == 0 and "replay of 1 dead letters requested" in out
    assert scalar(dsn, "SELECT replayed_at FROM rejected_messages WHERE id = %s", (i,)) is None


def test_truncated_and_status_messages_are_skipped(
    cli_env: Endpoints, capsys: pytest.CaptureFixture[str]
) -> None:
    """Truncated payloads and status messages are left out and the operator is told why."""
    dsn = cli_env.dsn()
    cut = add(dsn, payload=b"x" * 2048, truncated=True)
    status = add(dsn, kind="status", payload=b"offline")
    ok = add(dsn)
    rc, out, _ = run(capsys, "deadletters", "replay", "--device", "d1", "--wait-s", "0")
    assert rc == 0
    assert "3 dead letters match; 1 to replay (1 telemetry)" in out
    assert f"skipped 1 with a truncated payload (cannot be replayed faithfully): #{cut}" in out
    assert f"skipped 1 status messages (a status is only true when sent): #{status}" in out
    assert requested(dsn) == {ok}
    rc, out, _ = run(capsys, "deadletters", "show", str(cut))
    assert "truncated: the message was larger; it cannot be replayed" in fields(out)["payload_size"]


def test_more_than_100_rows_need_yes(
    cli_env: Endpoints, capsys: pytest.CaptureFixture[str]
) -> None:
    """Over 100 matching rows are not requested without --yes (stdin is no terminal)."""
    dsn = cli_env.dsn()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO rejected_messages (topic, device_id, reason, payload)"
            " SELECT 'fs/v1/d1/telemetry', 'd1', 'unknown_device', '{}' FROM generate_series(1, 101)"
        )
    rc, out, err = run(capsys, "deadletters", "replay", "--reason", "unknown_device")
    assert rc == 1 and "101 dead letters match" in out and "add --yes" in err
    assert requested(dsn) == set()
    rc, out, _ = run(capsys, "deadletters", "replay", "--device", "d1", "--yes", "--wait-s", "0")
    assert rc == 0 and len(requested(dsn)) == 101


# --- replay: request and wait ---


def test_request_marks_rows_and_deadline_leaves_them_queued(
    cli_env: Endpoints, capsys: pytest.CaptureFixture[str]
) -> None:
    """With no engine running the rows are marked (when, by whom), the wait ends at its deadline
    with exit 3, and they stay queued."""
    dsn = cli_env.dsn()
    i = add(dsn)
    rc, out, _ = run(capsys, "deadletters", "replay", str(i), "--actor", "Li", "--wait-s", "1")
    assert rc == 3, out
    assert (
        "no engine picked them up within 1 s; they stay queued and the engine will replay them"
        " when it runs" in out
    )
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT now() - replay_requested_at, replay_requested_by, replayed_at"
            " FROM rejected_messages WHERE id = %s",
            (i,),
        ).fetchone()
    assert row is not None and row[0] < dt.timedelta(minutes=1) and row[1:] == ("Li", None)
    rc, out, _ = run(capsys, "deadletters", "show", str(i))
    assert "by Li; queued" in fields(out)["replay"]
    rc, out, _ = run(capsys, "deadletters", "list")
    assert f"#{i} " in out and "[replay queued]" in out


def test_wait_reports_stored_and_rejected_again(
    cli_env: Endpoints, capsys: pytest.CaptureFixture[str]
) -> None:
    """Once the engine has replayed every row the summary counts clean ones and re-rejections
    per reason, and show links the original and its new dead letter."""
    dsn = cli_env.dsn()
    good, bad = add(dsn), add(dsn)
    errors: list[BaseException] = []
    engine = threading.Thread(target=fake_engine, args=(dsn, {bad}, errors))
    engine.start()
    try:
        rc, out, _ = run(capsys, "deadletters", "replay", str(good), str(bad), "--wait-s", "20")
    finally:
        engine.join(20)
    assert not errors, errors
    new = int(scalar(dsn, "SELECT id FROM rejected_messages WHERE replay_of = %s", (bad,)))
    assert rc == 0, out
    assert (
        "replayed 2: 1 stored (or already present), 1 rejected again (unknown_device 1):"
        f" new dead letters #{new}" in out
    )
    rc, out, _ = run(capsys, "deadletters", "show", str(bad))
    assert f"rejected again as #{new} unknown_device: still unknown" in fields(out)["replay"]
    rc, out, _ = run(capsys, "deadletters", "show", str(good))
    assert fields(out)["replay"].endswith("stored (or already present)")
    rc, out, _ = run(capsys, "deadletters", "show", str(new))
    assert fields(out)["replay_of"] == f"#{bad}"


# --- the engine's side ---


def test_claim_skips_locked_leased_truncated_and_done_rows(db: Endpoints) -> None:
    """Claims never hand one row to two workers: locks and the lease keep others off, a lapsed
    lease frees the row, truncated and replayed rows are never claimed."""
    dsn = db.dsn()
    a, b = add(dsn), add(dsn)
    cut = add(dsn, truncated=True)
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert deadletters.request_replay(conn, [a, b, cut], "test") == 2
        conn.execute(
            "UPDATE rejected_messages SET replay_requested_at = now() WHERE id = %s", (cut,)
        )
    with psycopg.connect(dsn) as one, psycopg.connect(dsn, autocommit=True) as two:
        got = deadletters.claim_replays(one, 1)
        assert [r.id for r in got] == [a] and got[0].payload == b'{"ts": 1, "metrics": {}}'
        assert [r.id for r in deadletters.claim_replays(two, 10)] == [b]  # a is locked
        one.commit()
        assert deadletters.claim_replays(two, 10) == []  # a and b are leased
        two.execute("UPDATE rejected_messages SET replay_claimed_until = now() - interval '1 s'")
        assert [r.id for r in deadletters.claim_replays(two, 10)] == [a, b]
        with two.transaction():
            assert deadletters.mark_replayed(two, [a, b]) == 2
        assert deadletters.mark_replayed(two, []) == 0
        two.execute("UPDATE rejected_messages SET replay_claimed_until = NULL")
        assert deadletters.claim_replays(two, 10) == []


def test_claim_inside_a_rolled_back_transaction_is_undone(db: Endpoints) -> None:
    """A batch transaction that claims and then rolls back leaves its rows claimable at once."""
    dsn = db.dsn()
    a = add(dsn)
    with psycopg.connect(dsn, autocommit=True) as conn:
        deadletters.request_replay(conn, [a], "test")
        tx: Any = conn.transaction()
        with pytest.raises(RuntimeError), tx:
            assert [r.id for r in deadletters.claim_replays(conn, 10)] == [a]
            deadletters.mark_replayed(conn, [a])
            raise RuntimeError("batch failed")
        assert [r.id for r in deadletters.claim_replays(conn, 10)] == [a]


def test_write_rejections_records_truncation_and_replay_link(db: Endpoints) -> None:
    """write_rejections stores payload_truncated and replay_of with the rest of the row."""
    dsn = db.dsn()
    original = add(dsn)
    with psycopg.connect(dsn, autocommit=True) as conn:
        with conn.transaction():
            deadletters.write_rejections(
                conn,
                [
                    Rejection("fs/v1/d1/telemetry", "d1", "oversize", "big", b"x" * 8, True),
                    Rejection(
                        "fs/v1/d1/telemetry", "d1", "unknown_device", "", b"{}", False, original
                    ),
                ],
            )
        rows = deadletters.recent(conn, limit=2)
    assert [(d.reason, d.payload_truncated, d.replay_of) for d in rows] == [
        ("unknown_device", False, original),
        ("oversize", True, None),
    ]
