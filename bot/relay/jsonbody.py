"""Parse a request body as JSON within fixed bounds, so that any malformed body is one ``BodyError``
(answered 400) and never an exception from deep inside the parser (answered 500).

The standard library's parser is kept (it reads lone UTF-16 surrogate escapes such as ``"\\ud800"``
into the string, which the validator then refuses naming the field) with three bounds added:
nesting depth, digits of an integer (CPython refuses more than 4,300 with a ``ValueError``, and no
field of the API takes more than 19), and no ``NaN``/``Infinity`` (not JSON).
"""

from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 32  # the deepest valid body is 6 levels (components → row → buttons → button → emoji)
MAX_INT_DIGITS = 100


class BodyError(ValueError):
    """The body is not acceptable JSON; ``str(exc)`` is the sentence for the client."""


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise BodyError(f"the body is not acceptable JSON: an integer has more than {MAX_INT_DIGITS} digits")
    return int(text)


def _parse_constant(name: str) -> Any:
    raise BodyError(f"the body is not valid JSON: {name} is not a JSON value")


_DECODER = json.JSONDecoder(parse_int=_parse_int, parse_constant=_parse_constant)


def parse_body(raw: bytes) -> Any:
    """The JSON value of ``raw`` (UTF-8), or ``BodyError`` saying what is wrong with it."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BodyError(f"the body is not valid UTF-8 (byte {exc.start})") from None
    try:
        value = _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        raise BodyError(
            f"the body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:  # the C scanner's own guard, far above MAX_DEPTH
        raise BodyError(_too_deep()) from None
    if _deeper_than(value, MAX_DEPTH):
        raise BodyError(_too_deep())
    return value


def _too_deep() -> str:
    return f"the body is not acceptable JSON: arrays and objects may be nested at most {MAX_DEPTH} levels deep"


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether arrays/objects nest more than ``limit`` levels (iterative: no recursion to exhaust)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False
