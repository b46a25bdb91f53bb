"""Chat request bodies per profile and parsing of complete (non-streamed) chat answers."""

from __future__ import annotations

from typing import Any

from .errors import InvalidRequest, InvalidResponse
from .meta import CallMeta, apply_body
from .models import ChatMessage, ChatRequest, ChatResult, Usage
from .profiles import Profile
from .reasoning import split_think

__all__ = ["chat_body", "parse_chat_answer", "content_text", "merge_tool_call_deltas"]

_RESERVED = {"model", "messages", "stream"}


def _check_image_url(url: Any, where: str) -> str:
    if not isinstance(url, str) or not url:
        raise InvalidRequest(f"{where}: image URL missing", field=where, allowed="http(s) URL or data:image/...;base64")
    if url.startswith(("http://", "https://")):
        return url
    if url.startswith("data:image/") and ";base64," in url[:80]:
        return url
    raise InvalidRequest(f"{where}: unsupported image reference", field=where,
                         allowed="http(s) URL or data:image/...;base64")


def _blocks(content: list[Any], profile: Profile, where: str) -> list[Any]:
    out: list[Any] = []
    for j, block in enumerate(content):
        if isinstance(block, dict) and block.get("type") == "image_url":
            raw = block.get("image_url")
            url = raw.get("url") if isinstance(raw, dict) else raw
            url = _check_image_url(url, f"{where}.content[{j}].image_url")
            if profile.image_block_style == "string":
                out.append({"type": "image_url", "image_url": url})
            else:
                image_url = dict(raw) if isinstance(raw, dict) else {}
                image_url["url"] = url
                out.append({"type": "image_url", "image_url": image_url})
        else:
            out.append(block)
    return out


def _message(m: ChatMessage | dict[str, Any], profile: Profile, i: int) -> dict[str, Any]:
    if isinstance(m, ChatMessage):
        d: dict[str, Any] = {"role": m.role, "content": m.content}
        if m.name is not None:
            d["name"] = m.name
        if m.tool_call_id is not None:
            d["tool_call_id"] = m.tool_call_id
        if m.tool_calls is not None:
            d["tool_calls"] = m.tool_calls
    elif isinstance(m, dict):
        d = dict(m)
    else:
        raise InvalidRequest(f"messages[{i}] is not a message", field=f"messages[{i}]")
    if not isinstance(d.get("role"), str):
        raise InvalidRequest(f"messages[{i}] has no role", field=f"messages[{i}].role",
                             allowed=["system", "user", "assistant", "tool"])
    if isinstance(d.get("content"), list):
        d["content"] = _blocks(d["content"], profile, f"messages[{i}]")
    return d


def chat_body(profile: Profile, req: ChatRequest, model: str | None, *, stream: bool) -> dict[str, Any]:
    """The request body of a chat completion for ``profile`` (validated; no I/O)."""
    if not req.messages:
        raise InvalidRequest("at least one message is needed", field="messages")
    if model is None and profile.model_required:
        raise InvalidRequest("no model given and none configured", field="model")
    if req.temperature is not None and not 0 <= req.temperature <= 2:
        raise InvalidRequest("temperature must be between 0 and 2", field="temperature", allowed="0..2")
    if req.max_tokens is not None and (not isinstance(req.max_tokens, int) or req.max_tokens < 1):
        raise InvalidRequest("max_tokens must be a positive whole number", field="max_tokens", allowed=">= 1")
    body: dict[str, Any] = {}
    if model:
        body["model"] = model
    body["messages"] = [_message(m, profile, i) for i, m in enumerate(req.messages)]
    if req.temperature is not None:
        body["temperature"] = req.temperature
    if req.max_tokens is not None:
        body["max_tokens"] = req.max_tokens
    if req.response_format is not None:
        body["response_format"] = req.response_format
    if req.tools is not None:
        body["tools"] = req.tools
    if req.tool_choice is not None:
        body["tool_choice"] = req.tool_choice
    if req.user is not None:
        body["user"] = req.user
    if stream:
        body["stream"] = True
        if profile.stream_usage:
            body["stream_options"] = {"include_usage": True}
    else:
        body["stream"] = False
    for k, v in req.extra.items():
        if k not in _RESERVED:
            body[k] = v
    return body


def content_text(content: Any) -> str:
    """Text of a message ``content`` that may be a string, None or a list of parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for p in content:
            if isinstance(p, str):
                parts.append(p)
            elif isinstance(p, dict) and isinstance(p.get("text"), str) and p.get("type", "text") in (
                    "text", "output_text"):
                parts.append(p["text"])
        return "".join(parts)
    return str(content)


def merge_tool_call_deltas(acc: dict[int, dict[str, Any]], deltas: list[Any]) -> None:
    """Accumulate streamed ``tool_calls`` deltas (by index; arguments concatenated)."""
    for d in deltas:
        if not isinstance(d, dict):
            continue
        idx = d.get("index", len(acc))
        cur = acc.get(idx)
        if cur is None:
            cur = acc[idx] = {"id": None, "type": "function", "function": {"name": "", "arguments": ""}}
        if d.get("id"):
            cur["id"] = d["id"]
        if d.get("type"):
            cur["type"] = d["type"]
        fn = d.get("function")
        if isinstance(fn, dict):
            if fn.get("name"):
                cur["function"]["name"] += fn["name"]
            if fn.get("arguments"):
                cur["function"]["arguments"] += fn["arguments"]


def reasoning_of(obj: dict[str, Any]) -> str:
    r = obj.get("reasoning_content")
    if not r:
        r = obj.get("reasoning")
    if isinstance(r, dict):  # {"content": "..."} / {"text": "..."}
        r = r.get("content") or r.get("text")
    return r if isinstance(r, str) else ""


def parse_chat_answer(data: Any, meta: CallMeta, *, error: Any = None) -> ChatResult:
    """A ``ChatResult`` from a chat (or text completion) answer body."""
    if not isinstance(data, dict):
        raise InvalidResponse("the chat answer is not a JSON object", status=meta.status,
                              request_id=meta.request_id, profile=meta.profile)
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise InvalidResponse("the chat answer has no choices", status=meta.status, request_id=meta.request_id,
                              profile=meta.profile)
    apply_body(meta, data)
    choice = choices[0]
    message = choice.get("message")
    if isinstance(message, dict):
        raw_text = content_text(message.get("content"))
        reasoning = reasoning_of(message)
        tool_calls = message.get("tool_calls") or []
    else:  # text completion
        completion_text = choice.get("text")
        raw_text = completion_text if isinstance(completion_text, str) else ""
        reasoning = ""
        tool_calls = []
    text, think = split_think(raw_text)
    if think:
        reasoning = f"{reasoning}\n{think}".strip() if reasoning else think
    return ChatResult(
        text=text,
        reasoning=reasoning,
        finish_reason=choice.get("finish_reason"),
        usage=Usage.from_dict(data.get("usage")),
        tool_calls=list(tool_calls) if isinstance(tool_calls, list) else [],
        meta=meta,
    )
