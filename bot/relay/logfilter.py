"""Keeps webhook tokens out of the logs: discord.py logs request URLs (``/webhooks/{id}/{token}``)
and, at DEBUG, response bodies (a created webhook's ``token``)."""

from __future__ import annotations

import logging
import re

_URL_TOKEN = re.compile(r"(/webhooks/\d+/)[A-Za-z0-9_.\-]+")
_FIELD_TOKEN = re.compile(r"""(['"]token['"]\s*:\s*['"])[^'"]+(['"])""")
LOGGERS = ("discord.http", "discord.webhook.async_")


def redact(text: str) -> str:
    return _FIELD_TOKEN.sub(r"\1***\2", _URL_TOKEN.sub(r"\1***", text))


class WebhookTokenFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def install() -> None:
    """Attach the filter once to the discord.py loggers that print request URLs."""
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, WebhookTokenFilter) for f in logger.filters):
            logger.addFilter(WebhookTokenFilter())
