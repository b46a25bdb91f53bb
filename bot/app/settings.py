"""Typed settings: a TOML file plus ``GATECORD_*`` environment variables (``__`` nests).

Priority, highest first: environment, TOML file, defaults. Secrets (the bot token, gateway keys)
are ``SecretStr`` so they never show in a repr, a log line or a validation error.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict
from pydantic_settings.exceptions import SettingsError

from bot.gateways.secrets import InvalidSecretsKey, parse_keys

PROFILES = ("aicordcloud", "digicord", "aicredits", "aiproxy", "openai")
ProfileName = Literal["aicordcloud", "digicord", "aicredits", "aiproxy", "openai"]
DEFAULT_CONFIG_PATH = Path("config.toml")
SECRET_KEYS = frozenset({"discord.token", "gateway.api_key", "secrets.key"})
SECRET_CONTAINERS = frozenset({"gateway.fallbacks"})  # a whole value that holds secrets is never echoed either
#: a key named like this (``token``, ``api_key``, ``relay_key``, ``db_password``…) holds a secret, at any depth
SECRET_NAME = re.compile(r"(?:^|_)(?:token|api_key|apikey|key|secret|password)$", re.IGNORECASE)
MASK = "***"


def _list_from_text(value: Any) -> Any:
    """A list setting given as text (the environment): ``a,b`` or a JSON list; anything else is refused.

    Lists from the TOML file arrive as lists and pass through untouched.
    """
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.startswith("["):
        try:
            decoded = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"is not a valid JSON list ({exc.msg} at character {exc.pos + 1}); "
                             "write a comma-separated list or a JSON list") from None
        if not isinstance(decoded, list):  # pragma: no cover - text starting with [ decodes to a list or fails
            raise ValueError("must be a comma-separated list or a JSON list")
        return decoded
    if text.startswith("{"):
        raise ValueError("must be a comma-separated list or a JSON list, not a JSON object")
    return [part.strip() for part in text.split(",") if part.strip()]


def _json_list_from_text(value: Any) -> Any:
    """A list of tables given as text (the environment): a JSON list of objects."""
    if not isinstance(value, str):
        return value
    try:
        decoded = json.loads(value)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"is not valid JSON ({exc.msg} at character {exc.pos + 1}); "
            'write a JSON list of objects such as [{"profile": "openai", "base_url": "https://…"}]'
        ) from None
    if not isinstance(decoded, list):
        raise ValueError('must be a JSON list of objects such as [{"profile": "openai", "base_url": "https://…"}]')
    return decoded


def _url(*schemes: str) -> AfterValidator:
    """A URL that must start with one of ``schemes``; a bare host gets a "did you mean" hint."""

    def check(value: str) -> str:
        text = value.strip()
        if "://" not in text:
            hint = f"; did you mean {schemes[0]}://{text}?" if text else ""
            raise ValueError(f"must be a URL starting with {' or '.join(s + '://' for s in schemes)}{hint}")
        parts = urlsplit(text)
        if parts.scheme.lower() not in schemes:
            raise ValueError(f"must start with {' or '.join(s + '://' for s in schemes)} (not {parts.scheme}://)")
        if not parts.netloc:
            raise ValueError("has no host after the scheme")
        return text

    return AfterValidator(check)


StrList = Annotated[list[str], NoDecode, BeforeValidator(_list_from_text)]
IntList = Annotated[list[int], NoDecode, BeforeValidator(_list_from_text)]
OptionalIntList = Annotated[list[int] | None, NoDecode, BeforeValidator(_list_from_text)]
HttpUrl = Annotated[str, _url("https", "http")]
WsUrl = Annotated[str, _url("wss", "ws")]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DiscordSettings(_Section):
    token: SecretStr = SecretStr("")
    api_base_url: HttpUrl = "https://discord.com/api/v10"
    gateway_url: WsUrl = "wss://gateway.discord.gg/"
    cdn_base_url: HttpUrl = "https://cdn.discordapp.com"
    cdn_hosts: StrList = Field(default_factory=lambda: ["cdn.discordapp.com", "media.discordapp.net"])
    command_guilds: IntList = Field(default_factory=list)
    guild_ready_timeout: float = Field(2.0, gt=0, le=60)
    #: seconds between two IDENTIFYs of one max_concurrency bucket, across every process (Discord: 5)
    identify_interval_seconds: float = Field(5.0, gt=0, le=60)
    #: connections discord.py's HTTP session keeps to Discord (a bounded, reused pool: see bench/chat_load.py)
    http_connections: int = Field(32, ge=1, le=1000)
    #: `gatecord run`: how many more times to try a Discord that can't be reached at start-up, before giving up
    connect_retries: int = Field(5, ge=0, le=100)
    #: the first wait between those tries (seconds); it doubles each time, up to a minute
    connect_backoff_seconds: float = Field(2.0, ge=0, le=300)
    #: shards across every `gatecord run` process; unset: Discord's recommended count, all in this process
    shard_count: int | None = Field(None, ge=1)
    #: the shards this process connects (each in 0..shard_count-1); unset or empty: all of them
    shard_ids: OptionalIntList = None

    @field_validator("shard_ids")
    @classmethod
    def _shard_ids_within_count(cls, value: list[int] | None, info: ValidationInfo) -> list[int] | None:
        if not value:
            return None  # empty (``GATECORD_DISCORD__SHARD_IDS=``) is the same as unset: every shard
        if "shard_count" not in info.data:
            return value  # shard_count itself was invalid: that is the error to report
        count = info.data["shard_count"]
        if count is None:
            raise ValueError(
                "needs discord.shard_count too: set it to the number of shards across all processes "
                "(GATECORD_DISCORD__SHARD_COUNT)"
            )
        outside = [i for i in value if not 0 <= i < count]
        if outside:
            raise ValueError(f"must each be from 0 to {count - 1} (shard_count is {count}): {outside[0]} is not")
        repeated = sorted({i for i in value if value.count(i) > 1})
        if repeated:
            raise ValueError(f"names shard {repeated[0]} more than once")
        return value


class FallbackGateway(_Section):
    """Another gateway tried when the primary one fails (its own profile, key and models)."""

    profile: ProfileName
    base_url: HttpUrl
    api_key: SecretStr = SecretStr("")
    chat_model: str = ""
    vision_model: str = ""
    image_model: str = ""


class GatewaySettings(_Section):
    profile: ProfileName = "aicordcloud"
    base_url: HttpUrl = "https://api.aicord.cloud"
    api_key: SecretStr = SecretStr("")
    chat_model: str = "aicord/fast"
    vision_model: str = ""
    image_model: str = ""
    #: default /video and /music models ("" = the gateway profile's default)
    video_model: str = ""
    music_model: str = ""
    #: text-to-speech and transcription models, and the voice ("" = the gateway profile's default)
    speech_model: str = ""
    transcription_model: str = ""
    voice: str = ""
    #: the knowledge base's embedding model ("" = the gateway profile's default, where it has one)
    embedding_model: str = ""
    fallback_models: StrList = Field(default_factory=list)
    fallbacks: Annotated[list[FallbackGateway], NoDecode, BeforeValidator(_json_list_from_text)] = Field(
        default_factory=list
    )
    connect_timeout: float = Field(10.0, gt=0)
    total_timeout: float = Field(120.0, gt=0)
    stream_idle_timeout: float = Field(60.0, gt=0)
    max_retries: int = Field(2, ge=0, le=10)
    max_download_bytes: int = Field(20 * 1024 * 1024, gt=0)


class StorageSettings(_Section):
    """``url`` (postgresql://user:password@host/db) selects PostgreSQL; without it, the SQLite file ``path``."""

    path: str = "data/gatecord.db"
    url: SecretStr | None = None
    pool_size: int = Field(10, ge=1, le=200)  # PostgreSQL connections this process keeps
    #: where /imagine keeps image bytes: a directory every process can read (shared volume); unset: in the
    #: database with PostgreSQL, or ``images/`` next to the SQLite file (bot/media/jobs.py ``media_location``)
    media_dir: str | None = None

    @field_validator("media_dir", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("url", mode="before")
    @classmethod
    def _postgres_url(cls, value: object) -> object:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        text = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
        scheme = text.split("://", 1)[0].lower() if "://" in text else ""
        if scheme not in ("postgresql", "postgres", "postgresql+asyncpg"):
            raise ValueError("must be a postgresql:// URL (postgresql://user:password@host:5432/dbname); "
                             "leave it out to use the SQLite file storage.path")
        if scheme == "postgres":
            text = "postgresql://" + text.split("://", 1)[1]
        return SecretStr(text)


class SecretsSettings(_Section):
    """``key``: the Fernet key(s) that encrypt what the bot stores of others' secrets (a server's own gateway
    key). One key, or several separated by commas when rotating: the first encrypts, all decrypt."""

    key: SecretStr = SecretStr("")

    @field_validator("key")
    @classmethod
    def _fernet_keys(cls, value: SecretStr) -> SecretStr:
        text = value.get_secret_value()
        if text.strip():
            try:
                parse_keys(text)
            except InvalidSecretsKey as exc:
                raise ValueError(str(exc)) from None  # the reason only: never the value
        return value


class GuildGatewaySettings(_Section):
    """Servers that bring their own AI gateway (``/gateway set``)."""

    enabled: bool = True
    #: a server's base URL may resolve to private / loopback addresses (the sandbox's and the tests'
    #: emulators are on 127.0.0.1); off, only public addresses are accepted
    allow_private_addresses: bool = False
    #: seconds the check of a new gateway (health, model list) may take at ``/gateway set``
    check_timeout: float = Field(15.0, gt=0, le=120)


class HttpSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    #: the address outside systems reach the web server at (behind a proxy, a public host name); shown in the
    #: relay key's reply. Unset: the listening address when it is a specific one (not 0.0.0.0 / ::)
    public_url: HttpUrl | None = None

    @field_validator("public_url", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value
    max_body_bytes: int = Field(1024 * 1024, gt=0)
    # against slow and idle clients (bot/app/web_guard.py)
    header_timeout: float = Field(10.0, gt=0)  # a request head must arrive whole within this (from its first byte)
    body_timeout: float = Field(30.0, gt=0)  # longest silence while a request body is unfinished → 408
    keepalive_timeout: float = Field(15.0, gt=0)  # an idle keep-alive connection is closed after this
    max_connections: int = Field(512, ge=1)  # more get 503; also kept to half the open-file limit
    max_requests_per_connection: int = Field(1000, ge=1)  # then the answer says Connection: close


class ChatSettings(_Section):
    system_prompt: str = "You are Gatecord, a helpful assistant in the Discord server {server}. Today is {date}."
    temperature: float = Field(0.7, ge=0, le=2)
    max_tokens: int = Field(1024, gt=0)
    edit_interval: float = Field(1.0, ge=1.0)
    max_concurrency: int = Field(8, gt=0)
    max_queue: int = Field(32, ge=0)
    history_messages: int = Field(25, gt=0)
    history_tokens: int = Field(6000, gt=0)
    attachment_max_bytes: int = Field(100_000, gt=0)
    attach_as_file_over: int = Field(12_000, gt=0)
    attach_reasoning: bool = False
    #: tokens per model (prompt + answer), for a model whose gateway lists no window or the wrong one; a
    #: window the gateway states in a context-length error wins (bot/chat/context.py)
    context_windows: dict[str, Annotated[int, Field(gt=0)]] = Field(default_factory=dict)


class VisionSettings(_Section):
    max_download_bytes: int = Field(10 * 1024 * 1024, gt=0)
    max_pixels: int = Field(40_000_000, gt=0)
    longest_side: int = Field(1024, gt=0)
    max_images: int = Field(4, gt=0)
    max_concurrent_decodes: int = Field(2, gt=0)  # images decoded at once, bot-wide (each costs memory)
    send_as: Literal["data_url", "url"] = "data_url"  # "url": the gateway fetches the Discord CDN URL itself


class ImagineSettings(_Section):
    default_count: int = Field(4, ge=1, le=4)
    default_steps: int = Field(4, ge=1)
    max_concurrent_per_user: int = Field(2, gt=0)
    progress_interval: float = Field(2.0, ge=1.0)
    max_concurrency: int = Field(2, gt=0)  # generations in flight at once (bot-wide); others wait in a queue


class MediaSettings(_Section):
    """Long-running media jobs (video, music): their own queue and per-member limit, video polling and
    downloads, and the durations members may ask for."""

    max_concurrency: int = Field(4, gt=0)  # video and music jobs in flight at once (a video holds its slot)
    max_concurrent_per_user: int = Field(2, gt=0)  # video + music jobs one member may have waiting or running
    poll_interval_seconds: float = Field(2.0, gt=0)  # first wait between two video status polls
    poll_max_interval_seconds: float = Field(15.0, gt=0)  # the wait grows ×1.5 up to this
    video_timeout_seconds: float = Field(3600.0, gt=0)  # a video not finished by then fails (its hold lives as long)
    max_download_bytes: int = Field(256 * 1024 * 1024, gt=0)  # cap for downloading a result by its URL
    default_video_seconds: int = Field(5, gt=0)
    default_music_seconds: int = Field(30, gt=0)
    max_music_seconds: int = Field(180, gt=0)


class VoiceSettings(_Section):
    """Voice messages: what is transcribed (limits checked before anything is downloaded, sent or charged)
    and the audio format asked of the gateway when speaking (whatever it returns becomes Ogg/Opus)."""

    max_duration_seconds: float = Field(600.0, gt=0, le=24 * 3600)
    max_bytes: int = Field(25 * 1024 * 1024, gt=0)
    speech_format: Literal["opus", "mp3", "aac", "flac", "wav", "pcm"] = "opus"


class UserQuotaDefaults(_Section):
    """``[quotas.user]``: a member's own daily budget, per UTC day (-1 unlimited), for what is not any
    server's to pay: DMs with the bot, and servers where only the member installed Gatecord (a user
    install). The bot's owner changes it per user (``gatecord quota user``, ``/owner quota-user``)."""

    chat_requests: int = -1
    tokens: int = -1
    vision_requests: int = -1
    images: int = -1
    credits: float = -1
    speech_chars: int = -1
    transcription_seconds: int = -1
    video_seconds: int = -1
    music_seconds: int = -1
    embedding_tokens: int = -1


class KnowledgeSettings(_Section):
    """The server knowledge base: how documents are cut into chunks, what is accepted, how search ranks."""

    chunk_chars: int = Field(1200, ge=200, le=8000)  # the longest chunk (characters) embedded and stored
    overlap_chars: int = Field(150, ge=0, le=2000)  # the end of a chunk repeated at the start of the next
    max_file_bytes: int = Field(5 * 1024 * 1024, gt=0)  # the largest file /knowledge add downloads
    max_document_chunks: int = Field(1000, ge=1, le=20_000)  # a longer document is refused (embedding costs)
    search_limit: int = Field(5, ge=1, le=25)  # hits /knowledge search (and search_knowledge) return
    min_score: float = Field(0.25, ge=-1, le=1)  # a hit below this cosine similarity is not shown
    answer_min_score: float = Field(0.5, ge=-1, le=1)  # auto-answer in help channels needs a hit this close

    @field_validator("overlap_chars")
    @classmethod
    def _overlap_within_chunk(cls, value: int, info: ValidationInfo) -> int:
        size = info.data.get("chunk_chars")
        if size is not None and value * 2 >= size:
            raise ValueError(f"must be less than half of chunk_chars ({size}), or chunks would repeat each other")
        return value


class QuotaDefaults(_Section):
    """Per UTC day. -1 means unlimited."""

    guild_chat_requests: int = -1
    guild_tokens: int = -1
    guild_vision_requests: int = -1
    guild_images: int = -1
    guild_credits: float = -1
    guild_speech_chars: int = -1
    guild_transcription_seconds: int = -1
    guild_video_seconds: int = -1
    guild_music_seconds: int = -1
    guild_embedding_tokens: int = -1
    member_chat_requests: int = -1
    member_tokens: int = -1
    member_vision_requests: int = -1
    member_images: int = -1
    member_credits: float = -1
    member_speech_chars: int = -1
    member_transcription_seconds: int = -1
    member_video_seconds: int = -1
    member_music_seconds: int = -1
    member_embedding_tokens: int = -1
    reservation_ttl_seconds: int = Field(900, gt=0)
    user: UserQuotaDefaults = Field(default_factory=UserQuotaDefaults)


#: the budget kinds a ``[premium]`` limit may name (as in ``[quotas]``)
PREMIUM_KINDS = (
    "chat_requests", "tokens", "vision_requests", "images", "credits", "speech_chars", "transcription_seconds",
    "video_seconds", "music_seconds", "embedding_tokens",
)
PREMIUM_SCOPES = ("guild", "member", "user")


def _check_premium_limits(limits: dict[str, float], entry: str, scopes: tuple[str, ...]) -> None:
    """Every key is ``<scope>_<kind>`` with a valid value (-1 unlimited); errors name ``entry``."""
    for key, value in limits.items():
        scope, _, kind = key.partition("_")
        if scope not in PREMIUM_SCOPES or kind not in PREMIUM_KINDS:
            raise ValueError(f"{entry}: unknown limit `{key}` (use [quotas] names such as guild_tokens, "
                             "member_images, user_credits)")
        if scope not in scopes:
            raise ValueError(f"{entry}: `{key}` cannot apply here (only {', '.join(s + '_…' for s in scopes)})")
        if value != -1 and not value >= 0:
            raise ValueError(f"{entry}: `{key}` must be 0 or more, or -1 for unlimited (got {value!r})")
        if kind != "credits" and value != int(value):
            raise ValueError(f"{entry}: `{key}` must be a whole number (got {value!r})")


class PremiumTier(_Section):
    """One ``[[premium.tiers]]`` entry: a subscription SKU and the limits its subscribers get."""

    sku_id: int = Field(gt=0)
    name: str = Field(min_length=1, max_length=40)
    scope: Literal["guild", "user"] = "guild"
    limits: dict[str, float] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _limits(self) -> PremiumTier:
        scopes = ("guild", "member") if self.scope == "guild" else ("member", "user")
        _check_premium_limits(self.limits, f"tier {self.name!r} (sku {self.sku_id})", scopes)
        return self


class PremiumConsumable(_Section):
    """One ``[[premium.consumables]]`` entry: a one-time purchase adding ``amount`` to a guild's budget."""

    sku_id: int = Field(gt=0)
    name: str = Field(min_length=1, max_length=40)
    kind: str = "credits"
    amount: float = Field(gt=0)

    @model_validator(mode="after")
    def _kind(self) -> PremiumConsumable:
        entry = f"consumable {self.name!r} (sku {self.sku_id})"
        if self.kind not in PREMIUM_KINDS:
            raise ValueError(f"{entry}: unknown kind `{self.kind}` (one of {', '.join(PREMIUM_KINDS)})")
        if self.kind != "credits" and self.amount != int(self.amount):
            raise ValueError(f"{entry}: amount must be a whole number of {self.kind}")
        return self


class PremiumSettings(_Section):
    """``[premium]``: Discord SKUs mapped to budget tiers. Unset (no tiers, no free limits, no
    consumables), nothing changes: the admins' own limits alone apply."""

    tiers: list[PremiumTier] = Field(default_factory=list)
    free: dict[str, float] = Field(default_factory=dict)
    consumables: list[PremiumConsumable] = Field(default_factory=list)
    upgrade_sku_id: int | None = Field(None, gt=0)
    reconcile_hours: float = Field(24, gt=0)

    @field_validator("free")
    @classmethod
    def _free(cls, value: dict[str, float]) -> dict[str, float]:
        _check_premium_limits(value, "the free tier", PREMIUM_SCOPES)
        return value

    @model_validator(mode="after")
    def _unique_skus(self) -> PremiumSettings:
        seen: dict[int, str] = {}
        for what, sku_id, name in ([("tier", t.sku_id, t.name) for t in self.tiers]
                                   + [("consumable", c.sku_id, c.name) for c in self.consumables]):
            if sku_id in seen:
                raise ValueError(f"{what} {name!r}: sku {sku_id} is already {seen[sku_id]}")
            seen[sku_id] = f"{what} {name!r}"
        return self

    @property
    def configured(self) -> bool:
        """Whether any tier applies at all (else the budgets are exactly the admins' own)."""
        return bool(self.tiers or self.free or self.consumables)


class RelaySettings(_Section):
    rate_per_minute: int = Field(120, gt=0)
    burst: int = Field(30, gt=0)
    wait_timeout: float = Field(15.0, gt=0)
    max_attempts: int = Field(8, gt=0)
    workers: int = Field(50, gt=0)  # channels delivered to at once (each channel: one post at a time, in order)
    max_requests_per_second: float = Field(45.0, gt=0, le=50)  # relay's share of Discord's 50/s global limit
    request_timeout: float = Field(30.0, gt=0)
    retry_base_delay: float = Field(1.0, gt=0)
    retry_max_delay: float = Field(300.0, gt=0)
    retention_days: float = Field(7.0, gt=0)  # delivered/failed posts older than this are deleted (queued never)
    idempotency_hours: float = Field(24.0, gt=0)  # an Idempotency-Key is honoured this long; then it makes a new post
    max_keys_per_guild: int = Field(25, gt=0)  # active (unrevoked, unexpired) relay keys a server may hold
    # seconds between looks at the outbox for posts accepted by other processes (the web tier) and retries due;
    # posts accepted by this process are picked up at once
    poll_interval: float = Field(0.5, gt=0, le=60)
    # a post being sent whose process stopped renewing its claim this long ago is retried by another process,
    # with the same nonce (Discord de-duplicates by nonce for a few minutes: keep it well below that)
    claim_timeout: float = Field(30.0, ge=1, le=120)

    @field_validator("idempotency_hours")
    @classmethod
    def _idempotency_within_retention(cls, value: float, info: Any) -> float:
        days = info.data.get("retention_days")
        if days is not None and value > days * 24:
            raise ValueError(
                f"must be at most retention_days × 24 ({days * 24:g}): the post a key points to is deleted then"
            )
        return value


class ShutdownSettings(_Section):
    """SIGTERM/SIGINT: new work is refused, work in progress gets up to ``drain_seconds`` to finish."""

    drain_seconds: float = Field(20.0, ge=0)


class LoggingSettings(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    #: the storage layer's statement log at DEBUG (statements only: their parameters hold prompts and tokens)
    sql_debug: bool = False


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="GATECORD_", env_nested_delimiter="__", extra="forbid", case_sensitive=False
    )

    discord: DiscordSettings = Field(default_factory=DiscordSettings)
    gateway: GatewaySettings = Field(default_factory=GatewaySettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    secrets: SecretsSettings = Field(default_factory=SecretsSettings)
    guild_gateways: GuildGatewaySettings = Field(default_factory=GuildGatewaySettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    chat: ChatSettings = Field(default_factory=ChatSettings)
    vision: VisionSettings = Field(default_factory=VisionSettings)
    imagine: ImagineSettings = Field(default_factory=ImagineSettings)
    media: MediaSettings = Field(default_factory=MediaSettings)
    voice: VoiceSettings = Field(default_factory=VoiceSettings)
    knowledge: KnowledgeSettings = Field(default_factory=KnowledgeSettings)
    quotas: QuotaDefaults = Field(default_factory=QuotaDefaults)
    premium: PremiumSettings = Field(default_factory=PremiumSettings)
    relay: RelaySettings = Field(default_factory=RelaySettings)
    shutdown: ShutdownSettings = Field(default_factory=ShutdownSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # init kwargs carry the TOML file's contents: the environment overrides them.
        return (env_settings, init_settings)

    @field_validator("discord", "gateway", mode="before")
    @classmethod
    def _none_is_default(cls, value: Any) -> Any:
        return {} if value is None else value


class ConfigError(Exception):
    """A configuration problem, worded for the person who runs the bot (one line, no secrets)."""


def load_settings(path: str | Path | None = None, *, require_file: bool = False) -> Settings:
    """Read settings from ``path`` (default ``./config.toml``) and the environment.

    A missing default file is fine (environment and defaults apply); a missing explicit file is
    an error when ``require_file`` is set. Every problem is a ``ConfigError`` of one line.
    """
    config_path = Path(path) if path is not None else DEFAULT_CONFIG_PATH
    data: dict[str, Any] = {}
    if config_path.exists():
        try:
            data = tomllib.loads(config_path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{config_path}: not valid TOML ({exc})") from None
        except OSError as exc:
            raise ConfigError(f"{config_path}: cannot be read ({exc.strerror})") from None
    elif require_file:
        raise ConfigError(f"{config_path}: file not found (copy config.example.toml to start one)")
    try:
        return Settings(**data)
    except ValidationError as exc:
        raise ConfigError(mask_secrets(describe_validation_error(exc, config_path), data)) from None
    except SettingsError as exc:
        raise ConfigError(mask_secrets(describe_settings_error(exc), data)) from None


def is_secret_name(name: object) -> bool:
    return isinstance(name, str) and bool(SECRET_NAME.search(name))


def _decoded(value: Any) -> Any:
    """A JSON text (an environment value, an input pydantic kept as text) decoded; anything else as is."""
    if isinstance(value, str) and value.lstrip()[:1] in ("{", "["):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def holds_secret(value: Any) -> bool:
    """Whether ``value`` (a dict, a list, their JSON text) has a key named like a secret, at any depth."""
    value = _decoded(value)
    if isinstance(value, Mapping):
        return any(is_secret_name(k) or holds_secret(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(holds_secret(v) for v in value)
    if isinstance(value, str) and value.lstrip()[:1] in ("{", "["):  # JSON that does not parse: judge by its text
        return bool(re.search(r"""["'](?:\w*_)?(?:token|api_key|apikey|key|secret|password)["']""", value, re.I))
    return False


def _secret_values(value: Any, under_secret: bool = False) -> Iterator[str]:
    """Every text under a secret-named key in ``value`` (dicts, lists, JSON text), at any depth."""
    value = _decoded(value)
    if isinstance(value, Mapping):
        for k, v in value.items():
            yield from _secret_values(v, under_secret or is_secret_name(k))
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _secret_values(v, under_secret)
    elif under_secret and isinstance(value, str | int | float) and not isinstance(value, bool):
        yield str(value)


def known_secrets(data: Mapping[str, Any] | None = None) -> list[str]:
    """The secret values in the TOML ``data`` and in ``GATECORD_*`` variables (named like a secret,
    or JSON holding one), longest first."""
    found = set(_secret_values(data or {}))
    for name, value in os.environ.items():
        if not name.upper().startswith("GATECORD_"):
            continue
        last = name.rsplit("__", 1)[-1]
        found.update(_secret_values(value, is_secret_name(last)))
    return sorted((s for s in found if len(s.strip()) >= 4), key=len, reverse=True)


def mask_secrets(message: str, data: Mapping[str, Any] | None = None) -> str:
    """``message`` with every secret value of the configuration (file and environment) masked:
    the last guard behind describe_validation_error, which never echoes one in the first place."""
    for secret in known_secrets(data):
        message = message.replace(secret, MASK)
    return message


def _env_name(parts: list[str]) -> str:
    return "GATECORD_" + "__".join(p.upper() for p in parts)


def _from_environment(env_name: str) -> bool:
    """Whether ``env_name`` is set (settings are case-insensitive, so the environment is read that way too)."""
    return any(name.upper() == env_name for name in os.environ)


def describe_validation_error(exc: ValidationError, config_path: Path) -> str:
    """One line naming the key and where it came from (the file, or the environment variable); never echoes a secret."""
    err = exc.errors()[0]
    loc = [str(part) for part in err["loc"]]
    # The setting is the path up to the first list index: gateway.fallbacks[0].base_url is set by
    # GATECORD_GATEWAY__FALLBACKS, discord.command_guilds[1] by GATECORD_DISCORD__COMMAND_GUILDS.
    first_index = next((i for i, part in enumerate(loc) if part.isdigit()), len(loc))
    setting = loc[:first_index]
    key = "".join(f"[{p}]" if p.isdigit() else ("." if i else "") + p for i, p in enumerate(loc))
    env_name = _env_name(setting)
    kind = err["type"]
    if kind == "extra_forbidden":
        what = "is not a known setting"
    elif kind == "literal_error" and loc[-1] == "profile":
        what = f"must be one of {', '.join(PROFILES)}"
    else:
        msg = err["msg"].removeprefix("Value error, ")
        what = msg[0].lower() + msg[1:]
    secret = (
        ".".join(setting) in SECRET_KEYS | SECRET_CONTAINERS
        or any(is_secret_name(part) for part in loc)
        or holds_secret(err.get("input"))
    )
    shown = ""
    if (not secret and kind not in ("extra_forbidden", "missing") and "input" in err
            and not isinstance(err["input"], dict) and str(err["input"]) not in what):
        shown = f" (got {err['input']!r})"  # (a "did you mean …" hint already shows it)
    more = f"; {len(exc.errors()) - 1} more problem(s) after this one" if len(exc.errors()) > 1 else ""
    if setting and _from_environment(env_name):
        return f"environment variable {env_name}: {key} {what}{shown}{more}"
    return f"{config_path}: {key} {what}{shown} [env {env_name}]{more}"


def describe_settings_error(exc: SettingsError) -> str:
    """pydantic-settings could not decode an environment value as JSON (a whole section, e.g. ``GATECORD_GATEWAY``)."""
    text = str(exc)
    field = text.split('"')[1] if text.count('"') >= 2 else ""
    if not field:
        return f"environment: a GATECORD_ variable could not be read ({text})"
    env_name = _env_name([field])
    return (
        f"environment variable {env_name}: {field} is not a valid JSON object; "
        f"set its keys one by one instead ({env_name}__<KEY>)"
    )


def has_token(settings: Settings) -> bool:
    return bool(settings.discord.token.get_secret_value().strip())


def require_token(settings: Settings, config_path: str | Path | None) -> None:
    """``run`` needs a bot token; say where it goes, and how to try Gatecord without one."""
    if not has_token(settings):
        where = Path(config_path) if config_path else DEFAULT_CONFIG_PATH
        raise ConfigError(
            f"{where}: discord.token is missing — set GATECORD_DISCORD__TOKEN in the environment "
            f"or token under [discord] in {where}; to try Gatecord without a token, "
            "`make run` or `gatecord sandbox` start the local sandbox"
        )
