"""Normalise every gateway's model listing into ``ModelInfo``.

Accepted listing shapes: a JSON list, or an object with ``data``/``models``/``items`` holding a list
(or an id -> info mapping); entries are strings (``"name ($0,003375)"`` too) or objects. The kind is
taken from the source (DigiCord's /vision-models), then the entry (``type``, ``capabilities``,
``vision``, modalities), then the profile's known models, then the id (embedding / image / audio
words, video and music model names); everything else is a chat model.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .models import ModelInfo, ModelKind
from .profiles import ModelSource

__all__ = ["parse_model_list", "kind_from_id", "merge_models"]

_TYPE_WORDS: dict[str, ModelKind] = {
    "chat": ModelKind.CHAT,
    "llm": ModelKind.CHAT,
    "text": ModelKind.CHAT,
    "language": ModelKind.CHAT,
    "vision": ModelKind.VISION,
    "multimodal": ModelKind.VISION,
    "image": ModelKind.IMAGE,
    "images": ModelKind.IMAGE,
    "image_generation": ModelKind.IMAGE,
    "image-generation": ModelKind.IMAGE,
    "text-to-image": ModelKind.IMAGE,
    "embedding": ModelKind.EMBEDDING,
    "embeddings": ModelKind.EMBEDDING,
    "completion": ModelKind.COMPLETION,
    "completions": ModelKind.COMPLETION,
    "audio": ModelKind.AUDIO,
    "tts": ModelKind.AUDIO,
    "stt": ModelKind.AUDIO,
    "speech": ModelKind.AUDIO,
    "transcription": ModelKind.AUDIO,
    "video": ModelKind.VIDEO,
    "text-to-video": ModelKind.VIDEO,
    "video_generation": ModelKind.VIDEO,
    "music": ModelKind.MUSIC,
    "text-to-music": ModelKind.MUSIC,
    "music_generation": ModelKind.MUSIC,
}

_ID_HINTS: tuple[tuple[tuple[str, ...], ModelKind], ...] = (
    (("embedding", "embed-", "bge-", "e5-"), ModelKind.EMBEDDING),
    (("dall-e", "gpt-image", "flux", "stable-diffusion", "sdxl", "imagen", "midjourney"), ModelKind.IMAGE),
    (("sora", "veo-", "text-to-video", "video-gen"), ModelKind.VIDEO),
    (("stable-audio", "musicgen", "lyria", "suno"), ModelKind.MUSIC),
    (("tts", "whisper", "transcribe", "speech"), ModelKind.AUDIO),
)

#: where a listing entry states the model's context window (AIProxy, AICredits, DigiCord, OpenRouter,
#: vLLM's ``max_model_len``, LiteLLM's ``max_input_tokens``), first found wins
_CONTEXT_KEYS = ("context_window", "context_length", "max_context_length", "max_context", "max_model_len",
                 "max_input_tokens")
_PRICE_IN_NAME = re.compile(r"^(.*?)\s*\(\s*\$\s*([0-9]+(?:[.,][0-9]+)?)\s*\)\s*$")
_SCALE = {"per_1m": 1.0, "per_1k": 1000.0, "per_token": 1_000_000.0}


def kind_from_id(model_id: str) -> ModelKind | None:
    low = model_id.lower()
    for words, kind in _ID_HINTS:
        if any(w in low for w in words):
            return kind
    return None


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v.replace(",", ".").strip().lstrip("$"))
        except ValueError:
            return None
    return None


def _int(v: Any) -> int | None:
    f = _num(v)
    return None if f is None else int(f)


def _kind_from_entry(item: Mapping[str, Any]) -> ModelKind | None:
    for key in ("type", "kind", "mode", "category", "model_type"):
        v = item.get(key)
        if isinstance(v, str) and v.lower() in _TYPE_WORDS:
            kind = _TYPE_WORDS[v.lower()]
            if kind is ModelKind.CHAT and _says_vision(item):
                return ModelKind.VISION
            return kind
    if _says_vision(item):
        return ModelKind.VISION
    caps = item.get("capabilities")
    if isinstance(caps, (list, tuple)):
        words = {str(c).lower() for c in caps}
        for word in ("image", "image_generation", "embedding", "completion", "tts", "stt", "chat"):
            if word in words:
                return _TYPE_WORDS.get(word)
    out_mods = _modalities(item, "output")
    if "image" in out_mods and "text" not in out_mods:
        return ModelKind.IMAGE
    return None


def _modalities(item: Mapping[str, Any], which: str) -> set[str]:
    mods: Any = item.get(f"{which}_modalities")
    if mods is None and isinstance(item.get("architecture"), dict):
        mods = item["architecture"].get(f"{which}_modalities")
    if mods is None and which == "input":
        mods = item.get("modalities")
        if isinstance(mods, dict):
            mods = mods.get("input")
    return {str(m).lower() for m in mods} if isinstance(mods, (list, tuple)) else set()


def _says_vision(item: Mapping[str, Any]) -> bool:
    for key in ("vision", "supports_vision", "supports_images", "image_input"):
        if item.get(key) is True:
            return True
    caps = item.get("capabilities")
    if isinstance(caps, (list, tuple)) and any(str(c).lower() in ("vision", "image_input") for c in caps):
        return True
    if isinstance(caps, dict) and (caps.get("vision") is True or caps.get("image_input") is True):
        return True
    return "image" in _modalities(item, "input")


def _entries(payload: Any) -> list[Any]:
    if isinstance(payload, list):
        return payload
    if isinstance(payload, dict):
        for key in ("data", "models", "items", "results"):
            v = payload.get(key)
            if isinstance(v, list):
                return v
            if isinstance(v, dict):
                return [{"id": k, **(val if isinstance(val, dict) else {})} for k, val in v.items()]
    return []


def parse_model_list(
    payload: Any,
    source: ModelSource,
    *,
    known_kinds: Mapping[str, ModelKind] | None = None,
    where: str | None = None,
) -> list[ModelInfo]:
    """``ModelInfo`` for every entry of one listing answer (``where``: the path it came from)."""
    where = where or source.path
    scale = _SCALE.get(source.price_unit, 1.0)
    out: list[ModelInfo] = []
    for item in _entries(payload):
        if isinstance(item, str):
            m = _PRICE_IN_NAME.match(item)
            model_id, price = (m.group(1), _num(m.group(2))) if m else (item.strip(), None)
            kind = source.kind or (known_kinds or {}).get(model_id) or kind_from_id(model_id) or ModelKind.CHAT
            out.append(ModelInfo(
                id=model_id, kind=kind, provider=model_id.split("/", 1)[0] if "/" in model_id else None,
                image_price=price if kind is ModelKind.IMAGE else None, source=where,
                raw={"id": item},
            ))
            continue
        if not isinstance(item, dict):
            continue
        model_id = item.get("id") or item.get("model") or item.get("slug") or item.get("name")
        if not isinstance(model_id, str) or not model_id:
            continue
        if source.kind is None:
            kind = (_kind_from_entry(item) or (known_kinds or {}).get(model_id) or kind_from_id(model_id)
                    or ModelKind.CHAT)
        elif source.kind is ModelKind.CHAT and _says_vision(item):
            kind = ModelKind.VISION
        else:
            kind = source.kind
        provider = item.get("provider") or item.get("owned_by")
        if not isinstance(provider, str) or not provider:
            provider = model_id.split("/", 1)[0] if "/" in model_id else None
        pin = pout = img_price = None
        pricing = item.get("pricing")
        if isinstance(pricing, dict):
            pin = _num(pricing.get("input", pricing.get("prompt")))
            pout = _num(pricing.get("output", pricing.get("completion")))
            img_price = _num(pricing.get("image", pricing.get("per_image")))
            pin = None if pin is None else round(pin * scale, 9)
            pout = None if pout is None else round(pout * scale, 9)
        if pin is None and (v := _num(item.get("input_cost_per_1m"))) is not None:
            pin = v
        if pout is None and (v := _num(item.get("output_cost_per_1m"))) is not None:
            pout = v
        if pin is None and (v := _num(item.get("input_cost_per_1k"))) is not None:
            pin = round(v * 1000, 9)
        if pout is None and (v := _num(item.get("output_cost_per_1k"))) is not None:
            pout = round(v * 1000, 9)
        if img_price is None and kind is ModelKind.IMAGE:
            img_price = _num(item.get("price", item.get("price_per_image")))
        name = item.get("name") if isinstance(item.get("name"), str) and item.get("name") != model_id else None
        ctx = next((v for v in (_int(item.get(key)) for key in _CONTEXT_KEYS) if v), None)
        out.append(ModelInfo(
            id=model_id, kind=kind, provider=provider, name=name, context_window=ctx,
            input_price_per_1m=pin, output_price_per_1m=pout, image_price=img_price,
            source=where, raw=dict(item),
        ))
    return out


_RANK = {ModelKind.VISION: 2, ModelKind.IMAGE: 2, ModelKind.CHAT: 1}


def merge_models(lists: list[list[ModelInfo]]) -> list[ModelInfo]:
    """One entry per id, first listing order; a more specific kind (vision) and missing facts are merged in."""
    by_id: dict[str, ModelInfo] = {}
    for models in lists:
        for m in models:
            cur = by_id.get(m.id)
            if cur is None:
                by_id[m.id] = m
                continue
            if _RANK.get(m.kind, 0) > _RANK.get(cur.kind, 0):
                cur.kind = m.kind
            for attr in ("provider", "name", "context_window", "input_price_per_1m", "output_price_per_1m",
                         "image_price"):
                if getattr(cur, attr) is None and getattr(m, attr) is not None:
                    setattr(cur, attr, getattr(m, attr))
    return list(by_id.values())
