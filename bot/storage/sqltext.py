"""Statements are written once, in SQL that both SQLite and PostgreSQL accept.

Parameters come either by name (``:name`` with a dict) or by position (``?`` with a sequence, as the
code has always written them). SQLite takes both natively; for PostgreSQL (SQLAlchemy ``text()``)
positional marks are renamed ``:p0, :p1 …`` here, outside quoted strings and comments.
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

_TOKENS = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|--[^\n]*|/\*.*?\*/|\?", re.DOTALL)


@lru_cache(maxsize=2048)
def named(sql: str) -> tuple[str, int]:
    """``sql`` with each ``?`` outside literals and comments renamed ``:p0``, ``:p1`` …; and their count."""
    count = 0

    def rename(match: re.Match[str]) -> str:
        nonlocal count
        if match.group(0) != "?":
            return match.group(0)
        count += 1
        return f":p{count - 1}"

    return _TOKENS.sub(rename, sql), count


def bind(sql: str, params: Params) -> tuple[str, dict[str, Any]]:
    """(statement, parameters by name) for SQLAlchemy ``text()``."""
    if isinstance(params, Mapping):
        return sql, dict(params)
    renamed, count = named(sql)
    if count != len(params):
        raise ValueError(f"the statement has {count} '?' marks but {len(params)} parameters were given")
    return renamed, {f"p{i}": value for i, value in enumerate(params)}


def log_statement(sql: str) -> None:
    if SQL_LOG.isEnabledFor(logging.DEBUG):
        SQL_LOG.debug("%s (parameters not shown)", " ".join(sql.split()))
