"""In-memory stand-ins for the service's unit tests: a store with GuildGatewayStore's methods and
results (issue 21 contract; the real one is bot/gateways/store.py, tested on both backends), and the
part of GuildConfig the check reads."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from bot.gateways.directory import GuildGateway
from gateway_client import GatewayConfig


@dataclass(frozen=True)
class FakeInfo:
    guild_id: int
    profile: str
    base_url: str
    chat_model: str
    vision_model: str
    image_model: str
    key_last4: str
    allow_operator_fallback: bool
    updated_at: float
    updated_by: int | None


class FakeGuildGatewayStore:
    def __init__(self) -> None:
        self.rows: dict[int, dict[str, Any]] = {}
        self._clock = itertools.count(1_700_000_000)

    def _info(self, guild_id: int) -> FakeInfo:
        r = self.rows[guild_id]
        return FakeInfo(guild_id, r["profile"], r["base_url"], r["chat_model"], r["vision_model"], r["image_model"],
                        r["api_key"][-4:], r["allow_operator_fallback"], r["updated_at"], r["actor_id"])

    async def load(self, guild_id: int) -> GuildGateway | None:
        r = self.rows.get(guild_id)
        if r is None:
            return None
        config = GatewayConfig(profile=r["profile"], base_url=r["base_url"], api_key=r["api_key"],
                               chat_model=r["chat_model"], vision_model=r["vision_model"],
                               image_model=r["image_model"], name=f"guild:{r['profile']}")
        return GuildGateway(guild_id, config, r["allow_operator_fallback"], r["updated_at"])

    async def info(self, guild_id: int) -> FakeInfo | None:
        return self._info(guild_id) if guild_id in self.rows else None

    async def put(self, guild_id: int, *, profile: str, base_url: str, api_key: str, chat_model: str = "",
                  vision_model: str = "", image_model: str = "", allow_operator_fallback: bool = False,
                  actor_id: int) -> FakeInfo:
        self.rows[guild_id] = {"profile": profile, "base_url": base_url, "api_key": api_key,
                               "chat_model": chat_model, "vision_model": vision_model, "image_model": image_model,
                               "allow_operator_fallback": allow_operator_fallback,
                               "updated_at": float(next(self._clock)), "actor_id": actor_id}
        return self._info(guild_id)

    async def set_fallback(self, guild_id: int, allowed: bool, actor_id: int) -> FakeInfo | None:
        if guild_id not in self.rows:
            return None
        self.rows[guild_id].update(allow_operator_fallback=allowed, actor_id=actor_id,
                                   updated_at=float(next(self._clock)))
        return self._info(guild_id)

    async def remove(self, guild_id: int, actor_id: int) -> bool:
        return self.rows.pop(guild_id, None) is not None


class FakeGuildConfig:
    def __init__(self) -> None:
        self.layers: dict[int, dict[str, Any]] = {}

    async def overrides(self, guild_id: int) -> dict[int, dict[str, Any]]:
        return self.layers
