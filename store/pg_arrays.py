"""Columns of Python values as PostgreSQL array literals, for `unnest(%s::type[], ...)`.

psycopg adapts a list parameter element by element in Python (its ListDumper): with a batch
opening hundreds of alerts that was a third of the writer thread's time at half the
sustained rate (py-spy, bench --curve). Joining the elements' text in one call and letting
PostgreSQL parse the literal does the same work in C. The element type comes from the cast
in the statement, so a statement names each column's type once.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Sequence
from typing import Any

_CASTS = re.compile(r"%s::(\w+)\[\]")


def _quoted(v: str) -> str:
    return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _text(values: Sequence[Any]) -> str:
    return ",".join("NULL" if v is None else _quoted(str(v)) for v in values)


def _number(values: Sequence[Any]) -> str:
    if None not in values:
        return ",".join(map(str, values))
    return ",".join("NULL" if v is None else str(v) for v in values)


def _float(values: Sequence[Any]) -> str:
    # str() of a float is its shortest exact form; PostgreSQL reads inf, -inf and nan too.
    return ",".join("NULL" if v is None else str(float(v)) for v in values)


def _bool(values: Sequence[Any]) -> str:
    return ",".join("NULL" if v is None else ("t" if v else "f") for v in values)


def _timestamp(values: Sequence[Any]) -> str:
    return ",".join(
        "NULL" if v is None else '"' + _as_datetime(v).isoformat() + '"' for v in values
    )


def _as_datetime(v: Any) -> dt.datetime:
    if not isinstance(v, dt.datetime):
        raise TypeError(f"expected a datetime, got {type(v).__name__}")
    return v


_BY_TYPE: dict[str, Callable[[Sequence[Any]], str]] = {
    "int": _number,
    "integer": _number,
    "bigint": _number,
    "smallint": _number,
    "int2": _number,
    "int4": _number,
    "int8": _number,
    "float8": _float,
    "text": _text,
    "bool": _bool,
    "timestamptz": _timestamp,
}


def array_params(sql: str, columns: Sequence[Sequence[Any]]) -> list[str]:
    """Each column as the array literal its `%s::type[]` placeholder in sql reads."""
    types = _CASTS.findall(sql)
    if len(types) != len(columns):
        raise ValueError(f"{len(columns)} columns for {len(types)} array placeholders")
    return ["{" + _BY_TYPE[t](col) + "}" for t, col in zip(types, columns, strict=True)]
