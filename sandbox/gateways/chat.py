"""Chat completions (every profile), text completions (aiproxy) and responses (aicredits).

Tool calls (the profiles that document tools: aicredits, openai), chosen deterministically from the
prompt: each line of the last user message of the form ``call <name> <arguments>`` (e.g.
``call generate_image {"prompt": "a red fox"}``) makes the model call ``<name>`` (when the request
offers that function) with ``<arguments>`` sent verbatim, so a test can send bad JSON or arguments that
break the schema; no arguments: ones filled from the function's schema. Several lines: several calls in
one answer. Without such a line, a function whose exact name appears as a word in the prompt is called
(arguments filled from the schema). Once the last message is a tool result the model answers in text
("Tool result received: …"), unless ``emu.faults.tool_loop()`` is on: then every request that offers
tools calls one again, forever. ``tool_choice: "none"`` always answers in text.

Stream framing: ``data: {json}\\n\\n`` events; the first carries ``delta.role``; then content
pieces; then a chunk with ``finish_reason``; with ``stream_options.include_usage`` one more chunk
with ``"choices": []`` and ``usage``; then ``data: [DONE]``. With ``keepalive_comments`` a
``: PROCESSING`` comment comes before the first event and after every 5th. DigiCord/aiproxy
chunks carry ``provider`` too. Fault counters (``after_chunks``) count ``data:`` events.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

from . import answers, images
from .errors import GatewayError, error_inner
from .faults import Fault
from .models import ModelInfo
from .profiles import Profile

if TYPE_CHECKING:
    from .app import GatewayEmulator, Handler


@dataclass
class Answer:
    content: str | None
    reasoning: str | None = None  # sent as a "reasoning" field
    tool_calls: list[dict[str, str]] | None = None  # each: id, name, arguments
    finish_reason: str = "stop"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    chunk_size: int | None = None

    @property
    def usage(self) -> dict[str, Any]:
        usage: dict[str, Any] = {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                                 "total_tokens": self.prompt_tokens + self.completion_tokens}
        if self.reasoning:
            usage["completion_tokens_details"] = {"reasoning_tokens": answers.estimate_tokens(self.reasoning)}
        return usage


def truthy(value: Any) -> bool:
    """DigiCord documents ``stream`` as a string; accept ``true``/``"true"``/``1``."""
    if isinstance(value, str):
        return value.strip().lower() in {"true", "1", "yes"}
    return bool(value)


def _validate_sampling(body: dict[str, Any],
                       names: tuple[str, ...] = ("max_tokens", "max_completion_tokens")) -> int | None:
    """Check ``temperature``; return the token limit (first of ``names`` given)."""
    temp = body.get("temperature")
    if temp is not None and (isinstance(temp, bool) or not isinstance(temp, (int, float)) or not 0 <= temp <= 2):
        raise GatewayError("invalid_request", "'temperature' must be a number between 0 and 2.", param="temperature")
    for name in names:
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise GatewayError("invalid_request", f"'{name}' must be a positive integer.", param=name)
        return value
    return None


def _validate_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise GatewayError("invalid_request", "'messages' must be a non-empty array.", param="messages")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in {"system", "user", "assistant", "tool",
                                                             "developer", "function"}:
            raise GatewayError("invalid_request", f"messages[{i}] must be an object with a valid 'role'.",
                               param=f"messages[{i}]")
    return messages


def _cost(model: ModelInfo, prompt: int, completion: int) -> float:
    return (model.input_per_1m * prompt + model.output_per_1m * completion) / 1_000_000


def _build_answer(emu: "GatewayEmulator", served: ModelInfo, body: dict[str, Any],
                  messages: list[dict[str, Any]], facts: list[images.ImageFacts],
                  max_tokens: int | None) -> Answer:
    ptoks = answers.prompt_tokens(messages)
    queued = emu.pop_reply()
    if queued is not None:
        content = queued.text
        finish = "stop"
        if queued.cut_at_max_tokens and max_tokens is not None and len(content) > max_tokens * 4:
            content, finish = content[: max_tokens * 4], "length"
        reasoning = queued.reasoning
        if reasoning and served.reasoning == "think":
            content, reasoning = f"<think>{reasoning}</think>\n{content}", None
        comp = answers.estimate_tokens(content) + answers.estimate_tokens(reasoning or "")
        return Answer(content, reasoning, None, finish, ptoks, comp, queued.chunk_size)

    user_text = answers.last_user_text(messages)
    last = messages[-1]
    calls = _tool_calls(emu, body, user_text, after_tool=last.get("role") == "tool")
    if calls:
        comp = sum(answers.estimate_tokens(c["arguments"]) + 5 for c in calls)
        return Answer(None, None, calls, "tool_calls", ptoks, comp)

    if last.get("role") == "tool":
        results: list[str] = []
        for m in reversed(messages):
            if m.get("role") != "tool":
                break
            results.insert(0, answers.content_text(m.get("content")))
        text = f"Tool result received: {' | '.join(results)}"
    elif facts:
        text = " ".join(f.sentence for f in facts)
        if user_text:
            text += f' You asked: "{user_text}"'
    elif emu.demo_answers:
        text = answers.demo_reply(user_text, emu.stream_tps)
    else:
        text = answers.expected_reply(user_text)
    text = answers.apply_response_format(text, body.get("response_format"))
    finish = "stop"
    if max_tokens is not None and len(text) > max_tokens * 4:
        text, finish = text[: max_tokens * 4], "length"
    thought = answers.expected_thought(user_text) if served.reasoning else None
    reasoning = None
    content = text
    if served.reasoning == "think":
        content = f"<think>{thought}</think>\n{text}"
    elif served.reasoning == "field":
        reasoning = thought
    comp = answers.estimate_tokens(content) + answers.estimate_tokens(reasoning or "")
    return Answer(content, reasoning, None, finish, ptoks, comp)


CALL_LINE = re.compile(r"^[ \t]*call[ \t]+([A-Za-z0-9_-]{1,64})\b[ \t]*(.*)$", re.MULTILINE)
#: the profiles whose documentation describes tool calling
TOOL_PROFILES = frozenset({"aicredits", "openai"})


def _tool_calls(emu: "GatewayEmulator", body: dict[str, Any], user_text: str, *,
                after_tool: bool) -> list[dict[str, str]]:
    """The calls this answer makes (none: it answers in text); see the module docstring."""
    tools, choice = body.get("tools"), body.get("tool_choice", "auto")
    if not tools or choice == "none":
        return []
    documented = emu.profile in TOOL_PROFILES  # the others only keep the generic name-in-prompt call
    offered = {f["name"]: f for f in answers.offered_functions(tools)}
    if after_tool and not (documented and emu.faults.take_tool_loop()):
        return []
    scripted = [(m.group(1), m.group(2).strip()) for m in CALL_LINE.finditer(user_text)
                if documented and m.group(1) in offered]
    if not scripted:
        func = answers.pick_tool(tools, choice, user_text)
        if func is None and after_tool:  # looping: call something again
            func = next(iter(offered.values()))
        scripted = [(func["name"], "")] if func is not None else []
    return [{"id": "call_" + emu.new_id("")[:20], "name": name,
             "arguments": args or answers.tool_arguments(offered[name], user_text)} for name, args in scripted]


async def _answer(emu: "GatewayEmulator", request: web.Request, info: ModelInfo, body: dict[str, Any],
                  messages: list[dict[str, Any]], max_tokens: int | None) -> tuple[ModelInfo, Answer]:
    """Check the request against the model, look at its images, charge, and build the answer."""
    served = emu.served(info)
    if any(answers.image_refs(m.get("content")) for m in messages) and "vision" not in served.caps:
        raise GatewayError("unsupported_content", f"The model '{info.id}' does not support image input.",
                           param="messages", code="image_not_supported_by_model")
    if served.provider == "anthropic" and any(answers.has_audio(m.get("content")) for m in messages):
        raise GatewayError("unsupported_content", f"The model '{info.id}' does not support audio input.",
                           param="messages", code="audio_not_supported_by_model")
    ptoks = answers.prompt_tokens(messages)
    if served.context_window and served.counts_answer and ptoks + (max_tokens or 0) > served.context_window:
        if emu.context_overflow == "empty":  # a proxy hiding the server's failure: 200, no content, no usage
            return served, Answer("", prompt_tokens=0, completion_tokens=0)
        raise GatewayError("context_length", f"This model's maximum context length is {served.context_window} "
                           f"tokens. However, you requested {ptoks + (max_tokens or 0)} tokens ({ptoks} in the "
                           f"messages, {max_tokens or 0} in the completion). Please reduce the length of the "
                           "messages or completion.", param="messages")
    if served.context_window and ptoks > served.context_window:
        raise GatewayError("context_length", f"This model's maximum context length is {served.context_window} "
                           f"tokens. However, your messages resulted in {ptoks} tokens.",
                           param="messages")

    facts: list[images.ImageFacts] = []
    for ref in answers.image_refs(messages[-1].get("content")) if messages[-1].get("role") == "user" else []:
        data = await emu.fetch_image(ref)
        try:
            facts.append(await asyncio.to_thread(images.analyse, data))
        except ValueError as exc:
            raise GatewayError("invalid_request", f"Invalid image: {exc}", param="messages",
                               code="invalid_image") from None

    answer = _build_answer(emu, served, body, messages, facts, max_tokens)
    cost = _cost(served, answer.prompt_tokens, answer.completion_tokens)
    emu.charge(cost)
    emu.set_model_headers(request, info, served, cost)
    return served, answer


async def chat_completions(emu: "GatewayEmulator", request: web.Request) -> web.StreamResponse:
    body = emu.json_body(request)
    info = emu.resolve_model(body.get("model") or emu.spec.default_chat_model, "chat")
    messages = _validate_messages(body)
    max_tokens = _validate_sampling(body)
    stream = truthy(body.get("stream"))
    served, answer = await _answer(emu, request, info, body, messages, max_tokens)
    base = {"id": emu.new_id(), "object": "chat.completion", "created": int(time.time()),
            "model": emu.answer_model_name(info, served)}
    if emu.spec.provider_in_body:
        base["provider"] = served.provider
    if stream:
        opts = body.get("stream_options") or {}
        include_usage = isinstance(opts, dict) and bool(opts.get("include_usage"))
        return await _stream(emu, request, _chat_events(emu, base, answer, include_usage))

    message: dict[str, Any] = {"role": "assistant", "content": answer.content}
    if answer.reasoning:
        message["reasoning"] = answer.reasoning
    if answer.tool_calls:
        message["tool_calls"] = [{"id": tc["id"], "type": "function",
                                  "function": {"name": tc["name"], "arguments": tc["arguments"]}}
                                 for tc in answer.tool_calls]
    choice: dict[str, Any] = {"index": 0, "message": message, "finish_reason": answer.finish_reason}
    if emu.profile == "digicord":
        message["refusal"] = ""
        choice = {"logprobs": None, **choice}
    return web.json_response({**base, "choices": [choice], "usage": answer.usage})


def _chat_events(emu: "GatewayEmulator", base: dict[str, Any], answer: Answer,
                 include_usage: bool) -> list[dict[str, Any]]:
    chunk_base = {**base, "object": "chat.completion.chunk"}
    deltas: list[dict[str, Any]] = []
    by_token = emu.stream_tps > 0 and not answer.chunk_size and not emu.stream_chunk_count
    if answer.reasoning:
        deltas += [{"reasoning": p} for p in (answers.token_pieces(answer.reasoning) if by_token
                                              else answers.split_text(answer.reasoning, chunk_count=3))]
    for i, tc in enumerate(answer.tool_calls or []):
        deltas.append({"tool_calls": [{"index": i, "id": tc["id"], "type": "function",
                                       "function": {"name": tc["name"], "arguments": ""}}]})
        deltas += [{"tool_calls": [{"index": i, "function": {"arguments": p}}]}
                   for p in answers.split_text(tc["arguments"], chunk_count=3)]
    if answer.content is not None:
        deltas += [{"content": p} for p in (answers.token_pieces(answer.content) if by_token else answers.split_text(
            answer.content, chunk_size=answer.chunk_size,
            chunk_count=None if answer.chunk_size else emu.stream_chunk_count))]
    deltas[0] = {"role": "assistant", **deltas[0]}
    events = [{**chunk_base, "choices": [{"index": 0, "delta": d, "finish_reason": None}]} for d in deltas]
    events.append({**chunk_base, "choices": [{"index": 0, "delta": {}, "finish_reason": answer.finish_reason}]})
    if include_usage:
        events.append({**chunk_base, "choices": [], "usage": answer.usage})
    return events


async def _stream(emu: "GatewayEmulator", request: web.Request, events: list[dict[str, Any]]) -> web.StreamResponse:
    """Write ``events`` as SSE, applying any pending stream fault."""
    cut = emu.faults.take(("cut",), request.path)
    err = emu.faults.take(("stream_error",), request.path)
    resp = web.StreamResponse(status=200, headers={"Content-Type": "text/event-stream; charset=utf-8",
                                                   "Cache-Control": "no-cache"})
    await resp.prepare(request)
    try:
        await _write_events(emu, request, resp, events, cut, err)
    except ConnectionError:  # the client went away mid-stream
        pass
    return resp


async def _write_events(emu: "GatewayEmulator", request: web.Request, resp: web.StreamResponse,
                        events: list[dict[str, Any]], cut: Fault | None, err: Fault | None) -> None:
    keepalive = b": PROCESSING\n\n"
    if emu.keepalive_comments:
        await resp.write(keepalive)
    for sent, event in enumerate(events):
        if cut is not None and sent >= int(cut.params["after_chunks"]):
            _drop_connection(request)
            return
        if err is not None and sent >= int(err.params["after_chunks"]):
            inner = error_inner(emu.spec.error_style, GatewayError(
                "server", "The upstream provider failed while streaming the answer.", status=502))
            await resp.write(b"data: " + json.dumps({"error": inner}).encode() + b"\n\n")
            await resp.write_eof()
            return
        await resp.write(b"data: " + json.dumps(event, separators=(",", ":")).encode() + b"\n\n")
        if emu.keepalive_comments and (sent + 1) % 5 == 0:
            await resp.write(keepalive)
        if emu.chunk_delay:
            await asyncio.sleep(emu.chunk_delay)
        if emu.stream_tps > 0 and _is_piece(event):
            await emu.sleep(1 / emu.stream_tps)
    if cut is not None:  # fewer events than after_chunks: still drop before [DONE]
        _drop_connection(request)
        return
    await resp.write(b"data: [DONE]\n\n")
    await resp.write_eof()


def _is_piece(event: dict[str, Any]) -> bool:
    """Whether a stream event carries a piece of the answer (paced), rather than framing or usage."""
    for choice in event.get("choices") or []:
        delta = choice.get("delta") or {}
        if choice.get("text") or delta.get("content") or delta.get("reasoning") or delta.get("tool_calls"):
            return True
    return False


def _drop_connection(request: web.Request) -> None:
    """Close the socket mid-body: the client sees an incomplete chunked response."""
    transport = request.transport
    if transport is not None:
        transport.abort()


async def completions(emu: "GatewayEmulator", request: web.Request) -> web.StreamResponse:
    """aiproxy ``POST /v1/completions`` (``text_completion``, default ``max_tokens`` 16)."""
    body = emu.json_body(request)
    info = emu.resolve_model(body.get("model"), "completion")
    prompt = body.get("prompt")
    prompts = [prompt] if isinstance(prompt, str) else prompt
    if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) for p in prompts):
        raise GatewayError("invalid_request", "'prompt' must be a string or an array of strings.", param="prompt")
    max_tokens = _validate_sampling(body)
    max_tokens = 16 if max_tokens is None else max_tokens
    provider = body.get("provider")
    if provider is not None and provider not in {"openai", "anthropic", "google"}:
        raise GatewayError("invalid_request", f"Unknown provider '{provider}'.", param="provider")
    ptoks = sum(answers.estimate_tokens(p) for p in prompts)
    if info.context_window and ptoks + max_tokens > info.context_window:
        raise GatewayError("context_length", f"This model's maximum context length is {info.context_window} "
                           f"tokens, however you requested {ptoks + max_tokens} tokens.", param="prompt")
    choices = []
    comp = 0
    for i, p in enumerate(prompts):
        queued = emu.pop_reply()
        text = queued.text if queued else answers.expected_reply(p)
        finish = "stop"
        if (queued is None or queued.cut_at_max_tokens) and len(text) > max_tokens * 4:
            text, finish = text[: max_tokens * 4], "length"
        comp += answers.estimate_tokens(text)
        choices.append({"text": text, "index": i, "logprobs": None, "finish_reason": finish})
    cost = _cost(info, ptoks, comp)
    emu.charge(cost)
    usage = {"prompt_tokens": ptoks, "completion_tokens": comp, "total_tokens": ptoks + comp}
    base = {"id": emu.new_id("cmpl-"), "object": "text_completion", "created": int(time.time()),
            "model": info.id, "provider": info.provider}
    if not truthy(body.get("stream")):
        return web.json_response({**base, "choices": choices, "usage": usage})
    events: list[dict[str, Any]] = []
    for c in choices:
        for piece in answers.split_text(c["text"], chunk_count=emu.stream_chunk_count):
            events.append({**base, "choices": [{"text": piece, "index": c["index"], "logprobs": None,
                                                "finish_reason": None}]})
        events.append({**base, "choices": [{"text": "", "index": c["index"], "logprobs": None,
                                            "finish_reason": c["finish_reason"]}]})
    opts = body.get("stream_options") or {}
    if isinstance(opts, dict) and opts.get("include_usage"):
        events.append({**base, "choices": [], "usage": usage})
    return await _stream(emu, request, events)


def _responses_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    """Responses-API ``instructions``/``input`` as chat messages (input_image → image_url blocks)."""
    messages: list[dict[str, Any]] = []
    if isinstance(body.get("instructions"), str):
        messages.append({"role": "system", "content": body["instructions"]})
    raw = body.get("input")
    if isinstance(raw, str) and raw:
        return messages + [{"role": "user", "content": raw}]
    if not isinstance(raw, list) or not raw:
        raise GatewayError("invalid_request", "'input' must be a string or a non-empty array.", param="input")
    for item in raw:
        if not isinstance(item, dict) or item.get("role") not in {"user", "assistant", "system", "developer"}:
            raise GatewayError("invalid_request", "Each 'input' item must be a message with a role.", param="input")
        content = item.get("content")
        if isinstance(content, list):
            blocks: list[dict[str, Any]] = []
            for b in content:
                if isinstance(b, dict) and b.get("type") in {"input_text", "output_text", "text"}:
                    blocks.append({"type": "text", "text": b.get("text", "")})
                elif isinstance(b, dict) and b.get("type") == "input_image":
                    blocks.append({"type": "image_url", "image_url": {"url": b.get("image_url", "")}})
            content = blocks
        messages.append({"role": item["role"], "content": content})
    return messages


async def responses(emu: "GatewayEmulator", request: web.Request) -> web.Response:
    """aicredits ``POST /v1/responses`` ("where supported"): non-streaming text answers only."""
    body = emu.json_body(request)
    info = emu.resolve_model(body.get("model"), "chat")
    if truthy(body.get("stream")):
        raise GatewayError("invalid_request", "Streaming is not supported on /v1/responses; use "
                           "/v1/chat/completions.", param="stream")
    messages = _responses_messages(body)
    max_tokens = _validate_sampling(body, ("max_output_tokens",))
    served, answer = await _answer(emu, request, info, {"response_format": None}, messages, max_tokens)
    out: dict[str, Any] = {
        "id": "resp_" + emu.new_id("")[:24], "object": "response", "created_at": int(time.time()),
        "status": "completed" if answer.finish_reason == "stop" else "incomplete",
        "incomplete_details": None if answer.finish_reason == "stop" else {"reason": "max_output_tokens"},
        "model": emu.answer_model_name(info, served),
        "output": [{"type": "message", "id": "msg_" + emu.new_id("")[:24], "status": "completed",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": answer.content or "", "annotations": []}]}],
        "usage": {"input_tokens": answer.prompt_tokens, "output_tokens": answer.completion_tokens,
                  "total_tokens": answer.prompt_tokens + answer.completion_tokens},
    }
    return web.json_response(out)


def routes(profile: Profile) -> list[tuple[str, str, "Handler"]]:
    out: list[tuple[str, str, Handler]] = [("POST", f"{profile.base_path}/chat/completions", chat_completions)]
    if profile.name == "aiproxy":
        out.append(("POST", f"{profile.base_path}/completions", completions))
    if profile.name == "aicredits":
        out.append(("POST", f"{profile.base_path}/responses", responses))
    return out
