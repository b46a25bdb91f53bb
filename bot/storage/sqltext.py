"""Statements are written once, in SQL that both SQLite and PostgreSQL accept.

Parameters come either by name (``:name`` with a dict) or by position (``?`` with a sequence, as the
code has always written them). SQLite takes both natively; for PostgreSQL both are renumbered here into
asyncpg's own ``$1, $2 …`` (outside quoted strings, comments and ``::`` casts), once per statement
text, and handed to the driver through SQLAlchemy's ``exec_driver_sql``: measured, SQLAlchemy's
``text()`` compilation cost about 120 µs of CPU a statement, most of a budget reservation.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

Params = Sequence[Any] | Mapping[str, Any]

#: every statement at DEBUG when ``logging.sql_debug`` is set; never its parameters (prompts, tokens)
SQL_LOG = logging.getLogger("gatecord.sql")

_DOLLAR_TOKENS = re.compile(
    r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|--[^\n]*|/\*.*?\*/|::|(?<![:\w]):([A-Za-z_]\w*)|\?", re.DOTALL
)


@lru_cache(maxsize=4096)
def dollar(sql: str) -> tuple[str, tuple[str, ...] | int]:
    """``sql`` in PostgreSQL's own numbering (``$1``, ``$2`` …) and what fills the marks: the names of
    ``:name`` parameters in order, or the count of ``?`` marks (one style per statement)."""
    names: list[str] = []
    positions: dict[str, int] = {}
    marks = 0

    def renumber(match: re.Match[str]) -> str:
        nonlocal marks
        token = match.group(0)
        if token == "?":
            marks += 1
            return f"${marks}"
        name = match.group(1)
        if name is None:
            return token
        if name not in positions:
            names.append(name)
            positions[name] = len(names)
        return f"${positions[name]}"

    renumbered = _DOLLAR_TOKENS.sub(renumber, sql)
    if marks and names:
        raise ValueError("a statement takes either '?' marks or ':name' parameters, not both")
    return renumbered, (tuple(names) if names else marks)


def positional(sql: str, params: Params) -> tuple[str, tuple[Any, ...]]:
    """(statement numbered $1…, the values in that order) for the driver itself."""
    statement, wanted = dollar(sql)
    if isinstance(params, Mapping):
        if isinstance(wanted, int):
            if wanted:
                raise ValueError("the statement has '?' marks but parameters were given by name")
            return statement, ()
        try:
            return statement, tuple(params[name] for name in wanted)
        except KeyError as exc:
            raise ValueError(f"no value for the parameter :{exc.args[0]}") from None
    if isinstance(wanted, tuple):
        raise ValueError("the statement has ':name' parameters but values were given by position")
    if wanted != len(params):
        raise ValueError(f"the statement has {wanted} '?' marks but {len(params)} parameters were given")
    return statement, tuple(params)


def log_statement(sql: str) -> None:
    if SQL_LOG.isEnabledFor(logging.DEBUG):
        SQL_LOG.debug("%s (parameters not shown)", " ".join(sql.split()))
