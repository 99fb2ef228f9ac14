"""SQL lives in store/: no module of the production packages runs a statement or spells one.

Every statement is a function of a store/ module; the rest of firesentry calls those. This walks
each .py file of the production packages with `ast` and names, file:line, every call of
`.execute`, `.executemany`, `.cursor` or psycopg's `.copy(statement)` on anything, and every
string literal that begins like a statement (SELECT, INSERT, UPDATE, DELETE, WITH and a space).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# store/ is where SQL belongs; tests/, bench/ and migrations/ are not production packages.
PACKAGES = (
    "alerts",
    "api",
    "devices",
    "firesentry",
    "gateway",
    "ingest",
    "rules",
    "simulators",
    "supervision",
)


# Calls that run a statement. `copy` also names dict, list and numpy copies, which take no
# statement: only a `.copy(...)` given a positional argument or `statement=` (psycopg's
# Cursor.copy(statement, params)) counts.
_RUNS_SQL = frozenset({"execute", "executemany", "cursor"})
# A literal that begins like a statement (SELECT … FROM, SELECT f(, INSERT INTO, UPDATE t SET,
# DELETE FROM, WITH x AS (), any case; a leading line break (a triple-quoted block) is allowed,
# leading spaces are not. Keywords alone are prose: "with --curve", "Delete this later".
_STATEMENT = re.compile(
    r"(?:[ \t]*\n\s*)?(SELECT\s+(\d|\w+\s*\(|.+?\sFROM\s)|INSERT\s+INTO\s|UPDATE\s+\w+(\s+\w+)?\s+SET\s"
    r"|DELETE\s+FROM\s|WITH\s+\w+\s+AS\s*\()",
    re.IGNORECASE | re.DOTALL,
)


def _docstrings(tree: ast.AST) -> set[int]:
    """The ids of the docstring nodes of the module and its classes and functions."""
    found: set[int] = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
            and node.body
        ):
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def _runs_sql(call: ast.Call) -> str | None:
    """The attribute name if the call runs a statement; None else."""
    func = call.func
    if not isinstance(func, ast.Attribute):
        return None
    if func.attr in _RUNS_SQL:
        return func.attr
    if func.attr == "copy" and (call.args or any(k.arg == "statement" for k in call.keywords)):
        return func.attr
    return None


def violations(source: str, name: str) -> list[str]:
    """`name:line: why` for every statement run or spelt in the source."""
    tree = ast.parse(source, filename=name)
    docstrings = _docstrings(tree)
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            attr = _runs_sql(node)
            if attr is not None:
                found.append(f"{name}:{node.lineno}: calls .{attr}(…); move it to store/")
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in docstrings
            and _STATEMENT.match(node.value)
        ):
            head = " ".join(node.value.split())[:40]
            found.append(f"{name}:{node.lineno}: SQL literal {head!r}; move it to store/")
    return sorted(found, key=lambda v: (v.split(":")[0], int(v.split(":")[1])))


def production_files() -> list[str]:
    """Every .py file of the production packages, relative to the repository, sorted."""
    return sorted(
        p.relative_to(ROOT).as_posix() for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")
    )


def test_no_production_module_outside_store_runs_or_spells_sql() -> None:
    """Outside store/ nothing executes, copies or spells SQL."""
    found = [
        v
        for path in production_files()
        for v in violations((ROOT / path).read_text(encoding="utf-8"), path)
    ]
    assert not found, "SQL outside store/:\n" + "\n".join(found)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("conn.execute(q)", [".execute"]),
        ("async def f(c):\n    await c.execute(q)", [".execute"]),
        ("self.pool.conn().executemany(q, rows)", [".executemany"]),
        ("with conn.cursor() as cur:\n    pass", [".cursor"]),
        ("cur.copy('COPY t FROM STDIN')", [".copy"]),
        ("cur.copy(statement=q)", [".copy"]),
        ("cur.copy(q)", [".copy"]),
        ("x = d.copy()", []),
        ("y = arr[1:3].copy()", []),
        ("z = rows.copy(deep=True)", []),
        ("execute(q)", []),
        ("q = 'SELECT 1'", ["'SELECT 1'"]),
        ("q = 'select id from t'", ["'select id from t'"]),
        ("q = '''\nUPDATE t SET a = 1'''", ["'UPDATE t SET a = 1'"]),
        ("q = f'DELETE FROM t WHERE id = {i}'", ["'DELETE FROM t WHERE id ="]),
        ("q = 'WITH x AS (SELECT 1) SELECT * FROM x'", ["'WITH x AS"]),
        ("q = 'INSERT\tINTO t VALUES (1)'", ["'INSERT INTO t"]),
        ("msg = ' with a truncated payload'", []),
        ("msg = 'selected 3 devices'", []),
        ("msg = 'Updated'", []),
        ("def f():\n    '''Update the alert row.'''", []),
        ("class C:\n    '''Select a channel.'''", []),
        ("'''With the broker down, nothing is lost.'''", []),
        ("x = 1\n'Delete from the list later'", ["'Delete from the list later'"]),
        ("help = 'with --curve: also measure the engine of'", []),
        ("q = \"SELECT pg_notify('c', '')\"", ["SELECT pg_notify"]),
    ],
)
def test_the_checker_flags_statements_and_spares_copies_and_prose(
    source: str, expected: list[str]
) -> None:
    """Statement calls and literals are flagged; data copies, prose and docstrings are not."""
    found = violations(source, "m.py")
    assert len(found) == len(expected), found
    for v, what in zip(found, expected, strict=True):
        assert v.startswith("m.py:") and what in v, (v, what)
