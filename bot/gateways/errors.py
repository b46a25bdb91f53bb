"""Errors of the per-server gateways: encryption not configured, a stored key that cannot be read."""

from __future__ import annotations

from gateway_client.errors import AuthenticationError

__all__ = ["SecretsNotConfigured", "SecretUnreadable", "GuildGatewayUnavailable", "UNAVAILABLE_MESSAGE"]


class SecretsNotConfigured(RuntimeError):
    """No ``[secrets] key`` (``GATECORD_SECRETS__KEY``): a server's key cannot be stored encrypted."""

    def __init__(self) -> None:
        super().__init__(
            "no encryption key is configured for stored gateway keys: make one with `gatecord secrets new-key`, "
            "set it as GATECORD_SECRETS__KEY (or key under [secrets]) and restart the bot"
        )


class SecretUnreadable(ValueError):
    """A stored token that none of the configured keys decrypts (never says more: no token, no key)."""

    def __init__(self) -> None:
        super().__init__("the stored value cannot be decrypted with any configured [secrets] key")


UNAVAILABLE_MESSAGE = (
    "This server's own AI gateway key can no longer be read by the bot: the bot's operator changed its "
    "encryption key. A server manager must set it again with `/gateway set` (or go back to the bot's "
    "gateway with `/gateway remove`)."
)


class GuildGatewayUnavailable(AuthenticationError):
    """A guild has its own gateway, but its stored key cannot be decrypted with the configured key(s).

    An ``AuthenticationError``: the guild is not served (never by the operator's key instead), and its
    members get ``UNAVAILABLE_MESSAGE`` through the usual error wording. No request was sent.
    """

    default_message = UNAVAILABLE_MESSAGE

    def __init__(self, guild_id: int, profile: str | None = None) -> None:
        super().__init__(UNAVAILABLE_MESSAGE, profile=profile)
        self.guild_id = guild_id
        self.request_sent = False

    def __str__(self) -> str:
        return self.message
