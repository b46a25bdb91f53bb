"""Rows as every caller reads them: by position (``row[0]``) or by column name (``row["name"]``).

SQLite hands back ``sqlite3.Row``, which already does both; PostgreSQL rows become a ``Record``,
which behaves the same way (iterates its values, ``keys()``, ``dict(row)``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Protocol, overload


class Row(Protocol):
    """What a fetched row offers on both backends."""

    def keys(self) -> list[str]: ...

    def __getitem__(self, key: int | str) -> Any: ...

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[Any]: ...


class Record(Sequence[Any]):
    __slots__ = ("_index", "_values")

    def __init__(self, index: dict[str, int], values: tuple[Any, ...]) -> None:
        self._index = index
        self._values = values

    @overload
    def __getitem__(self, key: int) -> Any: ...

    @overload
    def __getitem__(self, key: slice) -> Sequence[Any]: ...

    @overload
    def __getitem__(self, key: str) -> Any: ...

    def __getitem__(self, key: int | slice | str) -> Any:
        if isinstance(key, str):
            try:
                return self._values[self._index[key]]
            except KeyError:
                raise IndexError(f"no such column: {key}") from None
        return self._values[key]

    def __len__(self) -> int:
        return len(self._values)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def keys(self) -> list[str]:
        return list(self._index)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Record):
            return self._values == other._values and self.keys() == other.keys()
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._values)

    def __repr__(self) -> str:
        return f"Record({dict(zip(self._index, self._values, strict=True))!r})"


def index_of(columns: Sequence[str]) -> dict[str, int]:
    """Column name → position (the first of duplicated names wins, as in sqlite3.Row)."""
    index: dict[str, int] = {}
    for position, name in enumerate(columns):
        index.setdefault(name, position)
    return index
