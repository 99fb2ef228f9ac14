"""Array literals read back by PostgreSQL exactly as the values went in."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import psycopg
import pytest

from firesentry.embedded import Endpoints
from store.pg_arrays import array_params

TEXTS = [
    "plain",
    'a "quoted" word',
    'back\\slash \\" both',
    "{braces}, commas, and NULL",
    "NULL",
    "",
    "  spaces  ",
    "火警 一店一码 🚒",
    '{"json": "with \\"escapes\\" and \\\\n"}',
    None,
]


def test_every_type_round_trips(db: Endpoints) -> None:
    t0 = dt.datetime(2026, 12, 2, 0, 35, 1, 123456, tzinfo=dt.UTC)
    cols: list[list[Any]] = [
        TEXTS,
        [1, -2, 2**40, None, 0, 7, 8, 9, 10, 11],
        [0.1, -0.0, 1e-300, float("inf"), float("-inf"), None, 3.0, 2.5e10, 1 / 3, 7.0],
        [True, False, None, True, True, False, False, True, True, None],
        [t0, None, t0 + dt.timedelta(days=400), t0, t0, t0, t0, t0, t0, t0],
    ]
    sql = (
        "SELECT * FROM unnest(%s::text[], %s::bigint[], %s::float8[], %s::bool[],"
        " %s::timestamptz[])"
    )
    with psycopg.connect(db.dsn(), autocommit=True) as conn:
        rows = conn.execute(sql, array_params(sql, cols)).fetchall()
    assert [list(c) for c in zip(*rows, strict=True)] == cols


def test_nan_is_read_as_nan(db: Endpoints) -> None:
    sql = "SELECT * FROM unnest(%s::float8[])"
    with psycopg.connect(db.dsn(), autocommit=True) as conn:
        (got,) = conn.execute(sql, array_params(sql, [[float("nan")]])).fetchone() or (None,)
    assert got is not None and math.isnan(got)


def test_a_column_count_that_does_not_match_the_statement_is_refused() -> None:
    with pytest.raises(ValueError, match="2 columns for 1 array placeholders"):
        array_params("SELECT unnest(%s::int[])", [[1], [2]])
