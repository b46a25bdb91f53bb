"""Logging for the process: one handler on the root logger, with one filter that scrubs secrets.

Every logger's records pass the root handler, so the filter there covers discord.py (request URLs
carry interaction and webhook tokens), aiohttp, SQLAlchemy and our own code alike. The filter masks
the configured secrets (bot token, gateway keys) and anything shaped like a token: the token part of
``/webhooks/{id}/{token}`` and ``/interactions/{id}/{token}/callback``, ``"token": "…"`` fields,
``Bearer``/``Bot`` credentials, relay keys (``gcr_…``) and Discord bot tokens. Secrets learnt at run time
(a server's own gateway key, decrypted from the database) are added with ``mask_secret``.

discord.py logs request and response bodies at DEBUG (messages quoting members, webhooks with their
tokens): its lines keep the method, URL and status, the bodies are summarised by size. The storage
layer logs statements (never their parameters: members' prompts, webhook tokens) on ``gatecord.sql``
at DEBUG only when ``logging.sql_debug`` is set; SQLAlchemy's own engine log stays at WARNING.
"""

from __future__ import annotations

import logging
import re
import sys
import weakref
from collections.abc import Iterable, Iterator
from typing import Any, TextIO
from urllib.parse import unquote, urlsplit

from bot.app.settings import Settings

MASK = "***"
HANDLER_NAME = "gatecord"
FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
MIN_SECRET_LENGTH = 6  # shorter "secrets" (test placeholders) would mask ordinary words

_SECRET_FIELDS = r"token|access_token|api_key|apikey|x-api-key|secret|client_secret|password|authorization"
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # webhook tokens and interaction follow-up tokens: /webhooks/{id}/{token}
    (re.compile(r"(/webhooks/\d+/)[^/?#\s'\"]+"), rf"\g<1>{MASK}"),
    # interaction callbacks: /interactions/{id}/{token}/callback
    (re.compile(r"(/interactions/\d+/)[^/?#\s'\"]+"), rf"\g<1>{MASK}"),
    # "token": "…" in a logged payload (a created webhook, an interaction), dict reprs and JSON alike
    (re.compile(rf"""((?i:['"](?:{_SECRET_FIELDS})['"])\s*:\s*['"])[^'"]*(['"])"""), rf"\g<1>{MASK}\g<2>"),
    # credentials in a header value
    (re.compile(r"\b(Bearer|Bot)\s+[A-Za-z0-9._~+/=-]{8,}"), rf"\g<1> {MASK}"),
    # relay keys gcr_<key id>_<secret>: the key id is public, the rest is not
    (re.compile(r"\b(gcr_[0-9a-f]{12}_)[A-Za-z0-9_-]+"), rf"\g<1>{MASK}"),
    (re.compile(r"\bgcr_[A-Za-z0-9_-]{16,}"), f"gcr_{MASK}"),
    # a Discord bot token (base64 user id . timestamp . hmac)
    (re.compile(r"\b[A-Za-z0-9_-]{23,28}\.[A-Za-z0-9_-]{6,7}\.[A-Za-z0-9_-]{27,}"), MASK),
)


class SecretSet:
    """The secrets one filter masks, longest first (a secret containing another is masked whole).

    A few are replaced one by one, which is fastest. A hosted bot learns one key per server that brings its
    own gateway: past ``INDEX_FROM`` secrets a text is scanned once instead, each position's first
    ``MIN_SECRET_LENGTH`` characters looked up in an index, so a log line costs about the same with ten keys
    or ten thousand (measured for a 200-character line: 14 µs with 100 keys one by one, 69 µs with 1,000 and
    0.9 ms with 10,000; scanned, about 20–30 µs whatever their number).
    """

    INDEX_FROM = 64

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._known: set[str] = set()
        self._ordered: list[str] = []
        self._index: dict[str, list[str]] = {}
        for secret in secrets:
            self.add(secret)

    def __len__(self) -> int:
        return len(self._known)

    def __iter__(self) -> Iterator[str]:
        return iter(self._known)

    def add(self, secret: str) -> bool:
        """Mask ``secret`` from now on; False when it is too short to mask or known already."""
        if not secret or len(secret) < MIN_SECRET_LENGTH or secret in self._known:
            return False
        self._known.add(secret)
        if len(self._known) < self.INDEX_FROM:  # replaced one by one, in this order, while they are few
            self._ordered.append(secret)
            self._ordered.sort(key=len, reverse=True)
        same_start = self._index.setdefault(secret[:MIN_SECRET_LENGTH], [])
        same_start.append(secret)
        same_start.sort(key=len, reverse=True)
        return True

    def mask(self, text: str) -> str:
        if len(self._known) < self.INDEX_FROM:
            for secret in self._ordered:
                text = text.replace(secret, MASK)
            return text
        parts: list[str] = []
        start = i = 0
        end = len(text) - MIN_SECRET_LENGTH
        while i <= end:
            for secret in self._index.get(text[i:i + MIN_SECRET_LENGTH], ()):
                if text.startswith(secret, i):
                    parts += (text[start:i], MASK)
                    i = start = i + len(secret)
                    break
            else:
                i += 1
        parts.append(text[start:])
        return "".join(parts)


def scrub(text: str, secrets: Iterable[str] | SecretSet = ()) -> str:
    """``text`` with every known secret and every token-shaped value masked."""
    text = (secrets if isinstance(secrets, SecretSet) else SecretSet(secrets)).mask(text)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _payload_summary(arg: Any) -> Any:
    """discord.py logs request and response bodies at DEBUG: messages (members' prompts, answers
    quoting them), webhooks with their tokens. Show their size, not their contents."""
    if isinstance(arg, dict | list):
        return f"<payload of {len(arg)} item(s), not shown>"
    if isinstance(arg, str | bytes) and arg[:1] in ("{", "[", b"{", b"["):
        return f"<payload of {len(arg)} characters, not shown>"
    return arg


#: secrets learnt while the process runs (a server's own gateway key, read from the database): every
#: SecretFilter masks them, those made later too
_runtime_secrets = SecretSet()
_filters: weakref.WeakSet[SecretFilter] = weakref.WeakSet()


def mask_secret(value: str) -> None:
    """Mask ``value`` in every log line of this process from now on (every ``SecretFilter``, present and
    future). For secrets that are not in the settings: a server's own gateway key, once decrypted."""
    if not _runtime_secrets.add(value):
        return
    for secret_filter in list(_filters):
        secret_filter.add(value)


class SecretFilter(logging.Filter):
    """Scrubs secrets from a record's message, exception text and stack before any handler formats it."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._secrets = SecretSet([*secrets, *_runtime_secrets])
        _filters.add(self)

    def add(self, secret: str) -> None:
        """Mask ``secret`` from now on."""
        self._secrets.add(secret)

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            if record.name.startswith("discord."):
                record.args = tuple(_payload_summary(arg) for arg in record.args)
        try:
            message = record.getMessage()
        except Exception:  # a malformed call: never let logging's error report print the raw arguments
            message = f"{record.msg} (log arguments not shown)"
        cleaned = scrub(message, self._secrets)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub(record.exc_text, self._secrets)
        if record.stack_info:
            record.stack_info = scrub(record.stack_info, self._secrets)
        return True


def settings_secrets(settings: Settings) -> list[str]:
    secrets = [settings.discord.token.get_secret_value(), settings.gateway.api_key.get_secret_value()]
    secrets += [f.api_key.get_secret_value() for f in settings.gateway.fallbacks]
    encryption = settings.secrets.key.get_secret_value()  # [secrets] key: the whole value and each key
    secrets += [encryption, *(part.strip() for part in encryption.split(","))] if encryption.strip() else []
    if settings.storage.url is not None:  # the PostgreSQL password, as written and percent-decoded
        password = urlsplit(settings.storage.url.get_secret_value()).password
        secrets += [password, unquote(password)] if password else []
    return secrets


def configure_logging(settings: Settings, stream: TextIO | None = None) -> SecretFilter:
    """One root handler (stderr, or ``stream``) carrying the secret filter; replaces an earlier one."""
    secret_filter = SecretFilter(settings_secrets(settings))
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.set_name(HANDLER_NAME)
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(secret_filter)
    root = logging.getLogger()
    for existing in list(root.handlers):
        if existing.get_name() == HANDLER_NAME:
            root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(settings.logging.level)
    # At DEBUG the gateway logs every event whole: members' messages, interaction payloads and tokens.
    logging.getLogger("discord.gateway").setLevel(max(logging.INFO, root.level))
    # Statements (without their parameters) only when asked for; SQLAlchemy's engine log would show them.
    logging.getLogger("gatecord.sql").setLevel(logging.DEBUG if settings.logging.sql_debug else logging.INFO)
    logging.getLogger("sqlalchemy.engine").setLevel(logging.WARNING)
    # Alembic announces its context at INFO on every start; the schema version is reported by gatecord itself.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    return secret_filter
