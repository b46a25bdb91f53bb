"""A small, fast Server-Sent-Events decoder for chat streams.

It works on raw byte chunks as they come off the socket: lines are split with ``bytes.split``,
comment lines (``:`` keep-alives) are skipped with one byte comparison, ``data:`` lines are
collected and an event is dispatched at the blank line that ends it. Gateways that omit the blank
line between ``data:`` lines are tolerated (a pending data line that already is a complete JSON
document is dispatched when the next ``data:`` line arrives).
"""

from __future__ import annotations

import json

__all__ = ["SSEDecoder", "DONE"]

#: The data payload that ends an OpenAI-style stream.
DONE = b"[DONE]"

_COLON = 58  # ord(":")
_CR = b"\r"


class SSEDecoder:
    """Incremental decoder: ``feed(chunk)`` returns the completed events as ``(event, data)`` tuples.

    ``event`` is the ``event:`` field (None when absent) and ``data`` the joined data lines as bytes.
    """

    __slots__ = ("_buf", "_data", "_event")

    def __init__(self) -> None:
        self._buf = b""
        self._data: list[bytes] = []
        self._event: str | None = None

    def feed(self, chunk: bytes) -> list[tuple[str | None, bytes]]:
        if self._buf:
            chunk = self._buf + chunk
        lines = chunk.split(b"\n")
        self._buf = lines.pop()
        out: list[tuple[str | None, bytes]] = []
        data = self._data
        for line in lines:
            if not line or line == _CR:  # blank line: dispatch
                if data:
                    out.append((self._event, data[0] if len(data) == 1 else b"\n".join(data)))
                    data.clear()
                self._event = None
                continue
            if line[0] == _COLON:  # comment / keep-alive
                continue
            if line[-1] == 13:  # strip a trailing \r
                line = line[:-1]
            if line.startswith(b"data:"):
                value = line[6:] if line[5:6] == b" " else line[5:]
                if data and self._complete(data):
                    out.append((self._event, data[0] if len(data) == 1 else b"\n".join(data)))
                    data.clear()
                data.append(value)
                continue
            name, _, value = line.partition(b":")
            if value[:1] == b" ":
                value = value[1:]
            if name == b"event":
                if data and self._complete(data):
                    out.append((self._event, data[0] if len(data) == 1 else b"\n".join(data)))
                    data.clear()
                self._event = value.decode("utf-8", "replace")
            # id:, retry: and unknown fields are ignored
        return out

    @staticmethod
    def _complete(data: list[bytes]) -> bool:
        """True when the pending data lines already form a whole event (blank line was omitted)."""
        joined = data[0] if len(data) == 1 else b"\n".join(data)
        if joined == DONE:
            return True
        try:
            json.loads(joined)
        except ValueError:
            return False
        return True

    def finish(self) -> list[tuple[str | None, bytes]]:
        """Flush at end of stream: a last event without its blank line is still delivered."""
        out: list[tuple[str | None, bytes]] = []
        if self._buf:
            rest, self._buf = self._buf, b""
            out.extend(self.feed(rest + b"\n"))
        if self._data:
            out.append((self._event, self._data[0] if len(self._data) == 1 else b"\n".join(self._data)))
            self._data.clear()
        self._event = None
        return out

    @property
    def pending(self) -> bool:
        """True when bytes or data lines are held back waiting for more input."""
        return bool(self._buf or self._data)
