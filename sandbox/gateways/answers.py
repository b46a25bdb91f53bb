"""Deterministic fake model output, so a test can predict every answer.

* chat: ``You said: "<last user text>". This is a deterministic answer from the gateway emulator.``
  (:func:`expected_reply`); after a ``tool`` message: ``Tool result received: <content>``.
* vision: one sentence per image, ``I see a 64x48 image, mostly red (#ff0000).``, then
  `` You asked: "<text>"`` when the message also has text.
* reasoning models: ``think`` style puts ``<think>Thinking about: <text></think>\\n`` before the
  answer in ``content``; ``field`` style sends the same thought in a ``reasoning`` field.
* tokens ≈ ``ceil(chars / 4)`` (+4 per message, +85 per image); ``max_tokens`` cuts the answer at
  ``4 * max_tokens`` chars with ``finish_reason: "length"``.
* tools: ``tool_choice`` ``"required"`` or a named function → a call; ``"auto"`` (default) → a call
  when the last user text has the tool's exact name as a word (aicredits and openai: a ``call <name> <args>``
  line first, see chat.py); arguments fill the schema's required properties.
* embeddings: a hashed bag of stemmed words (:func:`embedding`), so texts sharing words are close.
* ``response_format`` ``json_object`` → ``{"answer": <reply>}``; ``json_schema`` → an object filled
  from the schema.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import random
import re
import struct
from typing import Any

FIXED_SENTENCE = "This is a deterministic answer from the gateway emulator."


def expected_reply(user_text: str) -> str:
    """The plain chat answer to a conversation whose last user message is ``user_text``."""
    return f'You said: "{user_text}". {FIXED_SENTENCE}'


def expected_thought(user_text: str) -> str:
    """The reasoning a reasoning model shows for ``user_text``."""
    return f"Thinking about: {user_text}"


def estimate_tokens(text: str) -> int:
    return math.ceil(len(text) / 4) if text else 0


def content_text(content: Any) -> str:
    """The text parts of a message's ``content`` (string or list of blocks), joined by spaces."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [b.get("text", "") for b in content if isinstance(b, dict) and b.get("type") == "text"]
        return " ".join(p for p in parts if isinstance(p, str))
    return str(content)


def image_refs(content: Any) -> list[str]:
    """URLs of image blocks: ``{"image_url": {"url": u}}`` or DigiCord's bare ``{"image_url": u}``."""
    refs: list[str] = []
    if not isinstance(content, list):
        return refs
    for block in content:
        if not isinstance(block, dict) or block.get("type") != "image_url":
            continue
        raw = block.get("image_url")
        url = raw.get("url") if isinstance(raw, dict) else raw
        if isinstance(url, str):
            refs.append(url.strip().removeprefix("<").removesuffix(">"))
    return refs


def has_audio(content: Any) -> bool:
    return isinstance(content, list) and any(
        isinstance(b, dict) and b.get("type") == "input_audio" for b in content)


def prompt_tokens(messages: list[dict[str, Any]]) -> int:
    total = 0
    for m in messages:
        total += 4 + estimate_tokens(content_text(m.get("content")))
        total += 85 * len(image_refs(m.get("content")))
    return total


def last_user_text(messages: list[dict[str, Any]]) -> str:
    for m in reversed(messages):
        if m.get("role") == "user":
            return content_text(m.get("content"))
    return ""


def split_text(text: str, *, chunk_size: int | None = None, chunk_count: int | None = None) -> list[str]:
    """Split ``text`` into stream pieces: exactly ``chunk_count`` pieces (fewer only when the text
    is shorter), else ``chunk_size``-char pieces, else 8 roughly equal pieces. Never empty."""
    if not text:
        return [""]
    if chunk_size and not chunk_count:
        size = max(1, chunk_size)
        return [text[i:i + size] for i in range(0, len(text), size)]
    count = min(len(text), chunk_count or 8)
    bounds = [len(text) * i // count for i in range(count + 1)]
    return [text[a:b] for a, b in zip(bounds, bounds[1:])]


_TOKEN_PIECE = re.compile(r"\s*\S{1,4}|\s+")


def token_pieces(text: str) -> list[str]:
    """``text`` cut into token-sized stream pieces (up to 4 visible characters with the spaces before
    them), as a model streams it: ``"".join(token_pieces(t)) == t``. Never empty."""
    return _TOKEN_PIECE.findall(text) or [""]


def demo_reply(user_text: str, tokens_per_second: float) -> str:
    """The sandbox's answer: the deterministic one, then a paragraph long enough to be seen streaming."""
    pace = f"about {tokens_per_second:g} tokens per second" if tokens_per_second > 0 else "once, instantly"
    return (
        f"{expected_reply(user_text)}\n\n"
        f"In the sandbox the emulated gateway streams its answers at {pace}, as a real model does: "
        "the bot posts the first words at once, then edits its message about once a second while "
        "the rest arrives, and shows the footer when the answer is complete. Put a gateway API key "
        "in config.toml to talk to a real model instead."
    )


def fill_schema(schema: Any, text: str, depth: int = 0) -> Any:
    """A value that satisfies a simple JSON schema, using ``text`` for strings."""
    if not isinstance(schema, dict) or depth > 6:
        return text
    if "enum" in schema and schema["enum"]:
        return schema["enum"][0]
    typ = schema.get("type")
    if isinstance(typ, list):
        typ = next((t for t in typ if t != "null"), "string")
    if typ == "object" or "properties" in schema:
        props = schema.get("properties") or {}
        keys = schema.get("required") or list(props)
        return {k: fill_schema(props.get(k, {}), text, depth + 1) for k in keys}
    if typ == "array":
        return [fill_schema(schema.get("items", {}), text, depth + 1)]
    if typ == "integer":
        return 1
    if typ == "number":
        return 1.0
    if typ == "boolean":
        return True
    if typ == "null":
        return None
    return text


def offered_functions(tools: Any) -> list[dict[str, Any]]:
    """The ``function`` objects of a request's ``tools``."""
    funcs = [t.get("function", {}) for t in tools or [] if isinstance(t, dict) and t.get("type") == "function"]
    return [f for f in funcs if isinstance(f, dict) and f.get("name")]


def pick_tool(tools: Any, tool_choice: Any, user_text: str) -> dict[str, Any] | None:
    """The function to call, or ``None`` to answer with text: the named or required one, else one whose
    exact name appears as a word in the prompt."""
    funcs = offered_functions(tools)
    if not funcs or tool_choice == "none":
        return None
    if isinstance(tool_choice, dict):
        name = (tool_choice.get("function") or {}).get("name")
        return next((f for f in funcs if f["name"] == name), None)
    if tool_choice == "required":
        return funcs[0]
    words = set(re.findall(r"[a-z0-9_]+", user_text.lower()))
    for f in funcs:
        if f["name"].lower() in words:
            return f
    return None


def tool_arguments(func: dict[str, Any], user_text: str) -> str:
    params = func.get("parameters") or {"type": "object", "properties": {}}
    return json.dumps(fill_schema(params, user_text))


def apply_response_format(text: str, response_format: Any) -> str:
    if not isinstance(response_format, dict):
        return text
    kind = response_format.get("type")
    if kind == "json_object":
        return json.dumps({"answer": text})
    if kind == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema") or {}
        return json.dumps(fill_schema(schema, text))
    return text


#: words an embedding ignores (they make unrelated texts look alike)
_STOP_WORDS = frozenset("""
a an and are as at be but by can do does for from has have how i if in into is it its me my no not of on
or our so that the their them then there these they this to was we were what when where which who why will
with you your
""".split())
_SUFFIXES = ("ations", "ation", "ings", "ing", "edly", "ed", "ies", "es", "ly", "s")


def stem(word: str) -> str:
    """A crude stem (``installing``, ``installed``, ``installs`` → ``install``), enough to match forms."""
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            return word + "y" if suffix == "ies" else word
    return word


def embedding_terms(text: str) -> list[str]:
    """The stemmed words of ``text`` an embedding is made of (stop words left out)."""
    words = re.findall(r"[^\W_]+", text.lower())
    return [stem(w) for w in words if w not in _STOP_WORDS]


def embedding(text: str, dims: int) -> list[float]:
    """A unit vector for ``text`` where similar texts are close: a hashed bag of stemmed words (each word a
    signed direction, weighted 1 + log of its count), so cosine similarity grows with the words two texts
    share — and texts with no word in common are about orthogonal. The same text gives the same vector; a
    text without words gets a direction of its own, derived from its bytes."""
    vec = [0.0] * dims
    counts: dict[str, int] = {}
    for term in embedding_terms(text):
        counts[term] = counts.get(term, 0) + 1
    for term, count in counts.items():
        digest = hashlib.sha256(term.encode()).digest()
        index = int.from_bytes(digest[:4], "big") % dims
        sign = 1.0 if digest[4] & 1 else -1.0
        vec[index] += sign * (1.0 + math.log(count))
    norm = math.sqrt(sum(v * v for v in vec))
    if norm == 0.0:  # no words (or they cancelled out): a fixed random direction
        rng = random.Random(hashlib.sha256(text.encode()).digest())
        vec = [rng.gauss(0.0, 1.0) for _ in range(dims)]
        norm = math.sqrt(sum(v * v for v in vec)) or 1.0
    return [round(v / norm, 6) for v in vec]


def embedding_b64(vec: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(vec)}f", *vec)).decode()
