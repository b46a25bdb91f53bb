"""Configuration of one gateway connection and of the client's behaviour."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["GatewayConfig", "ClientOptions"]

MiB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """One gateway: which profile it speaks, where it is and the key to use.

    The API key is excluded from ``repr``/``str`` (and therefore from logs and tracebacks).
    ``name`` labels the gateway in call metadata (defaults to the profile name).
    """

    profile: str
    base_url: str
    api_key: str = field(repr=False)
    chat_model: str = ""
    vision_model: str = ""
    image_model: str = ""
    #: default video and music models ("" = the profile's default)
    video_model: str = ""
    music_model: str = ""
    name: str = ""
    #: reach this gateway only on public addresses, checked at every connection (a gateway a Discord server's
    #: admin configured: its DNS could later point at the bot's own network)
    public_only: bool = False

    @property
    def label(self) -> str:
        return self.name or self.profile


@dataclass(slots=True)
class ClientOptions:
    """Timeouts (seconds), retry/backoff policy, download cap and fallback models of the primary gateway."""

    connect_timeout: float = 10.0
    total_timeout: float = 120.0
    stream_idle_timeout: float = 60.0
    max_retries: int = 2
    max_download_bytes: int = 20 * MiB
    fallback_models: list[str] = field(default_factory=list)
    backoff_base: float = 0.5
    backoff_max: float = 8.0
    max_retry_after: float = 30.0
    #: total timeout for image generation (None: ``total_timeout``); FLUX/DALL-E can be slow.
    image_timeout: float | None = None
    models_cache_ttl: float = 60.0
    pool_limit: int = 100
    user_agent: str = "gatecord-gateway-client/0.1"
