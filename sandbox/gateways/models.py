"""Fake model catalogues per profile, and the listing shapes each gateway answers with.

Listing shapes (where the document shows none, the choice is written here):

* aicordcloud ``GET /v1/models``: ``{"object": "list", "data": [{"id": "aicord/fast",
  "object": "model", "owned_by": "aicord", "tier": "fast", "capabilities": ["chat"],
  "context_window": 131072}]}``.
* digicord ``GET /models`` and ``GET /vision-models`` (not documented):
  ``{"object": "list", "data": [{"id", "object": "model", "provider", "context_length",
  "vision": bool}]}`` — ``/vision-models`` lists only vision models.
  ``GET /images/flux/models`` (not documented beyond the names and prices):
  ``{"object": "list", "data": [{"id", "object": "model", "type": "image", "price": 0.003375,
  "currency": "USD", "free": bool, "max_steps": 4, "default_width": 1024,
  "default_height": 1024}]}``.
* aicredits ``GET /api/models`` exactly the documented fields (``id, name, provider,
  context_window, input_cost_per_1m, output_cost_per_1m``; ``null`` context/cost for image and
  audio models) and an OpenAI-shaped ``GET /v1/models`` (``id, object, created, owned_by``).
* aiproxy ``GET /v1/models``: the documented fields (``id, object, provider, type,
  context_window, pricing {input, output}`` per 1K tokens) plus ``capabilities``; ``?provider=``
  and ``?type=`` filter.
* openai ``GET /v1/models``: OpenAI's ``{"id", "object": "model", "created", "owned_by"}``.

``MODEL_ROLES[profile]`` names one model per role so tests need not hard-code catalogues (``video``,
``music`` and ``image_edit`` only on openai: the only profile with those endpoints).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

CREATED = 1_727_000_000  # fixed "created" stamp for listings


@dataclass(frozen=True)
class ModelInfo:
    """One model a gateway serves. Prices are USD per 1M tokens (or per image)."""

    id: str
    provider: str
    caps: frozenset[str]  # chat, vision, completion, embedding, image, image_edit, tts, stt, video, music
    name: str = ""
    context_window: int | None = None
    input_per_1m: float = 0.0
    output_per_1m: float = 0.0
    reasoning: str | None = None  # "think" (<think> in content) | "field" ("reasoning" key)
    upstream: str | None = None  # concrete model behind an alias (aicordcloud)
    tier: str | None = None
    fallback_to: str | None = None  # this id always "fails" and is served by fallback_to
    fallback_depth: int = 0
    aliases: tuple[str, ...] = ()
    dimensions: int | None = None  # embeddings: native size
    flexible_dimensions: bool = False  # embeddings: honours "dimensions"
    image_sizes: tuple[str, ...] = ()  # images: allowed "WxH"; empty = FLUX rules
    max_images: int = 1
    price_per_image: float = 0.0
    b64_only: bool = False  # images: no URL responses (gpt-image-1)
    price_per_second: float = 0.0  # video and music: USD per second made
    #: the window holds the prompt and ``max_tokens`` together (OpenAI-style): a request whose prompt fits
    #: but whose prompt + max_tokens does not is refused too (other models check the prompt alone)
    counts_answer: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def served_id(self) -> str:
        return self.fallback_to or self.id


def _chat(id_: str, provider: str, ctx: int, pin: float, pout: float, *, vision: bool = False,
          **kw: Any) -> ModelInfo:
    caps = {"chat", "completion"} | ({"vision"} if vision else set())
    return ModelInfo(id=id_, provider=provider, caps=frozenset(caps), context_window=ctx,
                     input_per_1m=pin, output_per_1m=pout, **kw)


def _emb(id_: str, provider: str, dims: int, price: float, *, flexible: bool = True,
         ctx: int = 8191, **kw: Any) -> ModelInfo:
    return ModelInfo(id=id_, provider=provider, caps=frozenset({"embedding"}), context_window=ctx,
                     input_per_1m=price, dimensions=dims, flexible_dimensions=flexible, **kw)


_DALLE3 = ("1024x1024", "1792x1024", "1024x1792")
_DALLE2 = ("256x256", "512x512", "1024x1024")
_GPT_IMAGE = ("1024x1024", "1536x1024", "1024x1536")

CATALOGUES: dict[str, tuple[ModelInfo, ...]] = {
    "aicordcloud": (
        _chat("aicord/fast", "groq", 131072, 0.05, 0.08, upstream="llama-3.1-8b-instant", tier="fast"),
        _chat("aicord/smart", "openai", 128000, 2.5, 10.0, upstream="gpt-4o", tier="smart"),
        _chat("aicord/vision", "google", 1048576, 0.1, 0.4, vision=True, upstream="gemini-2.0-flash",
              tier="vision"),
        _chat("aicord/reasoning", "groq", 131072, 0.75, 0.99, reasoning="think",
              upstream="deepseek-r1-distill-llama-70b", tier="smart"),
        _chat("aicord/tiny", "groq", 1024, 0.04, 0.04, upstream="llama-3.2-1b-preview", tier="fast"),
    ),
    "digicord": (
        _chat("google/gemini-flash-1.5", "Google", 1_000_000, 0.075, 0.3, vision=True),
        _chat("meta-llama/llama-3.2-3b-instruct", "Fireworks", 131072, 0.03, 0.05),
        _chat("meta-llama/llama-3.2-11b-vision-instruct", "Together", 131072, 0.055, 0.055, vision=True),
        _chat("meta-llama/llama-3.2-1b-instruct", "Together", 1024, 0.01, 0.02),
        _chat("deepseek/deepseek-r1", "DeepInfra", 64000, 0.55, 2.19, reasoning="think"),
        _chat("openai/gpt-4o-mini", "OpenAI", 128000, 0.15, 0.6, vision=True),
        ModelInfo("black-forest-labs/FLUX.1-schnell-Free", "Together", frozenset({"image"}),
                  max_images=4, price_per_image=0.0),
        ModelInfo("black-forest-labs/FLUX.1-schnell", "Together", frozenset({"image"}),
                  max_images=4, price_per_image=0.003375),
        ModelInfo("black-forest-labs/FLUX.1-pro", "Together", frozenset({"image"}),
                  max_images=4, price_per_image=0.0625),
        ModelInfo("black-forest-labs/FLUX.1.1-pro", "Together", frozenset({"image"}),
                  max_images=4, price_per_image=0.05),
    ),
    "aicredits": (
        _chat("openai/gpt-4o-mini", "openai", 128000, 0.15, 0.60, vision=True, name="GPT-4o Mini"),
        _chat("anthropic/claude-sonnet-4.6", "anthropic", 200000, 3.0, 15.0, vision=True,
              name="Claude Sonnet 4.6"),
        _chat("google/gemini-2.0-flash", "google", 1_048_576, 0.1, 0.4, vision=True,
              name="Gemini 2.0 Flash"),
        _chat("meta-llama/llama-3.1-8b-instruct", "meta-llama", 131072, 0.05, 0.08,
              name="Llama 3.1 8B Instruct"),
        _chat("meta-llama/llama-3.2-1b-instruct", "meta-llama", 1024, 0.01, 0.02,
              name="Llama 3.2 1B Instruct"),
        _chat("deepseek/deepseek-r1", "deepseek", 64000, 0.55, 2.19, reasoning="think",
              name="DeepSeek R1"),
        _chat("openai/o3-mini", "openai", 200000, 1.1, 4.4, reasoning="field", name="o3-mini"),
        ModelInfo("dall-e-3", "openai", frozenset({"image"}), name="DALL·E 3", aliases=("openai/dall-e-3",),
                  image_sizes=_DALLE3, max_images=1, price_per_image=0.04),
        ModelInfo("dall-e-2", "openai", frozenset({"image"}), name="DALL·E 2", aliases=("openai/dall-e-2",),
                  image_sizes=_DALLE2, max_images=10, price_per_image=0.02),
        ModelInfo("openai/tts-1", "openai", frozenset({"tts"}), name="TTS 1", input_per_1m=15.0),
        ModelInfo("openai/tts-1-hd", "openai", frozenset({"tts"}), name="TTS 1 HD", input_per_1m=30.0),
        ModelInfo("sarvam/bulbul-v2", "sarvam", frozenset({"tts"}), name="Bulbul v2", input_per_1m=10.0),
        ModelInfo("openai/whisper-1", "openai", frozenset({"stt"}), name="Whisper", input_per_1m=6.0),
        ModelInfo("sarvam/saarika-v2", "sarvam", frozenset({"stt"}), name="Saarika v2", input_per_1m=5.0),
        _emb("openai/text-embedding-3-small", "openai", 1536, 0.02, name="Text Embedding 3 Small"),
        _emb("openai/text-embedding-3-large", "openai", 3072, 0.13, name="Text Embedding 3 Large"),
    ),
    "aiproxy": (
        _chat("gpt-4-turbo", "openai", 128000, 10.0, 30.0, vision=True),
        _chat("gpt-4o", "openai", 128000, 5.0, 15.0, vision=True),
        _chat("gpt-4o-mini", "openai", 128000, 0.15, 0.6, vision=True),
        _chat("gpt-3.5-turbo", "openai", 16385, 0.5, 1.5),
        _chat("o1-mini", "openai", 128000, 3.0, 12.0, reasoning="field"),
        _chat("claude-3-opus", "anthropic", 200000, 15.0, 75.0, vision=True),
        _chat("claude-3-haiku", "anthropic", 200000, 0.25, 1.25),
        _chat("gemini-1.5-pro", "google", 2_000_000, 3.5, 10.5, vision=True),
        _chat("gemini-1.0-nano", "google", 1024, 0.05, 0.1),
        _chat("gemma-3-270m", "google", 2048, 0.01, 0.01, counts_answer=True),
        ModelInfo("gpt-3.5-turbo-instruct", "openai", frozenset({"completion"}), context_window=4096,
                  input_per_1m=1.5, output_per_1m=2.0),
        _emb("text-embedding-3-large", "openai", 3072, 0.13),
        _emb("text-embedding-3-small", "openai", 1536, 0.02),
        _emb("text-embedding-ada-002", "openai", 1536, 0.1, flexible=False),
    ),
    "openai": (
        _chat("openai/gpt-4o-mini", "openai", 128000, 0.15, 0.6, vision=True),
        _chat("openai/gpt-4o", "openai", 128000, 2.5, 10.0, vision=True),
        _chat("anthropic/claude-3.5-sonnet", "anthropic", 200000, 3.0, 15.0, vision=True),
        _chat("meta-llama/llama-3.3-70b-instruct", "meta-llama", 131072, 0.12, 0.3),
        _chat("meta-llama/llama-3.2-1b-instruct", "meta-llama", 1024, 0.01, 0.02),
        _chat("gemma-3-270m", "google", 2048, 0.01, 0.01, counts_answer=True),
        _chat("deepseek/deepseek-r1", "deepseek", 64000, 0.55, 2.19, reasoning="think"),
        _chat("openai/o3-mini", "openai", 200000, 1.1, 4.4, reasoning="field"),
        _chat("openai/gpt-unavailable", "openai", 128000, 0.15, 0.6, vision=True,
              fallback_to="openai/gpt-4o-mini", fallback_depth=1),
        _chat("openai/gpt-retired", "openai", 128000, 0.15, 0.6, vision=True,
              fallback_to="openai/gpt-4o-mini", fallback_depth=2),
        ModelInfo("openai/dall-e-3", "openai", frozenset({"image"}), aliases=("dall-e-3",),
                  image_sizes=_DALLE3, max_images=1, price_per_image=0.04),
        ModelInfo("openai/dall-e-2", "openai", frozenset({"image", "image_edit"}), aliases=("dall-e-2",),
                  image_sizes=_DALLE2, max_images=10, price_per_image=0.02),
        ModelInfo("openai/gpt-image-1", "openai", frozenset({"image", "image_edit"}), aliases=("gpt-image-1",),
                  image_sizes=_GPT_IMAGE, max_images=10, price_per_image=0.042, b64_only=True),
        ModelInfo("openai/sora-2", "openai", frozenset({"video"}), aliases=("sora-2",), price_per_second=0.10),
        ModelInfo("google/veo-3", "google", frozenset({"video"}), aliases=("veo-3",), price_per_second=0.40),
        ModelInfo("stability/stable-audio-2", "stability", frozenset({"music"}), aliases=("stable-audio-2",),
                  price_per_second=0.002),
        ModelInfo("openai/tts-1", "openai", frozenset({"tts"}), aliases=("tts-1",), input_per_1m=15.0),
        ModelInfo("openai/whisper-1", "openai", frozenset({"stt"}), aliases=("whisper-1",),
                  input_per_1m=6.0),
        _emb("openai/text-embedding-3-small", "openai", 1536, 0.02, aliases=("text-embedding-3-small",)),
        _emb("openai/text-embedding-3-large", "openai", 3072, 0.13, aliases=("text-embedding-3-large",)),
    ),
}

#: One model per role and profile (``None``: the gateway has no such endpoint). ``context_2k``: a small
#: local model behind a proxy (Gemma 3 270M), 2,048 tokens for prompt + ``max_tokens`` together; past it
#: the emulator refuses the request, or answers an empty stream (``GatewayEmulator.context_overflow``).
MODEL_ROLES: dict[str, dict[str, str | None]] = {
    "aicordcloud": {"chat": "aicord/fast", "vision": "aicord/vision", "non_vision": "aicord/fast",
                    "reasoning": "aicord/reasoning", "reasoning_field": None, "small": "aicord/tiny",
                    "image": None, "embedding": None, "tts": None, "stt": None, "fallback": None,
                    "context_2k": None, "video": None, "music": None, "image_edit": None},
    "digicord": {"chat": "meta-llama/llama-3.2-3b-instruct",
                 "vision": "meta-llama/llama-3.2-11b-vision-instruct",
                 "non_vision": "meta-llama/llama-3.2-3b-instruct", "reasoning": "deepseek/deepseek-r1",
                 "reasoning_field": None, "small": "meta-llama/llama-3.2-1b-instruct",
                 "image": "black-forest-labs/FLUX.1-schnell-Free", "embedding": None, "tts": None,
                 "stt": None, "fallback": None, "context_2k": None, "video": None, "music": None,
                 "image_edit": None},
    "aicredits": {"chat": "openai/gpt-4o-mini", "vision": "openai/gpt-4o-mini",
                  "non_vision": "meta-llama/llama-3.1-8b-instruct", "reasoning": "deepseek/deepseek-r1",
                  "reasoning_field": "openai/o3-mini", "small": "meta-llama/llama-3.2-1b-instruct",
                  "image": "dall-e-3", "embedding": "openai/text-embedding-3-small", "tts": "openai/tts-1",
                  "stt": "openai/whisper-1", "fallback": None, "context_2k": None, "video": None, "music": None,
                  "image_edit": None},
    "aiproxy": {"chat": "gpt-4o-mini", "vision": "gpt-4o", "non_vision": "gpt-3.5-turbo",
                "reasoning": None, "reasoning_field": "o1-mini", "small": "gemini-1.0-nano", "image": None,
                "embedding": "text-embedding-3-small", "tts": None, "stt": None, "fallback": None,
                "completion": "gpt-3.5-turbo-instruct", "context_2k": "gemma-3-270m", "video": None,
                "music": None, "image_edit": None},
    "openai": {"chat": "openai/gpt-4o-mini", "vision": "openai/gpt-4o-mini",
               "non_vision": "meta-llama/llama-3.3-70b-instruct", "reasoning": "deepseek/deepseek-r1",
               "reasoning_field": "openai/o3-mini", "small": "meta-llama/llama-3.2-1b-instruct",
               "image": "openai/dall-e-3", "embedding": "openai/text-embedding-3-small",
               "tts": "openai/tts-1", "stt": "openai/whisper-1", "fallback": "openai/gpt-unavailable",
               "context_2k": "gemma-3-270m", "video": "openai/sora-2", "music": "stability/stable-audio-2",
               "image_edit": "openai/gpt-image-1"},
}


def find_model(profile: str, model_id: str) -> ModelInfo | None:
    """The model called ``model_id`` (or one of its aliases) on ``profile``."""
    for m in CATALOGUES[profile]:
        if m.id == model_id or model_id in m.aliases:
            return m
    return None


def served_model(profile: str, info: ModelInfo) -> ModelInfo:
    """The model that actually answers (the fallback target, or ``info`` itself)."""
    if info.fallback_to:
        target = find_model(profile, info.fallback_to)
        assert target is not None
        return target
    return info


def _kind(m: ModelInfo) -> str:
    for cap in ("chat", "completion", "embedding", "image", "tts", "stt", "video", "music"):
        if cap in m.caps:
            return cap
    return "other"


def list_models(profile: str, *, query: dict[str, str] | None = None, vision_only: bool = False,
                flux: bool = False, openai_shape: bool = False) -> dict[str, Any]:
    """The JSON body of a model listing in ``profile``'s shape."""
    q = query or {}
    models = CATALOGUES[profile]
    if openai_shape:
        return {"object": "list", "data": [
            {"id": m.id, "object": "model", "created": CREATED, "owned_by": m.provider} for m in models]}
    if profile == "aicordcloud":
        return {"object": "list", "data": [
            {"id": m.id, "object": "model", "owned_by": "aicord", "tier": m.tier,
             "capabilities": sorted(m.caps - {"completion"}), "context_window": m.context_window}
            for m in models]}
    if profile == "digicord":
        if flux:
            return {"object": "list", "data": [
                {"id": m.id, "object": "model", "type": "image", "price": m.price_per_image,
                 "currency": "USD", "free": m.price_per_image == 0, "max_steps": 4,
                 "default_width": 1024, "default_height": 1024}
                for m in models if "image" in m.caps]}
        chosen = [m for m in models if "chat" in m.caps and (not vision_only or "vision" in m.caps)]
        return {"object": "list", "data": [
            {"id": m.id, "object": "model", "provider": m.provider, "context_length": m.context_window,
             "vision": "vision" in m.caps} for m in chosen]}
    if profile == "aicredits":
        return {"object": "list", "data": [
            {"id": m.id, "name": m.name or m.id, "provider": m.provider, "context_window": m.context_window,
             "input_cost_per_1m": m.input_per_1m if ("chat" in m.caps or "embedding" in m.caps) else None,
             "output_cost_per_1m": m.output_per_1m if "chat" in m.caps else None}
            for m in models]}
    if profile == "aiproxy":
        rows = []
        for m in models:
            kind = _kind(m)
            if q.get("provider") and m.provider != q["provider"]:
                continue
            if q.get("type") and kind != q["type"]:
                continue
            rows.append({"id": m.id, "object": "model", "provider": m.provider, "type": kind,
                         "context_window": m.context_window,
                         "capabilities": sorted(m.caps),
                         "pricing": {"input": round(m.input_per_1m / 1000, 8),
                                     "output": round(m.output_per_1m / 1000, 8)}})
        return {"object": "list", "data": rows}
    return {"object": "list", "data": [
        {"id": m.id, "object": "model", "created": CREATED, "owned_by": m.provider} for m in models]}
