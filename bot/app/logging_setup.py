"""Logging for the process, with a filter that masks every configured secret in every record."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from bot.app.settings import Settings

MASK = "***"


class SecretMaskingFilter(logging.Filter):
    """Replaces secret values (token, API keys) wherever they appear in a formatted record."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self._secrets = sorted({s for s in secrets if s and len(s) >= 6}, key=len, reverse=True)

    def add(self, secret: str) -> None:
        if secret and len(secret) >= 6 and secret not in self._secrets:
            self._secrets.append(secret)
            self._secrets.sort(key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
            return True
        message = record.getMessage()
        text = message
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        exc_text = record.exc_text or ""
        for secret in self._secrets:
            text = text.replace(secret, MASK)
            exc_text = exc_text.replace(secret, MASK)
        if text != message:
            record.msg, record.args = text, None
        if record.exc_text:
            record.exc_text = exc_text
        return True


def settings_secrets(settings: Settings) -> list[str]:
    secrets = [settings.discord.token.get_secret_value(), settings.gateway.api_key.get_secret_value()]
    secrets += [f.api_key.get_secret_value() for f in settings.gateway.fallbacks]
    return secrets


def configure_logging(settings: Settings) -> SecretMaskingFilter:
    """Root handler on stderr; the masking filter sits on the handler so every logger passes it."""
    mask = SecretMaskingFilter(settings_secrets(settings))
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    handler.addFilter(mask)
    root = logging.getLogger()
    for existing in list(root.handlers):
        if getattr(existing, "_gatecord", False):
            root.removeHandler(existing)
    handler._gatecord = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(settings.logging.level)
    logging.getLogger("discord.gateway").setLevel(max(logging.INFO, root.level))
    return mask
