"""Image generation: per-profile validation (pure, before any call), request bodies, result parsing."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import struct
from typing import Any

from .config import GatewayConfig
from .errors import InvalidRequest, InvalidResponse, Unsupported
from .models import ImageRequest, sniff_image_mime
from .profiles import ImageRules, Profile

__all__ = ["validate_image_request", "image_body", "image_items", "decode_data_url", "image_size"]


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _parse_size(size: str) -> tuple[int, int]:
    w, sep, h = size.lower().partition("x")
    if not sep or not w.strip().isdigit() or not h.strip().isdigit():
        raise InvalidRequest(f"size {size!r} is not WIDTHxHEIGHT", field="size", allowed="WIDTHxHEIGHT, e.g. 1024x1024")
    return int(w), int(h)


def _rules(profile: Profile) -> ImageRules:
    if profile.images is None:
        raise Unsupported(f"image generation is not offered by the {profile.name} gateway", profile=profile.name)
    return profile.images


def validate_image_request(profile: Profile, config: GatewayConfig | None, req: ImageRequest) -> ImageRequest:
    """Check ``req`` against the profile's rules and return it normalised (model and sizes filled in).

    Raises ``InvalidRequest`` naming the field and its allowed values, or ``Unsupported`` when the
    gateway cannot draw at all. Pure: no I/O.
    """
    rules = _rules(profile)
    if not isinstance(req.prompt, str) or not req.prompt.strip():
        raise InvalidRequest("the prompt is empty", field="prompt", allowed="non-empty text")
    model = req.model or (config.image_model if config else "") or rules.default_model
    max_n = rules.max_n_for(model)
    if not _is_int(req.n) or not 1 <= req.n <= max_n:
        raise InvalidRequest(f"n must be between 1 and {max_n} for {model or profile.name}", field="n",
                             allowed=list(range(1, max_n + 1)))
    if req.response_format not in rules.response_formats:
        raise InvalidRequest(f"response_format {req.response_format!r} is not allowed", field="response_format",
                             allowed=list(rules.response_formats))
    if req.quality is not None and req.quality not in rules.qualities:
        raise InvalidRequest(f"quality {req.quality!r} is not allowed", field="quality", allowed=list(rules.qualities))
    if req.seed is not None:
        if not rules.supports_seed:
            raise InvalidRequest(f"seed is not supported by {profile.name}", field="seed", allowed=[])
        if not _is_int(req.seed) or not 0 <= req.seed < 2**32:
            raise InvalidRequest("seed must be a whole number from 0 to 4294967295", field="seed",
                                 allowed="0..4294967295")
    if req.negative_prompt is not None and not rules.supports_negative_prompt:
        raise InvalidRequest(f"negative_prompt is not supported by {profile.name}", field="negative_prompt",
                             allowed=[])
    if req.steps is not None:
        if rules.steps_range is None:
            raise InvalidRequest(f"steps is not supported by {profile.name}", field="steps", allowed=[])
        lo, hi = rules.steps_range
        if not _is_int(req.steps) or not lo <= req.steps <= hi:
            raise InvalidRequest(f"steps must be between {lo} and {hi}", field="steps",
                                 allowed=list(range(lo, hi + 1)))

    width, height, size = req.width, req.height, req.size
    if size is not None:
        sw, sh = _parse_size(size) if size != "auto" else (None, None)
        if (width is not None and width != sw) or (height is not None and height != sh):
            raise InvalidRequest(f"size {size!r} contradicts width/height", field="size",
                                 allowed=f"{width}x{height}")
        width, height = sw, sh
    for name, v in (("width", width), ("height", height)):
        if v is not None and (not _is_int(v) or v <= 0):
            raise InvalidRequest(f"{name} must be a positive whole number", field=name, allowed="positive integers")

    if rules.style == "flux":
        width = width if width is not None else rules.default_width
        height = height if height is not None else rules.default_height
        for name, v, mult in (("width", width, rules.width_multiple), ("height", height, rules.height_multiple)):
            if v is None:
                continue
            allowed = f"multiples of {mult} from {_round_up(rules.min_side, mult)} to {rules.max_side}"
            if mult and v % mult:
                raise InvalidRequest(f"{name} {v} is not a multiple of {mult}", field=name, allowed=allowed)
            if not rules.min_side <= v <= rules.max_side:
                raise InvalidRequest(f"{name} {v} is out of range", field=name, allowed=allowed)
        size = None
    else:
        if width is not None and height is not None:
            size = f"{width}x{height}"
        elif width is not None or height is not None:
            raise InvalidRequest("give both width and height (or size)", field="size",
                                 allowed=list(rules.sizes_for(model)))
        allowed_sizes = rules.sizes_for(model)
        if size is not None and allowed_sizes and size not in allowed_sizes:
            raise InvalidRequest(f"size {size} is not available for {model or 'this model'}", field="size",
                                 allowed=list(allowed_sizes))
        if size is not None and size != "auto":
            width, height = _parse_size(size)
        else:
            width = height = None
    return dataclasses.replace(req, model=model or None, width=width, height=height, size=size)


def _round_up(v: int, mult: int) -> int:
    return v if not mult else -(-v // mult) * mult


def image_body(profile: Profile, req: ImageRequest) -> dict[str, Any]:
    """The JSON body for an already validated request."""
    rules = _rules(profile)
    body: dict[str, Any] = {"prompt": req.prompt}
    if req.model:
        body["model"] = req.model
    body["n"] = req.n
    if rules.style == "flux":
        if req.steps is not None:
            body["steps"] = req.steps
        if req.seed is not None:
            body["seed"] = req.seed
        if req.width is not None:
            body["width"] = req.width
        if req.height is not None:
            body["height"] = req.height
        if req.negative_prompt:
            body["negative_prompt"] = req.negative_prompt
    else:
        if req.size is not None:
            body["size"] = req.size
        if req.quality is not None:
            body["quality"] = req.quality
        if req.seed is not None:
            body["seed"] = req.seed
        if req.negative_prompt:
            body["negative_prompt"] = req.negative_prompt
    if rules.send_response_format:
        body["response_format"] = req.response_format
    body.update(req.extra)
    return body


def decode_data_url(url: str) -> tuple[bytes, str | None]:
    header, _, payload = url.partition(",")
    mime = header[5:].split(";", 1)[0] or None
    try:
        return base64.b64decode(payload), mime
    except (binascii.Error, ValueError):
        raise InvalidResponse("the gateway sent an undecodable data URL") from None


def image_items(payload: Any) -> list[dict[str, Any]]:
    """The generated items of an answer: ``data``/``images``/``output`` lists of objects or strings."""
    if not isinstance(payload, dict):
        raise InvalidResponse("the image answer is not a JSON object")
    items: Any = None
    for key in ("data", "images", "output", "results"):
        if isinstance(payload.get(key), list):
            items = payload[key]
            break
    if items is None:
        if any(k in payload for k in ("b64_json", "url", "image")):
            items = [payload]
        else:
            raise InvalidResponse("the image answer holds no images")
    out: list[dict[str, Any]] = []
    for item in items:
        if isinstance(item, str):
            out.append({"url": item} if item.startswith(("http://", "https://", "data:")) else {"b64_json": item})
        elif isinstance(item, dict):
            out.append(item)
    if not out:
        raise InvalidResponse("the image answer holds no images")
    return out


def image_b64(item: dict[str, Any]) -> bytes | None:
    for key in ("b64_json", "base64", "image", "b64"):
        v = item.get(key)
        if isinstance(v, str) and v:
            if v.startswith("data:"):
                return decode_data_url(v)[0]
            try:
                return base64.b64decode(v)
            except (binascii.Error, ValueError):
                raise InvalidResponse(f"the gateway sent undecodable base64 in {key!r}") from None
    return None


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from PNG/GIF/JPEG/WEBP headers, without decoding the image."""
    mime = sniff_image_mime(data)
    try:
        if mime == "image/png" and len(data) >= 24:
            return struct.unpack(">II", data[16:24])
        if mime == "image/gif" and len(data) >= 10:
            return struct.unpack("<HH", data[6:10])
        if mime == "image/webp" and len(data) >= 30:
            chunk = data[12:16]
            if chunk == b"VP8X":
                w = int.from_bytes(data[24:27], "little") + 1
                h = int.from_bytes(data[27:30], "little") + 1
                return w, h
            if chunk == b"VP8 ":
                w, h = struct.unpack("<HH", data[26:30])
                return w & 0x3FFF, h & 0x3FFF
            if chunk == b"VP8L":
                b = data[21:25]
                w = 1 + (((b[1] & 0x3F) << 8) | b[0])
                h = 1 + (((b[3] & 0xF) << 10) | (b[2] << 2) | ((b[1] & 0xC0) >> 6))
                return w, h
        if mime == "image/jpeg":
            i = 2
            n = len(data)
            while i + 9 < n:
                if data[i] != 0xFF:
                    i += 1
                    continue
                marker = data[i + 1]
                if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
                    h, w = struct.unpack(">HH", data[i + 5:i + 9])
                    return w, h
                if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
                    i += 2
                    continue
                seg = struct.unpack(">H", data[i + 2:i + 4])[0]
                i += 2 + seg
    except struct.error:
        return None
    return None
