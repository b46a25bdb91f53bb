"""``GuildGatewayService``: what ``/gateway set|show|remove|fallback`` do, without Discord.

A server's own gateway is saved only after it passed a check made here: the base URL is an http(s)
URL without credentials whose host resolves only to public addresses (unless ``[guild_gateways]
allow_private_addresses``), and a client built for it (never saved, never shared) answers its health
probe and its model list with the key — a refused key is refused with the gateway's own reason, an
unreachable gateway or one that does not answer as the chosen profile with what happened, and every
model given must exist there. Nothing is written when the check fails. After a change the directory
forgets the guild's client (``invalidate``) and the guild's commands follow its gateway's
capabilities (``refresh``, gw-media's ``bot.guild_commands``).

The key never leaves this module in a report: reports carry its last four characters at most, and a
gateway's reason is shown with the key masked should the gateway echo it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import logging
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from bot.gateways.directory import GatewayDirectory
from bot.gateways.store import GuildGatewayInfo, GuildGatewayStore
from bot.guilds.config import GuildConfig
from bot.rendering.errors import closest_models
from bot.rendering.user_facing import UserFacingError
from gateway_client import ClientOptions, GatewayClient, GatewayConfig, ModelKind, get_profile
from gateway_client.errors import AuthenticationError, GatewayError, GatewayTimeout, InvalidResponse, PermissionDenied
from gateway_client.profiles import PROFILES
from gateway_client.safe_urls import is_public_address

log = logging.getLogger(__name__)

__all__ = [
    "CheckReport", "GatewayRefused", "GatewayRequest", "GatewayShow", "GuildGatewayService", "OFFERS",
    "check_base_url",
]

#: what a gateway may offer, as the report names it -> the profile capabilities behind it
OFFERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("chat", ("chat",)),
    ("vision", ("vision",)),
    ("images", ("images",)),
    ("voice", ("speech", "transcriptions")),
    ("video", ("videos",)),
    ("music", ("music",)),
    ("embeddings", ("embeddings",)),
)
DEFAULT_CHECK_TIMEOUT = 15.0
MAX_URL = 300
MAX_KEY = 512
MAX_MODEL = 200


class GatewayRefused(UserFacingError):
    """The gateway (or what the admin typed) did not pass the check; nothing was saved."""

    code = "gateway_refused"


@dataclass(frozen=True, slots=True)
class GatewayRequest:
    """What the server manager typed in the modal (the key is never in ``repr``)."""

    profile: str
    base_url: str
    api_key: str = field(repr=False)
    chat_model: str = ""
    image_model: str = ""


@dataclass(frozen=True, slots=True)
class CheckReport:
    """What the check found (no key in it)."""

    profile: str
    base_url: str
    healthy: bool
    health_detail: str
    model_count: int
    chat_model: str
    vision_model: str
    image_model: str
    offers: tuple[str, ...]
    #: "12.50 INR" where the gateway has a balance endpoint, else None
    balance: str | None
    #: whether a request made with the key proved it (a gateway listing its models without a key and
    #: without a balance endpoint cannot tell)
    key_checked: bool
    #: this server's /config model settings the new gateway does not offer
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class GatewayShow:
    info: GuildGatewayInfo
    #: the live check of the stored key: True accepted, False refused or unreadable, None not provable
    key_ok: bool | None
    key_status: str


Resolver = Callable[[str, int], Awaitable[list[str]]]
ClientFactory = Callable[[GatewayConfig, ClientOptions], GatewayClient]


async def _resolve(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


async def check_base_url(url: str, *, allow_private: bool, resolve: Resolver = _resolve) -> str:
    """The base URL, cleaned (no trailing slash); raises ``GatewayRefused`` saying what is wrong with it:
    not http(s), credentials or a query in it, no host, a host that does not resolve, or (unless
    ``allow_private``) one that resolves to a loopback, private, link-local or otherwise non-public
    address — the bot would otherwise call into its own network for a server manager."""
    url = url.strip()
    if not url:
        raise GatewayRefused("Give the gateway's base URL, such as `https://gateway.example.com`.")
    if len(url) > MAX_URL:
        raise GatewayRefused(f"That base URL is longer than {MAX_URL} characters.")
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        raise GatewayRefused("That base URL is not a valid URL (check the host and port).") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise GatewayRefused("The base URL must start with `https://` (or `http://`).")
    if parts.username is not None or parts.password is not None:
        raise GatewayRefused("Put no user name or password in the base URL: the API key goes in its own field.")
    if parts.query or parts.fragment:
        raise GatewayRefused("The base URL takes no `?query` or `#fragment`: give the gateway's address only.")
    if not host:
        raise GatewayRefused("The base URL has no host name.")
    if not allow_private:
        try:
            literal: str | None = str(ipaddress.ip_address(host.split("%", 1)[0]))
        except ValueError:
            literal = None
        if literal is not None:
            addresses = [literal]
        else:
            try:
                addresses = await resolve(host, port or (443 if parts.scheme.lower() == "https" else 80))
            except (OSError, UnicodeError):
                raise GatewayRefused(f"The host `{host}` could not be found (DNS lookup failed).") from None
        bad = [a for a in addresses if not is_public_address(a)]
        if bad or not addresses:
            raise GatewayRefused(
                f"The host `{host}` is not on the public internet ({', '.join(bad[:2]) or 'no address'}): "
                "a server's gateway must be reachable at a public address.")
    return url.rstrip("/")


def _mask(text: str, key: str) -> str:
    """``text`` with the key (and its long prefixes/suffixes, as gateways quote them) hidden."""
    if key and len(key) >= 6:
        text = text.replace(key, "…" + key[-4:])
        for part in (key[:12], key[-12:]):
            if len(part) >= 8:
                text = text.replace(part, "…")
    return text


def _reason(err: BaseException, key: str) -> str:
    message = getattr(err, "message", None) or str(err) or type(err).__name__
    return _mask(str(message), key).strip().rstrip(".")[:300]


def offers_of(profile_name: str) -> tuple[str, ...]:
    profile = get_profile(profile_name)
    return tuple(name for name, caps in OFFERS if any(profile.supports(c) for c in caps))


class GuildGatewayService:
    """Checks, saves, shows and removes a guild's own gateway (``bot.guild_gateway_admin``)."""

    def __init__(
        self,
        store: GuildGatewayStore,
        directory: GatewayDirectory,
        guild_config: GuildConfig,
        *,
        allow_private_addresses: bool = False,
        check_timeout: float = DEFAULT_CHECK_TIMEOUT,
        refresh: Callable[[int], Awaitable[object]] | None = None,
        resolve: Resolver = _resolve,
        client_factory: ClientFactory | None = None,
        mask: Callable[[str], None] | None = None,
    ) -> None:
        """``mask`` is given every key typed in, before anything is sent (the log's secret filter: a key
        that fails the check is still someone's secret)."""
        self._store = store
        self.directory = directory
        self.guild_config = guild_config
        self.allow_private_addresses = allow_private_addresses
        self.check_timeout = check_timeout
        self._refresh = refresh
        self._resolve = resolve
        self._client_factory = client_factory or (lambda config, options: GatewayClient(config, options=options))
        self._mask = mask

    # ------------------------------------------------------------------ state

    @property
    def secrets_configured(self) -> bool:
        """Whether keys can be stored (``[secrets] key`` is set)."""
        return self._store.configured

    @property
    def operator_profile(self) -> str:
        return self.directory.operator.profile.name

    def store(self) -> GuildGatewayStore:
        """The store, once keys can be stored; else ``GatewayRefused`` saying how to enable it."""
        if not self._store.configured:
            raise GatewayRefused(SECRETS_MISSING)
        return self._store

    async def info(self, guild_id: int) -> GuildGatewayInfo | None:
        """The guild's stored gateway (no key), or None."""
        return await self.store().info(guild_id)

    # ------------------------------------------------------------------ the check

    def _options(self) -> ClientOptions:
        t = self.check_timeout
        return ClientOptions(connect_timeout=min(10.0, t), total_timeout=t, max_retries=0, models_cache_ttl=0.0)

    async def check(self, guild_id: int, request: GatewayRequest) -> CheckReport:
        """Check ``request`` against the gateway (see the module docstring); raises ``GatewayRefused``."""
        profile_name = request.profile.strip().lower()
        if profile_name not in PROFILES:
            raise GatewayRefused(f"Unknown gateway profile `{request.profile[:40]}`: pick one of "
                                 f"{', '.join(sorted(PROFILES))}.")
        key = request.api_key.strip()
        if not key:
            raise GatewayRefused("Give the gateway's API key.")
        if self._mask is not None:
            self._mask(key)
        if len(key) > MAX_KEY or any(c.isspace() for c in key):
            raise GatewayRefused("That API key cannot be right: it has spaces in it or is very long.")
        chat_model, image_model = request.chat_model.strip(), request.image_model.strip()
        for model in (chat_model, image_model):
            if len(model) > MAX_MODEL:
                raise GatewayRefused(f"A model name is longer than {MAX_MODEL} characters.")
        base_url = await check_base_url(request.base_url, allow_private=self.allow_private_addresses,
                                        resolve=self._resolve)
        config = GatewayConfig(profile=profile_name, base_url=base_url, api_key=key, chat_model=chat_model,
                               image_model=image_model, name=f"guild:{profile_name}",
                               public_only=not self.allow_private_addresses)  # and again at every connection
        # the probing client has no models of its own: its lists are then only what the gateway lists
        client = self._client_factory(dataclasses.replace(config, chat_model="", image_model=""), self._options())
        try:
            await client.start()
            async with asyncio.timeout(self.check_timeout * 3):  # health, models, balance: one bound in all
                report = await self._probe(client, config, key)
        except TimeoutError:
            raise GatewayRefused(f"The gateway at {base_url} did not answer within "
                                 f"{self.check_timeout:g} s. Nothing was saved.") from None
        finally:
            await client.close()
        warnings = await self._config_warnings(guild_id, client_models=report[1])
        return _with_warnings(report[0], warnings)

    async def _probe(self, client: GatewayClient, config: GatewayConfig,
                     key: str) -> tuple[CheckReport, dict[str, set[str]]]:
        profile = client.profile
        where = f"The gateway at {config.base_url}"
        health = await client.health()
        if not health.ok:
            error = str(health.detail.get("error") or "")
            message = _mask(str(health.detail.get("message") or ""), key).strip().rstrip(".")[:300]
            if error in ("AuthenticationError", "PermissionDenied") or health.meta.status in (401, 403):
                raise GatewayRefused(f"The gateway refused this key: {message or 'unauthorized'}. Nothing was saved.")
            what = message or error or f"its health probe {health.probe} did not say it is up"
            raise GatewayRefused(f"{where} did not answer as a {profile.name} gateway: {what}. Nothing was saved.")
        try:
            models = await client.list_models()
            vision = await client.vision_models() if profile.supports("vision") else []
            images = await client.image_models() if profile.supports("images") else []
            balance: str | None = None
            key_checked = any(src.auth for src in profile.model_sources) or profile.health.auth
            if profile.supports("credits"):
                credits = await client.credits()
                key_checked = True
                if credits.amount is not None:
                    balance = f"{credits.amount:g} {credits.currency or ''}".strip()
        except (AuthenticationError, PermissionDenied) as err:
            raise GatewayRefused(f"The gateway refused this key: {_reason(err, key)}. Nothing was saved.") from None
        except InvalidResponse as err:
            raise GatewayRefused(f"{where} did not answer as a {profile.name} gateway: {_reason(err, key)}. "
                                 "Pick the profile that gateway speaks. Nothing was saved.") from None
        except GatewayTimeout:
            raise GatewayRefused(f"{where} did not answer within {self.check_timeout:g} s. Nothing was saved.") \
                from None
        except GatewayError as err:
            raise GatewayRefused(f"{where} failed the check: {_reason(err, key)}. Nothing was saved.") from None
        all_ids = {m.id for m in models}
        chat_ids = {m.id for m in models if m.kind in (ModelKind.CHAT, ModelKind.VISION)} or all_ids
        vision_ids = [m.id for m in vision]
        image_ids = {m.id for m in images}
        chat_model = config.chat_model
        if chat_model and chat_model not in chat_ids:
            raise GatewayRefused(_not_found("chat model", chat_model, chat_ids))
        if not chat_model and profile.model_required and not profile.default_chat_model:
            sample = ", ".join(f"`{m}`" for m in sorted(chat_ids)[:3]) or "one of its models"
            raise GatewayRefused(f"This {profile.name} gateway has no default chat model: give one in "
                                 f"**Chat model** (for example {sample}). Nothing was saved.")
        image_model = config.image_model
        if image_model:
            if not profile.supports("images"):
                raise GatewayRefused(f"A {profile.name} gateway does not make images: leave **Image model** "
                                     "empty. Nothing was saved.")
            if image_model not in image_ids:
                raise GatewayRefused(_not_found("image model", image_model, image_ids or all_ids))
        chat_default = chat_model or profile.default_chat_model
        # the vision model is picked, not asked: the chat model when it reads images, else the first the
        # gateway lists as reading images, else the chat model (the gateway decides)
        if chat_default and chat_default in vision_ids:
            vision_model = chat_default
        elif vision_ids:
            vision_model = vision_ids[0]
        else:
            vision_model = ""
        rules = profile.images
        image_default = image_model or (rules.default_model if rules else "")
        detail = "up" + ("" if health.ready is None else (", ready" if health.ready else ", not ready"))
        report = CheckReport(
            profile=profile.name, base_url=config.base_url, healthy=True, health_detail=detail,
            model_count=len(all_ids), chat_model=chat_default, vision_model=vision_model,
            image_model=image_default if profile.supports("images") else "", offers=offers_of(profile.name),
            balance=balance, key_checked=key_checked,
        )
        return report, {"chat": chat_ids | all_ids, "vision": set(vision_ids), "image": image_ids}

    async def _config_warnings(self, guild_id: int, client_models: dict[str, set[str]]) -> tuple[str, ...]:
        """This server's /config model settings (server-wide or per channel) the new gateway lacks."""
        try:
            layers = await self.guild_config.overrides(guild_id)
        except Exception:
            log.warning("guild %s: its /config settings could not be read for the gateway check", guild_id)
            return ()
        out: list[str] = []
        for channel_id, values in sorted(layers.items()):
            for kind in ("chat", "vision", "image"):
                model = values.get(f"{kind}_model")
                if not model or not isinstance(model, str):
                    continue
                if model not in client_models[kind]:
                    where = "server-wide" if channel_id == 0 else f"in <#{channel_id}>"
                    out.append(f"/config {kind} model `{model}` ({where}) is not offered by this gateway")
        return tuple(out)

    # ------------------------------------------------------------------ changes

    async def save(self, guild_id: int, request: GatewayRequest, actor_id: int,
                   *, allow_operator_fallback: bool | None = None) -> tuple[CheckReport, GuildGatewayInfo]:
        """Check, then (only when the check passed) store the gateway; returns (report, info)."""
        store = self.store()
        report = await self.check(guild_id, request)
        if allow_operator_fallback is None:
            previous = await store.info(guild_id)
            allow_operator_fallback = previous.allow_operator_fallback if previous is not None else False
        info = await store.put(
            guild_id, profile=report.profile, base_url=report.base_url, api_key=request.api_key.strip(),
            chat_model=request.chat_model.strip(), vision_model=report.vision_model,
            image_model=request.image_model.strip(), allow_operator_fallback=allow_operator_fallback,
            actor_id=actor_id,
        )
        await self._changed(guild_id)
        return report, info

    async def remove(self, guild_id: int, actor_id: int) -> bool:
        """Back to the operator's gateway; False when the guild had none of its own."""
        removed = await self.store().remove(guild_id, actor_id)
        if removed:
            await self._changed(guild_id)
        return removed

    async def set_fallback(self, guild_id: int, allowed: bool, actor_id: int) -> GuildGatewayInfo | None:
        """Whether the operator's gateway may serve when the guild's own is down; None: no own gateway."""
        info = await self.store().set_fallback(guild_id, allowed, actor_id)
        if info is not None:
            self.directory.invalidate(guild_id)
        return info

    async def _changed(self, guild_id: int) -> None:
        self.directory.invalidate(guild_id)
        if self._refresh is None:
            return
        try:
            await self._refresh(guild_id)
        except Exception:
            # the gateway is saved; only the command list lags (it is refreshed at the next start)
            log.exception("guild %s: its commands could not be refreshed after a gateway change", guild_id)

    # ------------------------------------------------------------------ show

    async def show(self, guild_id: int) -> GatewayShow | None:
        """The stored gateway and a live check of its key; None when the guild has none."""
        store = self.store()
        info = await store.info(guild_id)
        if info is None:
            return None
        try:
            row = await store.load(guild_id)
        except AuthenticationError as err:  # GuildGatewayUnavailable: the key cannot be decrypted any more
            return GatewayShow(info, False, f"refused: {getattr(err, 'message', None) or err}")
        if row is None:
            return None
        key = row.config.api_key
        config = dataclasses.replace(row.config, public_only=not self.allow_private_addresses)
        client = self._client_factory(config, self._options())
        try:
            await client.start()
            async with asyncio.timeout(self.check_timeout * 2):
                ok, status = await self._live_key_check(client, key)
        except TimeoutError:
            ok, status = None, f"not checked: the gateway did not answer within {self.check_timeout:g} s"
        finally:
            await client.close()
        return GatewayShow(info, ok, status)

    async def _live_key_check(self, client: GatewayClient, key: str) -> tuple[bool | None, str]:
        profile = client.profile
        try:
            if profile.supports("credits"):
                await client.credits()
            elif any(src.auth for src in profile.model_sources):
                await client.list_models()
            else:
                health = await client.health()
                return (None, "not provable (the gateway lists its models without a key); it answers"
                        if health.ok else f"not checked: the gateway is down ({health.detail.get('error')})")
        except (AuthenticationError, PermissionDenied) as err:
            return False, f"refused: {_reason(err, key)}"
        except GatewayError as err:
            return None, f"not checked: {_reason(err, key)}"
        return True, "accepted"


SECRETS_MISSING = (
    "This bot cannot store server gateway keys yet: its operator has not set an encryption key. Whoever runs "
    "the bot can enable it: run `gatecord secrets new-key`, set the printed key as `GATECORD_SECRETS__KEY` "
    "(or `[secrets] key`), and restart the bot — see the README section \"Per-server gateways\"."
)


def _not_found(what: str, model: str, available: Sequence[str] | set[str]) -> str:
    close = closest_models(model, sorted(available))
    hint = f" Closest: {', '.join(f'`{m}`' for m in close)}." if close else ""
    return f"The gateway has no {what} `{model[:100]}`.{hint} Nothing was saved."


def _with_warnings(report: CheckReport, warnings: tuple[str, ...]) -> CheckReport:
    return dataclasses.replace(report, warnings=warnings)
