"""Errors of per-server gateways (gw-chat's minimal copy: gw-store's branch adds the storage errors)."""

from __future__ import annotations

from gateway_client.errors import AuthenticationError

__all__ = ["GuildGatewayUnavailable"]


class GuildGatewayUnavailable(AuthenticationError):
    """The guild's own gateway key can no longer be read (the operator changed the encryption key).

    An ``AuthenticationError``: never served by another gateway instead."""

    def user_message(self) -> str:
        return ("This server's own AI gateway key can no longer be read by the bot (its operator changed the "
                "encryption key). Nothing was charged. A server manager needs to set it again with `/gateway set`, "
                "or go back to the bot's gateway with `/gateway remove`.")
