"""Typed requests and results (slotted dataclasses: cheap to build on the hot path)."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from .meta import CallMeta

__all__ = [
    "ModelKind",
    "ModelInfo",
    "Usage",
    "ChatMessage",
    "ChatRequest",
    "ChatResult",
    "ImageRequest",
    "GeneratedImage",
    "ImageResult",
    "HealthStatus",
    "CreditsBalance",
    "EmbeddingResult",
    "sniff_image_mime",
    "to_data_url",
]


class ModelKind(StrEnum):
    CHAT = "chat"
    VISION = "vision"  # a chat model that also accepts images
    IMAGE = "image"  # draws images
    EMBEDDING = "embedding"
    COMPLETION = "completion"  # legacy text completion
    AUDIO = "audio"
    VIDEO = "video"  # generates video (asynchronous jobs)
    MUSIC = "music"  # generates music


@dataclass(slots=True)
class ModelInfo:
    """A model as any gateway lists it. Prices are USD-or-gateway-currency per 1M tokens
    (``image_price`` per image) when the gateway publishes them."""

    id: str
    kind: ModelKind
    provider: str | None = None
    name: str | None = None
    context_window: int | None = None
    input_price_per_1m: float | None = None
    output_price_per_1m: float | None = None
    image_price: float | None = None
    source: str = ""  # endpoint path it came from, or "config"/"profile"
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def can_see_images(self) -> bool:
        return self.kind is ModelKind.VISION

    @property
    def can_draw(self) -> bool:
        return self.kind is ModelKind.IMAGE


@dataclass(slots=True)
class Usage:
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None
    reasoning_tokens: int | None = None
    cost: float | None = None

    @classmethod
    def from_dict(cls, data: Any) -> Usage:
        if not isinstance(data, dict):
            return cls()
        details = data.get("completion_tokens_details")
        reasoning = details.get("reasoning_tokens") if isinstance(details, dict) else None
        cost = data.get("cost")
        return cls(
            prompt_tokens=_opt_int(data.get("prompt_tokens", data.get("input_tokens"))),
            completion_tokens=_opt_int(data.get("completion_tokens", data.get("output_tokens"))),
            total_tokens=_opt_int(data.get("total_tokens")),
            reasoning_tokens=_opt_int(reasoning),
            cost=float(cost) if isinstance(cost, (int, float)) and not isinstance(cost, bool) else None,
        )


def _opt_int(v: Any) -> int | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, float):
        return int(v)
    return None


_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


def sniff_image_mime(data: bytes) -> str | None:
    """The image MIME type from magic bytes (png, jpeg, gif, webp), or None."""
    for magic, mime in _MAGIC:
        if data.startswith(magic):
            return mime
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def to_data_url(data: bytes, mime: str | None = None) -> str:
    """A ``data:`` URL for image bytes (the MIME type is sniffed when not given)."""
    mime = mime or sniff_image_mime(data) or "application/octet-stream"
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


@dataclass(slots=True)
class ChatMessage:
    """One chat message. ``content`` is text or a list of OpenAI content blocks
    (``{"type": "text", "text"}`` / ``{"type": "image_url", "image_url": {"url"}}``)."""

    role: str
    content: str | list[dict[str, Any]] | None
    name: str | None = None
    tool_call_id: str | None = None
    tool_calls: list[dict[str, Any]] | None = None

    @classmethod
    def user(cls, text: str, images: Sequence[str | bytes] = ()) -> ChatMessage:
        """A user message; ``images`` are http(s) URLs, ``data:`` URLs or raw image bytes."""
        if not images:
            return cls("user", text)
        blocks: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
        for img in images:
            url = to_data_url(img) if isinstance(img, (bytes, bytearray)) else img
            blocks.append({"type": "image_url", "image_url": {"url": url}})
        return cls("user", blocks)

    @classmethod
    def system(cls, text: str) -> ChatMessage:
        return cls("system", text)

    @classmethod
    def assistant(cls, text: str) -> ChatMessage:
        return cls("assistant", text)

    @property
    def has_images(self) -> bool:
        return isinstance(self.content, list) and any(
            isinstance(b, dict) and b.get("type") in ("image_url", "input_image", "image") for b in self.content
        )

    def image_urls(self) -> list[str]:
        urls: list[str] = []
        if isinstance(self.content, list):
            for b in self.content:
                if isinstance(b, dict) and b.get("type") == "image_url":
                    iu = b.get("image_url")
                    url = iu.get("url") if isinstance(iu, dict) else iu
                    if isinstance(url, str):
                        urls.append(url)
        return urls


@dataclass(slots=True)
class ChatRequest:
    messages: list[ChatMessage | dict[str, Any]]
    model: str | None = None  # None -> config.chat_model (config.vision_model when images are present)
    temperature: float | None = None
    max_tokens: int | None = None
    response_format: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    user: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def has_images(self) -> bool:
        for m in self.messages:
            if isinstance(m, ChatMessage):
                if m.has_images:
                    return True
            elif isinstance(m, dict) and isinstance(m.get("content"), list):
                if any(isinstance(b, dict) and b.get("type") == "image_url" for b in m["content"]):
                    return True
        return False


@dataclass(slots=True)
class ChatResult:
    text: str
    reasoning: str = ""
    finish_reason: str | None = None
    usage: Usage = field(default_factory=Usage)
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    meta: CallMeta = field(default_factory=lambda: CallMeta(profile=""))


@dataclass(slots=True)
class ImageRequest:
    prompt: str
    model: str | None = None
    n: int = 1
    width: int | None = None
    height: int | None = None
    size: str | None = None  # "WxH"; OpenAI-style gateways
    steps: int | None = None  # FLUX
    seed: int | None = None
    negative_prompt: str | None = None
    response_format: str = "b64_json"  # "url" | "b64_json"
    quality: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class GeneratedImage:
    data: bytes = field(repr=False)
    mime: str
    seed: int | None = None
    width: int | None = None
    height: int | None = None
    url: str | None = None
    revised_prompt: str | None = None

    def __repr__(self) -> str:  # never dump megabytes into a log line
        return (f"GeneratedImage(mime={self.mime!r}, bytes={len(self.data)}, seed={self.seed!r}, "
                f"width={self.width!r}, height={self.height!r})")


@dataclass(slots=True)
class ImageResult:
    images: list[GeneratedImage]
    meta: CallMeta
    request: ImageRequest | None = None  # the normalised request that was sent


@dataclass(slots=True)
class HealthStatus:
    ok: bool
    ready: bool | None
    detail: dict[str, Any]
    meta: CallMeta
    probe: str = ""  # which endpoint answered the probe, e.g. "/health" or "/v1/models"


@dataclass(slots=True)
class CreditsBalance:
    amount: float | None
    currency: str | None
    meta: CallMeta
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class EmbeddingResult:
    vectors: list[list[float]]
    model: str | None
    usage: Usage
    meta: CallMeta
