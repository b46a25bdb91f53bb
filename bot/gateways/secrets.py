"""``SecretBox``: the encryption of stored secrets (a server's own gateway key) with ``[secrets] key``.

Fernet (``cryptography``): AES-128-CBC with an HMAC-SHA256, a token that carries its own IV and time.
``[secrets] key`` holds one Fernet key, or several separated by commas for rotation: the first
encrypts, every one decrypts (``MultiFernet``); ``gatecord rotate-secrets`` re-encrypts every stored
value with the first, after which the others can be dropped.
"""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from bot.gateways.errors import SecretUnreadable

__all__ = ["SecretBox", "InvalidSecretsKey", "parse_keys"]

KEY_HINT = ("a Fernet key is 44 characters of URL-safe base64 (make one with `gatecord secrets new-key`); "
            "several keys are separated by commas, the first one encrypts")


class InvalidSecretsKey(ValueError):
    """``[secrets] key`` is not one Fernet key or a comma-separated list of them (the message never
    shows the value)."""


def parse_keys(value: str) -> list[Fernet]:
    """The Fernet keys of the setting's text, in order; ``InvalidSecretsKey`` naming which one is wrong."""
    parts = [part.strip() for part in value.split(",")]
    if len(parts) > 1 and not all(parts):
        raise InvalidSecretsKey(f"has an empty entry between commas; {KEY_HINT}")
    keys: list[Fernet] = []
    for number, part in enumerate(parts, start=1):
        try:
            keys.append(Fernet(part.encode("ascii")))
        except (ValueError, UnicodeEncodeError):
            which = "is not a valid Fernet key" if len(parts) == 1 else f"entry {number} is not a valid Fernet key"
            raise InvalidSecretsKey(f"{which}: {KEY_HINT}") from None
    return keys


class SecretBox:
    """Encrypts with the first configured key, decrypts with any of them."""

    def __init__(self, keys: list[Fernet]) -> None:
        if not keys:
            raise ValueError("SecretBox needs at least one key")
        self._first = keys[0]
        self._all = MultiFernet(keys)
        self.key_count = len(keys)

    @classmethod
    def from_setting(cls, value: str) -> SecretBox | None:
        """The box for ``[secrets] key`` (None when it is empty); ``InvalidSecretsKey`` when malformed."""
        if not value.strip():
            return None
        return cls(parse_keys(value))

    @staticmethod
    def new_key() -> str:
        """A new random Fernet key (for ``[secrets] key``)."""
        return Fernet.generate_key().decode("ascii")

    def encrypt(self, text: str) -> str:
        return self._first.encrypt(text.encode("utf-8")).decode("ascii")

    def decrypt(self, token: str) -> str:
        """The clear text of ``token``; ``SecretUnreadable`` when no configured key opens it."""
        try:
            return self._all.decrypt(token.encode("ascii")).decode("utf-8")
        except (InvalidToken, UnicodeError):
            raise SecretUnreadable() from None

    def is_current(self, token: str) -> bool:
        """Whether ``token`` is already encrypted with the first key (nothing to rotate)."""
        try:
            self._first.decrypt(token.encode("ascii"))
        except (InvalidToken, UnicodeError):
            return False
        return True

    def rotate(self, token: str) -> str:
        """``token`` encrypted again with the first key; ``SecretUnreadable`` when no key opens it."""
        try:
            return self._all.rotate(token.encode("ascii")).decode("ascii")
        except (InvalidToken, UnicodeError):
            raise SecretUnreadable() from None
