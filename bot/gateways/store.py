"""``GuildGatewayStore``: the guilds' own gateways in the database, their keys encrypted.

Rows live in ``guild_gateways`` (Alembic 0025). The key is stored only as a Fernet token
(``SecretBox``, ``[secrets] key``) with its last four characters for display; it is decrypted in
``load`` (the ``GatewayDirectory``'s loader) and then masked in every log line of the process
(``mask_secret``). Every change is audited (``bot.guilds.audit``) in the transaction that makes it,
without the key.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from bot.app.logging_setup import mask_secret
from bot.app.settings import PROFILES
from bot.gateways.directory import GUILD_LABEL_PREFIX, GuildGateway
from bot.gateways.errors import GuildGatewayUnavailable, SecretsNotConfigured, SecretUnreadable
from bot.gateways.secrets import SecretBox
from bot.guilds import audit
from bot.guilds.audit import InvalidSetting
from bot.storage.store import Store
from bot.storage.tx import SyncTx, for_update
from gateway_client import GatewayConfig

__all__ = ["GuildGatewayInfo", "GuildGatewayStore", "RotateReport", "AUDIT_TARGET", "last_four"]

#: the audit log's target for a guild's own gateway
AUDIT_TARGET = "gateway"
#: a key shorter than this shows no characters at all (four would be too much of it)
MIN_KEY_FOR_LAST4 = 8

_COLUMNS = ("guild_id, profile, base_url, api_key_encrypted, key_last4, chat_model, vision_model, image_model,"
            " allow_operator_fallback, created_at, updated_at, updated_by")


@dataclass(frozen=True, slots=True)
class GuildGatewayInfo:
    """What may be shown of a guild's own gateway: everything but the key (its last four characters)."""

    guild_id: int
    profile: str
    base_url: str
    chat_model: str
    vision_model: str
    image_model: str
    key_last4: str
    allow_operator_fallback: bool
    updated_at: float
    updated_by: int


@dataclass(slots=True)
class RotateReport:
    """``rotate``: stored keys, how many were re-encrypted with the first key, the guilds whose key no
    configured key opens (left as they are)."""

    rows: int = 0
    rotated: int = 0
    unreadable: list[int] = field(default_factory=list)


def last_four(api_key: str) -> str:
    """The characters ``/gateway show`` may display (none of a very short key)."""
    key = api_key.strip()
    return key[-4:] if len(key) >= MIN_KEY_FOR_LAST4 else ""


def _info(row: Any) -> GuildGatewayInfo:
    return GuildGatewayInfo(
        guild_id=int(row["guild_id"]), profile=row["profile"], base_url=row["base_url"],
        chat_model=row["chat_model"], vision_model=row["vision_model"], image_model=row["image_model"],
        key_last4=row["key_last4"], allow_operator_fallback=bool(row["allow_operator_fallback"]),
        updated_at=float(row["updated_at"]), updated_by=int(row["updated_by"]),
    )


def _audited(info: GuildGatewayInfo | None) -> dict[str, Any] | None:
    """An audit value: what ``/gateway show`` shows (the key as its last four characters only)."""
    if info is None:
        return None
    shown = asdict(info)
    for name in ("guild_id", "updated_at", "updated_by"):
        shown.pop(name)
    return shown


def _select(tx: SyncTx, guild_id: int, *, lock: bool = False) -> Any:
    suffix = for_update(tx.dialect) if lock else ""
    return tx.fetchone(f"SELECT {_COLUMNS} FROM guild_gateways WHERE guild_id = ?{suffix}", (guild_id,))


class GuildGatewayStore:
    def __init__(self, store: Store, box: SecretBox | None, *, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.box = box
        self._clock = clock

    @property
    def configured(self) -> bool:
        """Whether keys can be stored (``[secrets] key`` is set)."""
        return self.box is not None

    async def load(self, guild_id: int) -> GuildGateway | None:
        """The guild's own gateway with its key decrypted (None: it has none). ``GuildGatewayUnavailable``
        when the stored key cannot be decrypted (the encryption key changed, or none is configured)."""
        row = await self.store.fetchone(f"SELECT {_COLUMNS} FROM guild_gateways WHERE guild_id = ?", (guild_id,))
        if row is None:
            return None
        profile = row["profile"]
        if self.box is None:
            raise GuildGatewayUnavailable(guild_id, profile)
        try:
            api_key = self.box.decrypt(row["api_key_encrypted"])
        except SecretUnreadable:
            raise GuildGatewayUnavailable(guild_id, profile) from None
        mask_secret(api_key)
        config = GatewayConfig(
            profile=profile, base_url=row["base_url"], api_key=api_key, chat_model=row["chat_model"],
            vision_model=row["vision_model"], image_model=row["image_model"],
            name=f"{GUILD_LABEL_PREFIX}{profile}",
        )
        return GuildGateway(guild_id=int(row["guild_id"]), config=config,
                            allow_operator_fallback=bool(row["allow_operator_fallback"]),
                            updated_at=float(row["updated_at"]))

    async def info(self, guild_id: int) -> GuildGatewayInfo | None:
        """What may be shown of the guild's own gateway (no key); None when it has none."""
        row = await self.store.fetchone(f"SELECT {_COLUMNS} FROM guild_gateways WHERE guild_id = ?", (guild_id,))
        return None if row is None else _info(row)

    async def guild_ids(self) -> list[int]:
        """The guilds with their own gateway."""
        rows = await self.store.fetchall("SELECT guild_id FROM guild_gateways ORDER BY guild_id")
        return [int(r[0]) for r in rows]

    async def put(self, guild_id: int, *, profile: str, base_url: str, api_key: str, chat_model: str = "",
                  vision_model: str = "", image_model: str = "", allow_operator_fallback: bool = False,
                  actor_id: int) -> GuildGatewayInfo:
        """Save (create or replace) the guild's own gateway, its key encrypted; audited without the key.
        ``SecretsNotConfigured`` without ``[secrets] key``; ``InvalidSetting`` for an empty key or URL or an
        unknown profile (the check before saving is ``GuildGatewayService``'s)."""
        if self.box is None:
            raise SecretsNotConfigured()
        api_key = api_key.strip()
        if profile not in PROFILES:
            raise InvalidSetting("profile", f"Unknown gateway profile {profile!r}: one of {', '.join(PROFILES)}.")
        if not base_url.strip():
            raise InvalidSetting("base_url", "Give the gateway's base URL.")
        if not api_key:
            raise InvalidSetting("api_key", "Give the gateway's API key.")
        mask_secret(api_key)
        token = self.box.encrypt(api_key)
        last4 = last_four(api_key)
        now = float(self._clock())

        def body(tx: SyncTx) -> GuildGatewayInfo:
            old_row = _select(tx, guild_id, lock=True)
            old = None if old_row is None else _info(old_row)
            # a change must show as a new updated_at (the directory rebuilds the client on it), even within
            # the clock's resolution
            updated = now if old is None or now > old.updated_at else old.updated_at + 0.001
            tx.execute(
                "INSERT INTO guild_gateways(guild_id, profile, base_url, api_key_encrypted, key_last4, chat_model,"
                " vision_model, image_model, allow_operator_fallback, created_at, updated_at, updated_by)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (guild_id) DO UPDATE SET profile = excluded.profile, base_url = excluded.base_url,"
                " api_key_encrypted = excluded.api_key_encrypted, key_last4 = excluded.key_last4,"
                " chat_model = excluded.chat_model, vision_model = excluded.vision_model,"
                " image_model = excluded.image_model, allow_operator_fallback = excluded.allow_operator_fallback,"
                " updated_at = excluded.updated_at, updated_by = excluded.updated_by",
                (guild_id, profile, base_url.strip(), token, last4, chat_model.strip(), vision_model.strip(),
                 image_model.strip(), int(allow_operator_fallback), now, updated, actor_id),
            )
            new = GuildGatewayInfo(guild_id, profile, base_url.strip(), chat_model.strip(), vision_model.strip(),
                                   image_model.strip(), last4, allow_operator_fallback, updated, actor_id)
            audited_new = _audited(new)
            if audited_new is not None and old is not None:
                audited_new["key_changed"] = True  # every /gateway set gives a key (never prefilled)
            audit.add(tx, ts=now, guild_id=guild_id, actor_id=actor_id, target=AUDIT_TARGET, field="gateway",
                      old=_audited(old), new=audited_new)
            return new

        return await self.store.run(body)

    async def set_fallback(self, guild_id: int, allowed: bool, actor_id: int) -> GuildGatewayInfo | None:
        """Whether the operator's gateway may serve when the guild's own is down (never on a refused key).
        None when the guild has no gateway of its own."""
        now = float(self._clock())

        def body(tx: SyncTx) -> GuildGatewayInfo | None:
            row = _select(tx, guild_id, lock=True)
            if row is None:
                return None
            old = _info(row)
            if old.allow_operator_fallback == allowed:
                return old
            updated = now if now > old.updated_at else old.updated_at + 0.001
            tx.execute("UPDATE guild_gateways SET allow_operator_fallback = ?, updated_at = ?, updated_by = ?"
                       " WHERE guild_id = ?", (int(allowed), updated, actor_id, guild_id))
            audit.add(tx, ts=now, guild_id=guild_id, actor_id=actor_id, target=AUDIT_TARGET,
                      field="allow_operator_fallback", old=old.allow_operator_fallback, new=allowed)
            return GuildGatewayInfo(old.guild_id, old.profile, old.base_url, old.chat_model, old.vision_model,
                                    old.image_model, old.key_last4, allowed, updated, actor_id)

        return await self.store.run(body)

    async def remove(self, guild_id: int, actor_id: int) -> bool:
        """Back to the operator's gateway; False when the guild had none of its own."""
        now = float(self._clock())

        def body(tx: SyncTx) -> bool:
            row = _select(tx, guild_id, lock=True)
            if row is None:
                return False
            tx.execute("DELETE FROM guild_gateways WHERE guild_id = ?", (guild_id,))
            audit.add(tx, ts=now, guild_id=guild_id, actor_id=actor_id, target=AUDIT_TARGET, field="gateway",
                      old=_audited(_info(row)), new=None)
            return True

        return await self.store.run(body)

    async def rotate(self) -> RotateReport:
        """Re-encrypt every stored key with the first configured key (``gatecord rotate-secrets``). A key
        no configured key opens is left as it is and its guild reported. ``updated_at`` is kept: the
        gateway itself did not change. ``SecretsNotConfigured`` without ``[secrets] key``."""
        box = self.box
        if box is None:
            raise SecretsNotConfigured()

        def body(tx: SyncTx) -> RotateReport:
            report = RotateReport()
            rows = tx.fetchall("SELECT guild_id, api_key_encrypted FROM guild_gateways ORDER BY guild_id"
                               + for_update(tx.dialect))
            for guild_id, token in ((int(r[0]), str(r[1])) for r in rows):
                report.rows += 1
                if box.is_current(token):
                    continue
                try:
                    fresh = box.rotate(token)
                except SecretUnreadable:
                    report.unreadable.append(guild_id)
                    continue
                tx.execute("UPDATE guild_gateways SET api_key_encrypted = ? WHERE guild_id = ?", (fresh, guild_id))
                report.rotated += 1
            return report

        return await self.store.run(body)
