"""Gateway profiles as data.

A profile says where each operation lives, how to authenticate, which headers carry call metadata,
how health is probed, where models are listed and which image options are allowed. Adding another
OpenAI-compatible gateway is adding a ``Profile(...)`` entry to ``PROFILES`` (or calling
``register_profile``) — no code.

Paths that start with ``/`` are relative to the gateway root; other paths are relative to the
profile's ``base_path`` (``/v1`` or ``/api/v1``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal, TypeVar

from .models import ModelKind

__all__ = [
    "Profile",
    "ModelSource",
    "HealthProbe",
    "ImageRules",
    "PROFILES",
    "get_profile",
    "register_profile",
    "COMMON_META_HEADERS",
]

AuthStyle = Literal["bearer", "x-api-key"]

_V = TypeVar("_V")


def _frozen(d: Mapping | None = None) -> Mapping:
    return MappingProxyType(dict(d or {}))


@dataclass(frozen=True, slots=True)
class ModelSource:
    """One model-list endpoint and how to read it."""

    path: str
    #: kind forced on every entry (e.g. DigiCord's /vision-models); None: read it from the entry.
    kind: ModelKind | None = None
    auth: bool = True
    #: server-side filters: our filter name ("provider", "type") -> query parameter name.
    filters: Mapping[str, str] = field(default_factory=_frozen)
    #: unit of published token prices: "per_1m", "per_1k" or "per_token".
    price_unit: str = "per_1m"


@dataclass(frozen=True, slots=True)
class HealthProbe:
    """How to probe health: ``shape`` is "ok_flag" ({"ok": true}), "status" ({"status": "ok"|"ready"})
    or "models" (any 2xx model list means healthy)."""

    path: str
    shape: str = "any_2xx"
    auth: bool = False


@dataclass(frozen=True, slots=True)
class ImageRules:
    """Image generation endpoint, request style and the allowed option values."""

    style: Literal["flux", "openai"]
    path: str
    default_model: str = ""
    #: models documented by the gateway with a published price per image (used when it has no list).
    known_models: Mapping[str, float | None] = field(default_factory=_frozen)
    max_n: int = 4
    max_n_by_model: Mapping[str, int] = field(default_factory=_frozen)
    steps_range: tuple[int, int] | None = None
    width_multiple: int = 0
    height_multiple: int = 0
    min_side: int = 64
    max_side: int = 2048
    default_width: int | None = None
    default_height: int | None = None
    #: allowed "WxH" sizes by model (exact id or prefix); "*" is the default entry.
    sizes: Mapping[str, tuple[str, ...]] = field(default_factory=_frozen)
    response_formats: tuple[str, ...] = ("url", "b64_json")
    send_response_format: bool = True
    supports_seed: bool = False
    supports_negative_prompt: bool = False
    qualities: tuple[str, ...] = ()

    def sizes_for(self, model: str) -> tuple[str, ...]:
        return _by_model(self.sizes, model, self.sizes.get("*", ()))

    def max_n_for(self, model: str) -> int:
        return _by_model(self.max_n_by_model, model, self.max_n)


def _by_model(table: Mapping[str, _V], model: str, default: _V) -> _V:
    """Entry for ``model`` by exact id, then by prefix of its last path segment (``openai/dall-e-3`` -> ``dall-e``)."""
    if model in table:
        return table[model]
    base = model.rsplit("/", 1)[-1]
    for key, value in table.items():
        if key != "*" and (base == key or base.startswith(key)):
            return value
    return default


#: Headers that any gateway may send; every profile reads these in addition to its own.
COMMON_META_HEADERS: Mapping[str, tuple[str, ...]] = _frozen({
    "request_id": ("x-request-id", "request-id"),
    "ratelimit_limit": ("x-ratelimit-limit", "x-ratelimit-limit-requests"),
    "ratelimit_remaining": ("x-ratelimit-remaining", "x-ratelimit-remaining-requests"),
    "ratelimit_reset": ("x-ratelimit-reset", "x-ratelimit-reset-requests"),
})


def _headers(extra: Mapping[str, tuple[str, ...]] | None = None) -> Mapping[str, tuple[str, ...]]:
    merged = dict(COMMON_META_HEADERS)
    for key, names in (extra or {}).items():
        merged[key] = tuple(names) + tuple(n for n in merged.get(key, ()) if n not in names)
    return _frozen(merged)


@dataclass(frozen=True, slots=True)
class Profile:
    """Everything particular about one gateway, as data."""

    name: str
    base_path: str = "/v1"
    auth_style: AuthStyle = "bearer"
    #: operation -> path; absent operation = not offered by the gateway.
    endpoints: Mapping[str, str] = field(default_factory=lambda: _frozen({"chat": "chat/completions"}))
    model_sources: tuple[ModelSource, ...] = (ModelSource("models"),)
    health: HealthProbe = HealthProbe("models", "models", auth=True)
    ready: HealthProbe | None = None
    meta_headers: Mapping[str, tuple[str, ...]] = field(default_factory=_headers)
    #: body fields that carry metadata on chat answers (documentation; apply_body reads them all).
    body_meta_fields: tuple[str, ...] = ("model", "id")
    #: error body style: "openai" ({"error": {message, type, code, param}}) — all are parsed alike.
    error_format: str = "openai"
    capabilities: frozenset[str] = frozenset({"chat", "stream"})
    #: send ``stream_options.include_usage`` on streams (OpenAI behaviour, followed where docs are silent).
    stream_usage: bool = True
    #: how image content blocks are sent: "object" ({"url": ...}, OpenAI) or "string" (DigiCord's doc).
    image_block_style: Literal["object", "string"] = "object"
    model_required: bool = True
    default_chat_model: str = ""
    images: ImageRules | None = None
    #: "json_base64" ({"input_audio": {"data", "format"}}) or "multipart" (OpenAI file upload).
    transcription_style: Literal["json_base64", "multipart"] = "json_base64"
    #: ``response_format`` sent with transcriptions ("verbose_json" gives the duration); "" = not sent.
    transcription_response_format: str = ""
    #: speech and transcription (offered when ``supports("speech")`` / ``supports("transcriptions")``).
    default_speech_model: str = ""
    default_transcription_model: str = ""
    default_voice: str = ""
    #: the embeddings model used when none is configured (offered when ``supports("embeddings")``); "" = none
    default_embedding_model: str = ""
    voices: tuple[str, ...] = ()
    #: speech ``response_format`` values the gateway returns (the first is its default).
    speech_formats: tuple[str, ...] = ()
    max_speech_chars: int = 4096
    max_transcription_bytes: int = 25 * 1024 * 1024
    credits_currency: str | None = None
    #: video jobs, music and image edits (offered when ``supports("videos" | "music" | "image_edits")``);
    #: "" = the gateway picks its own default
    default_video_model: str = ""
    default_music_model: str = ""
    default_edit_model: str = ""
    #: models that can edit images (exact id or prefix of the last path segment, as image ``sizes``)
    edit_models: tuple[str, ...] = ()
    #: allowed video lengths (whole seconds) and "WxH" sizes; empty = not checked before sending
    video_durations: tuple[int, ...] = ()
    video_sizes: tuple[str, ...] = ()
    max_music_seconds: int = 0
    music_formats: tuple[str, ...] = ("mp3",)
    #: largest image (or mask) an edit may upload
    max_edit_image_bytes: int = 25 * 1024 * 1024
    #: kinds of models the gateway documents, for listings that do not say (id -> kind).
    known_model_kinds: Mapping[str, ModelKind] = field(default_factory=_frozen)
    description: str = ""

    def path(self, op: str) -> str | None:
        """Root-relative path of an operation, or None when the gateway does not offer it."""
        rel = self.endpoints.get(op)
        return None if rel is None else self.resolve(rel)

    def resolve(self, rel: str) -> str:
        if rel.startswith("/"):
            return rel
        return f"{self.base_path.rstrip('/')}/{rel}"

    def supports(self, capability: str) -> bool:
        return capability in self.capabilities or capability in self.endpoints

    def __repr__(self) -> str:
        return f"Profile({self.name!r}, base_path={self.base_path!r})"


_FLUX_MODELS = {
    "black-forest-labs/FLUX.1-schnell-Free": 0.0,
    "black-forest-labs/FLUX.1-schnell": 0.003375,
    "black-forest-labs/FLUX.1-pro": 0.0625,
    "black-forest-labs/FLUX.1.1-pro": 0.05,
}

_OPENAI_VOICES = ("alloy", "echo", "fable", "onyx", "nova", "shimmer")

_DALLE3_SIZES = ("1024x1024", "1792x1024", "1024x1792")
_DALLE2_SIZES = ("256x256", "512x512", "1024x1024")
_GPT_IMAGE_SIZES = ("1024x1024", "1536x1024", "1024x1536", "auto")
#: video lengths and sizes of the OpenAI surface (Sora 2 takes 4/8/12 s, Veo 3 4/6/8 s; the gateway
#: accepts these for every video model, 320x180 being its cheap preview size)
_VIDEO_DURATIONS = (4, 5, 6, 8, 10, 12)
_VIDEO_SIZES = ("320x180", "640x360", "854x480", "1280x720", "720x1280", "1920x1080", "1080x1920")

PROFILES: dict[str, Profile] = {
    "aicordcloud": Profile(
        name="aicordcloud",
        description="AiCordCloud: OpenAI-style chat, x-aicord-* metadata headers, GET /health -> {ok: true}",
        base_path="/v1",
        auth_style="bearer",  # the gateway also accepts x-api-key
        endpoints=_frozen({"chat": "chat/completions", "root": "/"}),
        model_sources=(ModelSource("models"),),
        health=HealthProbe("/health", "ok_flag", auth=False),
        meta_headers=_headers({
            "model_used": ("x-aicord-model",),
            "tier": ("x-aicord-tier",),
            "upstream": ("x-aicord-upstream",),
            "gateway_latency_ms": ("x-aicord-latency-ms",),
        }),
        capabilities=frozenset({"chat", "stream", "vision"}),
        default_chat_model="aicord/fast",
    ),
    "digicord": Profile(
        name="digicord",
        description="DigiCord: /api/v1 base, provider in chat answers, /models, /vision-models, FLUX images",
        base_path="/api/v1",
        endpoints=_frozen({"chat": "chat/completions"}),
        model_sources=(
            ModelSource("models", kind=ModelKind.CHAT),
            ModelSource("vision-models", kind=ModelKind.VISION),
            ModelSource("images/flux/models", kind=ModelKind.IMAGE),
        ),
        health=HealthProbe("models", "models", auth=True),
        body_meta_fields=("model", "provider", "id"),
        capabilities=frozenset({"chat", "stream", "vision", "vision_list", "images"}),
        image_block_style="string",
        model_required=False,  # the gateway defaults to google/gemini-flash-1.5
        default_chat_model="google/gemini-flash-1.5",
        images=ImageRules(
            style="flux",
            path="images/flux/generations",
            default_model="black-forest-labs/FLUX.1-schnell-Free",
            known_models=_frozen(_FLUX_MODELS),
            max_n=4,
            steps_range=(1, 4),
            width_multiple=16,
            height_multiple=32,
            min_side=64,
            max_side=1792,
            default_width=1024,
            default_height=1024,
            response_formats=("url", "b64_json"),
            send_response_format=False,
            supports_seed=True,
            supports_negative_prompt=True,
        ),
    ),
    "aicredits": Profile(
        name="aicredits",
        description="AICredits: OpenAI-compatible /v1, public /api/models with prices, /v1/credits, /health(/ready)",
        base_path="/v1",
        endpoints=_frozen({
            "chat": "chat/completions",
            "embeddings": "embeddings",
            "speech": "audio/speech",
            "transcriptions": "audio/transcriptions",
            "credits": "credits",
        }),
        model_sources=(ModelSource("/api/models", auth=False, price_unit="per_1m"),),
        health=HealthProbe("/health", "status", auth=False),
        ready=HealthProbe("/health/ready", "status", auth=False),
        meta_headers=_headers({"credits_used": ("x-credits-used",)}),
        capabilities=frozenset({"chat", "stream", "tools", "json_mode", "vision", "images", "embeddings",
                                "speech", "transcriptions", "credits"}),
        default_chat_model="openai/gpt-4o-mini",
        default_speech_model="openai/tts-1",
        default_transcription_model="openai/whisper-1",
        default_embedding_model="openai/text-embedding-3-small",
        default_voice="alloy",
        voices=_OPENAI_VOICES,
        speech_formats=("mp3", "opus", "aac", "flac"),
        credits_currency="INR",
        known_model_kinds=_frozen({
            "openai/tts-1": ModelKind.AUDIO, "openai/tts-1-hd": ModelKind.AUDIO, "sarvam/bulbul-v2": ModelKind.AUDIO,
            "openai/whisper-1": ModelKind.AUDIO, "sarvam/saarika-v2": ModelKind.AUDIO,
            "dall-e-3": ModelKind.IMAGE, "dall-e-2": ModelKind.IMAGE,
            "openai/text-embedding-3-small": ModelKind.EMBEDDING,
        }),
        images=ImageRules(
            style="openai",
            path="images/generations",
            default_model="dall-e-3",
            known_models=_frozen({"dall-e-3": None, "dall-e-2": None}),
            max_n=10,
            max_n_by_model=_frozen({"dall-e-3": 1}),
            sizes=_frozen({"dall-e-2": _DALLE2_SIZES, "*": _DALLE3_SIZES}),
            qualities=("standard", "hd"),
        ),
    ),
    "aiproxy": Profile(
        name="aiproxy",
        description="AIProxy: /v1/models with provider/type filters and pricing, /v1/completions, typed error codes",
        base_path="/v1",
        endpoints=_frozen({"chat": "chat/completions", "completions": "completions", "embeddings": "embeddings"}),
        model_sources=(ModelSource("models", filters=_frozen({"provider": "provider", "type": "type"}),
                                   price_unit="per_1k"),),
        health=HealthProbe("models", "models", auth=True),
        meta_headers=_headers({"provider": ("x-provider",)}),
        body_meta_fields=("model", "provider", "id"),
        capabilities=frozenset({"chat", "stream", "vision", "completions", "embeddings", "model_filters"}),
        default_embedding_model="text-embedding-3-small",
    ),
    "openai": Profile(
        name="openai",
        description="OpenAI surface plus x-request-id, x-credits-used (or LiteLLM's x-litellm-response-cost, "
                    "in US dollars), x-model-used, x-fallback-from/-depth",
        base_path="/v1",
        endpoints=_frozen({
            "chat": "chat/completions",
            "embeddings": "embeddings",
            "speech": "audio/speech",
            "transcriptions": "audio/transcriptions",
            "videos": "videos/generations",
            "music": "music/generations",
            "image_edits": "images/edits",
        }),
        model_sources=(ModelSource("models"),),
        health=HealthProbe("models", "models", auth=True),
        meta_headers=_headers({
            "credits_used": ("x-credits-used",),
            "cost_usd": ("x-litellm-response-cost",),  # a LiteLLM proxy: the call's cost in US dollars
            "model_used": ("x-model-used",),
            "fallback_from": ("x-fallback-from",),
            "fallback_depth": ("x-fallback-depth",),
        }),
        capabilities=frozenset({"chat", "stream", "tools", "json_mode", "vision", "images", "embeddings",
                                "speech", "transcriptions"}),
        # OpenAI's own upload, where response_format=verbose_json is documented (gives the duration).
        transcription_style="multipart",
        transcription_response_format="verbose_json",
        default_speech_model="tts-1",
        default_transcription_model="whisper-1",
        default_embedding_model="text-embedding-3-small",
        default_voice="alloy",
        voices=_OPENAI_VOICES + ("ash", "ballad", "coral", "sage", "verse"),
        speech_formats=("mp3", "opus", "aac", "flac", "wav", "pcm"),
        default_video_model="openai/sora-2",
        default_music_model="stability/stable-audio-2",
        default_edit_model="gpt-image-1",
        edit_models=("gpt-image", "dall-e-2"),
        video_durations=_VIDEO_DURATIONS,
        video_sizes=_VIDEO_SIZES,
        max_music_seconds=180,
        music_formats=("mp3", "wav"),
        known_model_kinds=_frozen({
            "openai/sora-2": ModelKind.VIDEO, "sora-2": ModelKind.VIDEO,
            "google/veo-3": ModelKind.VIDEO, "veo-3": ModelKind.VIDEO,
            "stability/stable-audio-2": ModelKind.MUSIC, "stable-audio-2": ModelKind.MUSIC,
        }),
        images=ImageRules(
            style="openai",
            path="images/generations",
            default_model="",
            max_n=10,
            max_n_by_model=_frozen({"dall-e-3": 1}),
            sizes=_frozen({
                "dall-e-3": _DALLE3_SIZES,
                "dall-e-2": _DALLE2_SIZES,
                "gpt-image": _GPT_IMAGE_SIZES,
                "*": tuple(dict.fromkeys(_DALLE2_SIZES + _DALLE3_SIZES + _GPT_IMAGE_SIZES)),
            }),
            qualities=("standard", "hd", "low", "medium", "high", "auto"),
        ),
    ),
}


def get_profile(name: str) -> Profile:
    """The profile called ``name`` (case-insensitive); raises ``KeyError`` listing the known ones."""
    try:
        return PROFILES[name.strip().lower()]
    except KeyError:
        raise KeyError(f"unknown gateway profile {name!r}; known: {', '.join(sorted(PROFILES))}") from None


def register_profile(profile: Profile) -> None:
    """Add (or replace) a profile, e.g. another OpenAI-compatible gateway."""
    PROFILES[profile.name.lower()] = profile
