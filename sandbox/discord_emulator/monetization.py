"""Discord's monetization as the emulator models it: SKUs, entitlements (their gateway events, the list
endpoint with its filters and pagination, consumption, test entitlements), the entitlements carried by
interactions, and the premium button (``{type: 2, style: 6, sku_id}``).

Per Discord's documentation (Entitlement and SKU resources, the one-time purchases guide):
- An entitlement is ``{id, sku_id, application_id, user_id?, guild_id?, type, deleted, starts_at,
  ends_at, consumed}``; a guild subscription's carries the guild and the buyer, a user's only the user.
  Active subscriptions have ``ends_at`` null until they end (Discord sets it when a subscription is
  cancelled); test entitlements (``POST /applications/{app}/entitlements``) have no dates at all.
- ``GET .../entitlements`` returns active and ended ones in ascending id order, ``before``/``after``
  paging, ``limit`` 1-100 (default 100), ``exclude_ended`` (default false), ``exclude_deleted`` (default
  true). ``POST .../{id}/consume`` answers 204 for a consumable SKU and 400 40018 for any other.
- Not documented by Discord, chosen here: consuming an entitlement that is already consumed answers
  404 10029 Unknown Entitlement (``ALREADY_CONSUMED``), and a user cannot buy a consumable again while
  their previous one of that SKU is unconsumed (as Discord's store outside test mode).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator, Optional

from aiohttp import web

from . import errors as E
from .access import require_dict
from .bodies import JSON_BODY
from .errors import field_error, merge_errors

if TYPE_CHECKING:
    from .server import DiscordEmulator

# SKU types and flags (Discord's SKU object)
SKU_DURABLE, SKU_CONSUMABLE, SKU_SUBSCRIPTION, SKU_SUBSCRIPTION_GROUP = 2, 3, 5, 6
SKU_AVAILABLE = 1 << 2
SKU_GUILD_SUBSCRIPTION = 1 << 7
SKU_USER_SUBSCRIPTION = 1 << 8
# Entitlement types
ENT_PURCHASE, ENT_TEST_MODE_PURCHASE, ENT_APPLICATION_SUBSCRIPTION = 1, 4, 8
OWNER_GUILD, OWNER_USER = 1, 2  # owner_type of a test entitlement
PREMIUM_STYLE = 6
PREMIUM_FORBIDDEN = ("custom_id", "label", "emoji", "url")
LIST_LIMIT_MAX = 100
ALREADY_CONSUMED = (404, E.UNKNOWN_ENTITLEMENT, "Unknown Entitlement")


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _ended(ent: dict[str, Any], now: datetime.datetime) -> bool:
    ends = ent.get("ends_at")
    return bool(ends) and datetime.datetime.fromisoformat(str(ends)) <= now


def is_active(ent: dict[str, Any], now: Optional[datetime.datetime] = None) -> bool:
    """Not deleted, not ended, and (a consumable) not consumed yet."""
    return not ent["deleted"] and not ent.get("consumed") and not _ended(ent, now or utcnow())


@dataclass
class Purchase:
    """Who an entitlement goes to (from the SKU's flags) when a member buys it."""

    guild_id: Optional[int]
    user_id: int


class Monetization:
    """SKUs and entitlements of the emulated application; ``emu.monetization``."""

    def __init__(self, emu: "DiscordEmulator") -> None:
        self.emu = emu
        self.skus: dict[int, dict[str, Any]] = {}
        self.entitlements: dict[int, dict[str, Any]] = {}
        self.consume_calls: list[int] = []  # every POST .../consume, in order, whatever its answer

    # -- the test API -------------------------------------------------------------------------
    def add_sku(self, sku_id: int, name: str, *, type: int = SKU_SUBSCRIPTION, flags: int = SKU_GUILD_SUBSCRIPTION) -> dict[str, Any]:
        sku = {
            "id": str(sku_id),
            "type": type,
            "dependent_sku_id": None,
            "application_id": str(self.emu.application_id),
            "manifest_labels": None,
            "access_type": 1,
            "name": name,
            "features": [],
            "release_date": None,
            "premium": False,
            "slug": "-".join(name.lower().replace(",", "").split()) or str(sku_id),
            "flags": flags,
            "show_age_gate": False,
        }
        self.skus[sku_id] = sku
        self.emu.signal.changed()
        return sku

    async def grant(
        self,
        sku_id: int,
        *,
        guild_id: Optional[int] = None,
        user_id: Optional[int] = None,
        dispatch: bool = True,
        type: Optional[int] = None,
        ends_at: Optional[datetime.datetime] = None,
    ) -> dict[str, Any]:
        if sku_id not in self.skus:
            raise KeyError(f"unknown SKU {sku_id}: add it first with emu.add_sku")
        if guild_id is None and user_id is None:
            raise ValueError("an entitlement belongs to a guild or a user: give guild_id or user_id")
        sku = self.skus[sku_id]
        subscription = sku["type"] == SKU_SUBSCRIPTION
        ent: dict[str, Any] = {
            "id": str(self.emu.ids.next()),
            "sku_id": str(sku_id),
            "application_id": str(self.emu.application_id),
            "type": type if type is not None else (ENT_APPLICATION_SUBSCRIPTION if subscription else ENT_PURCHASE),
            "deleted": False,
            "consumed": False,
            "starts_at": utcnow().isoformat(),
            "ends_at": ends_at.isoformat() if ends_at is not None else None,
            "promotion_id": None,
            "gift_code_flags": 0,
        }
        if user_id is not None:
            ent["user_id"] = str(user_id)
        if guild_id is not None:
            ent["guild_id"] = str(guild_id)
        if subscription:
            ent["subscription_id"] = str(self.emu.ids.next())
        self.entitlements[int(ent["id"])] = ent
        if dispatch:
            await self.emu.gateway.dispatch("ENTITLEMENT_CREATE", dict(ent))
        self.emu.signal.changed()
        return ent

    def get(self, entitlement_id: int) -> dict[str, Any]:
        try:
            return self.entitlements[entitlement_id]
        except KeyError:
            raise KeyError(f"unknown entitlement {entitlement_id}") from None

    async def end(self, entitlement_id: int, *, dispatch: bool = True, delete: bool = False) -> dict[str, Any]:
        ent = self.get(entitlement_id)
        if delete:
            ent["deleted"] = True
        else:
            ent["ends_at"] = utcnow().isoformat()
        if dispatch:
            await self.emu.gateway.dispatch("ENTITLEMENT_DELETE" if delete else "ENTITLEMENT_UPDATE", dict(ent))
        self.emu.signal.changed()
        return ent

    async def redispatch(self, entitlement_id: int) -> None:
        await self.emu.gateway.dispatch("ENTITLEMENT_CREATE", dict(self.get(entitlement_id)))

    def purchase(self, sku_id: int, *, user_id: int, guild_id: Optional[int]) -> Purchase:
        """Where a member's purchase of ``sku_id`` goes, or ValueError with the store's reason."""
        sku = self.skus.get(sku_id)
        if sku is None:
            raise ValueError(f"SKU {sku_id} is not for sale")
        if sku["flags"] & SKU_GUILD_SUBSCRIPTION:
            if guild_id is None:
                raise ValueError(f"{sku['name']} is bought for a server: open a server's channel first")
            target = Purchase(guild_id=guild_id, user_id=user_id)
        else:
            target = Purchase(guild_id=None, user_id=user_id)
        for ent in self.active(guild_id=target.guild_id, user_id=None if target.guild_id else user_id):
            if int(ent["sku_id"]) != sku_id:
                continue
            if sku["type"] == SKU_CONSUMABLE:
                raise ValueError(f"{sku['name']} cannot be bought again until the app has used the previous one")
            raise ValueError(f"{'this server' if target.guild_id else 'you'} already own {sku['name']}")
        return target

    async def buy(self, sku_id: int, *, user_id: int, guild_id: Optional[int]) -> dict[str, Any]:
        """A member buys ``sku_id`` in the store (the page's "buy", a premium button's click)."""
        target = self.purchase(sku_id, user_id=user_id, guild_id=guild_id)
        return await self.grant(sku_id, guild_id=target.guild_id, user_id=target.user_id)

    # -- queries ------------------------------------------------------------------------------
    def active(self, *, guild_id: Optional[int] = None, user_id: Optional[int] = None) -> list[dict[str, Any]]:
        """Active entitlements of a guild (``guild_id``) and/or a user's own (no guild), by id."""
        now = utcnow()
        out = []
        for eid in sorted(self.entitlements):
            ent = self.entitlements[eid]
            if not is_active(ent, now):
                continue
            owner_guild = ent.get("guild_id")
            if (guild_id is not None and owner_guild == str(guild_id)) or (
                user_id is not None and owner_guild is None and ent.get("user_id") == str(user_id)
            ):
                out.append(ent)
        return out

    def all_active(self) -> list[dict[str, Any]]:
        now = utcnow()
        return [self.entitlements[e] for e in sorted(self.entitlements) if is_active(self.entitlements[e], now)]

    def for_interaction(self, user_id: int, guild_id: Optional[int]) -> list[dict[str, Any]]:
        """What an interaction carries: the user's and the guild's active entitlements."""
        return [dict(e) for e in self.active(guild_id=guild_id, user_id=user_id)]

    def premium_buttons(self, components: list[Any]) -> list[int]:
        """SKU ids of the premium buttons among ``components`` (rows, sections, containers)."""
        return [int(c["sku_id"]) for c, _ in iter_buttons(components) if c.get("style") == PREMIUM_STYLE and c.get("sku_id")]

    # -- REST ---------------------------------------------------------------------------------
    def routes(self) -> list[web.RouteDef]:
        p = "/api/v10/applications/{application_id}"
        return [
            web.get(p + "/skus", self._list_skus),
            web.get(p + "/entitlements", self._list_entitlements),
            web.post(p + "/entitlements", self._create_test_entitlement),
            web.get(p + "/entitlements/{entitlement_id}", self._get_entitlement),
            web.delete(p + "/entitlements/{entitlement_id}", self._delete_test_entitlement),
            web.post(p + "/entitlements/{entitlement_id}/consume", self._consume),
        ]

    def _application(self, request: web.Request) -> None:
        if request.match_info.get("application_id") != str(self.emu.application_id):
            raise E.not_found(E.UNKNOWN_APPLICATION, "Application")

    def _entitlement(self, request: web.Request) -> dict[str, Any]:
        self._application(request)
        try:
            ent = self.entitlements.get(int(request.match_info["entitlement_id"]))
        except ValueError:
            ent = None
        if ent is None:
            raise E.not_found(E.UNKNOWN_ENTITLEMENT, "Entitlement")
        return ent

    async def _list_skus(self, request: web.Request) -> web.Response:
        self._application(request)
        return self.emu.json([dict(s) for s in self.skus.values()])

    async def _list_entitlements(self, request: web.Request) -> web.Response:
        self._application(request)
        q = ListQuery.parse(request.query)
        now = utcnow()
        chosen = [
            e for eid, e in sorted(self.entitlements.items())
            if q.matches(eid, e, now)
        ]
        page = chosen[-q.limit:] if q.before is not None else chosen[: q.limit]
        return self.emu.json([dict(e) for e in page])

    async def _get_entitlement(self, request: web.Request) -> web.Response:
        return self.emu.json(dict(self._entitlement(request)))

    async def _consume(self, request: web.Request) -> web.Response:
        self._application(request)
        raw = request.match_info["entitlement_id"]
        if raw.isdigit():
            self.consume_calls.append(int(raw))
        ent = self._entitlement(request)
        sku = self.skus.get(int(ent["sku_id"]))
        if sku is None or sku["type"] != SKU_CONSUMABLE:
            raise E.APIError(400, E.ONLY_CONSUMABLE_SKUS, "Only consumable SKUs can be consumed")
        if ent.get("consumed"):
            raise E.APIError(*ALREADY_CONSUMED)
        ent["consumed"] = True
        self.emu.signal.changed()
        return web.Response(status=204)

    async def _create_test_entitlement(self, request: web.Request) -> web.Response:
        self._application(request)
        body = require_dict(request[JSON_BODY])
        tree: dict[str, Any] = {}
        values: dict[str, int] = {}
        for key in ("sku_id", "owner_id", "owner_type"):
            try:
                values[key] = int(body[key])
            except KeyError:
                merge_errors(tree, field_error([key], "BASE_TYPE_REQUIRED", "This field is required"))
            except (TypeError, ValueError):
                merge_errors(tree, field_error([key], "NUMBER_TYPE_COERCE", f'Value "{body[key]}" is not snowflake.'))
        if not tree and values["owner_type"] not in (OWNER_GUILD, OWNER_USER):
            merge_errors(tree, field_error(["owner_type"], "BASE_TYPE_CHOICES", "Value must be one of {1, 2}."))
        if tree:
            raise E.invalid_form(tree)
        if values["sku_id"] not in self.skus:
            raise E.not_found(E.UNKNOWN_SKU, "SKU")
        guild = values["owner_type"] == OWNER_GUILD
        if guild and values["owner_id"] not in self.emu.world.guilds:
            raise E.not_found(E.UNKNOWN_GUILD, "Guild")
        if not guild and values["owner_id"] not in self.emu.world.users:
            raise E.not_found(E.UNKNOWN_USER, "User")
        ent = await self.grant(
            values["sku_id"], guild_id=values["owner_id"] if guild else None,
            user_id=None if guild else values["owner_id"], dispatch=False, type=ENT_TEST_MODE_PURCHASE,
        )
        ent.pop("starts_at", None)  # test entitlements are valid in perpetuity: no dates, no subscription
        ent.pop("ends_at", None)
        ent.pop("subscription_id", None)
        await self.emu.gateway.dispatch("ENTITLEMENT_CREATE", dict(ent))
        return self.emu.json(dict(ent))

    async def _delete_test_entitlement(self, request: web.Request) -> web.Response:
        ent = self._entitlement(request)
        if ent["type"] != ENT_TEST_MODE_PURCHASE:
            raise E.APIError(400, E.ONLY_SANDBOX_ENTITLEMENTS_DELETABLE, "You can only delete sandbox entitlements.")
        await self.end(int(ent["id"]), delete=True)
        return web.Response(status=204)


def _bool(value: str, name: str) -> bool:
    low = value.strip().lower()
    if low in ("1", "true"):
        return True
    if low in ("0", "false"):
        return False
    raise E.invalid_form(field_error([name], "BOOLEAN_TYPE_COERCE", f'Value "{value}" is not a valid boolean.'))


def _snowflake(value: str, name: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise E.invalid_form(field_error([name], "NUMBER_TYPE_COERCE", f'Value "{value}" is not snowflake.')) from None


@dataclass
class ListQuery:
    """The query string of List Entitlements, checked as Discord does (400 50035 naming the field)."""

    user_id: Optional[int] = None
    guild_id: Optional[int] = None
    sku_ids: Optional[set[int]] = None
    before: Optional[int] = None
    after: Optional[int] = None
    limit: int = LIST_LIMIT_MAX
    exclude_ended: bool = False
    exclude_deleted: bool = True

    @classmethod
    def parse(cls, query: Any) -> "ListQuery":
        q = cls()
        if "user_id" in query:
            q.user_id = _snowflake(query["user_id"], "user_id")
        if "guild_id" in query:
            q.guild_id = _snowflake(query["guild_id"], "guild_id")
        if query.get("sku_ids"):
            q.sku_ids = {_snowflake(s, "sku_ids") for s in str(query["sku_ids"]).split(",") if s.strip()}
        if "before" in query:
            q.before = _snowflake(query["before"], "before")
        if "after" in query:
            q.after = _snowflake(query["after"], "after")
        if "limit" in query:
            try:
                q.limit = int(query["limit"])
            except ValueError:
                raise E.invalid_form(field_error(["limit"], "NUMBER_TYPE_COERCE", f'Value "{query["limit"]}" is not int.')) from None
            if q.limit < 1:
                raise E.invalid_form(field_error(["limit"], "NUMBER_TYPE_MIN", "int value should be greater than or equal to 1."))
            if q.limit > LIST_LIMIT_MAX:
                raise E.invalid_form(field_error(["limit"], "NUMBER_TYPE_MAX", f"int value should be less than or equal to {LIST_LIMIT_MAX}."))
        if "exclude_ended" in query:
            q.exclude_ended = _bool(query["exclude_ended"], "exclude_ended")
        if "exclude_deleted" in query:
            q.exclude_deleted = _bool(query["exclude_deleted"], "exclude_deleted")
        return q

    def matches(self, eid: int, ent: dict[str, Any], now: datetime.datetime) -> bool:
        if self.before is not None and eid >= self.before:
            return False
        if self.after is not None and eid <= self.after:
            return False
        if self.user_id is not None and ent.get("user_id") != str(self.user_id):
            return False
        if self.guild_id is not None and ent.get("guild_id") != str(self.guild_id):
            return False
        if self.sku_ids is not None and int(ent["sku_id"]) not in self.sku_ids:
            return False
        if self.exclude_deleted and ent["deleted"]:
            return False
        return not (self.exclude_ended and _ended(ent, now))


# -- the premium button -------------------------------------------------------------------------


def iter_buttons(components: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[dict[str, Any], tuple[Any, ...]]]:
    """Every button (type 2) with its path: action rows, a section's accessory, a container's rows."""
    if not isinstance(components, list):
        return
    for i, item in enumerate(components):
        if not isinstance(item, dict):
            continue
        at = path + (i,)
        if item.get("type") == 2:
            yield item, at
        yield from iter_buttons(item.get("components"), at + ("components",))
        accessory = item.get("accessory")
        if isinstance(accessory, dict) and accessory.get("type") == 2:
            yield accessory, at + ("accessory",)


def premium_button_errors(
    components: Any, prefix: tuple[Any, ...] = (), known_skus: Optional[set[int]] = None
) -> dict[str, Any]:
    """Discord's rules for a premium button (style 6): ``sku_id`` required, and none of custom_id,
    label, emoji, url; its SKU one of the application's. Also: ``sku_id`` only on a premium button.
    400 50035 with the errors tree naming the field (the per-field codes are the emulator's: Discord
    documents the rule, not its error code)."""
    tree: dict[str, Any] = {}
    for button, at in iter_buttons(components, prefix + ("components",)):
        where = list(at)
        if button.get("style") != PREMIUM_STYLE:
            if button.get("sku_id") is not None:
                merge_errors(tree, field_error(where + ["sku_id"], "BASE_TYPE_INVALID", "Only premium buttons (style 6) can have a sku_id."))
            continue
        for key in PREMIUM_FORBIDDEN:
            if button.get(key) not in (None, ""):
                merge_errors(tree, field_error(where + [key], "BASE_TYPE_INVALID", f"Premium buttons cannot have a {key}."))
        sku = button.get("sku_id")
        if sku in (None, ""):
            merge_errors(tree, field_error(where + ["sku_id"], "BASE_TYPE_REQUIRED", "This field is required"))
        elif known_skus is not None:
            try:
                known = int(str(sku)) in known_skus
            except ValueError:
                known = True  # not a snowflake: the JSON schema names that error
            if not known:
                merge_errors(tree, field_error(where + ["sku_id"], "BASE_TYPE_INVALID", f"Unknown SKU {sku} for this application."))
    return tree
