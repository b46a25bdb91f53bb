"""``ChatStream``: an async iterator of visible text deltas over an SSE chat answer.

The hot loop reads raw chunks from the socket, splits SSE lines, ``json.loads`` only ``data:``
payloads and does plain dict look-ups per chunk — no per-chunk model validation. A stream fails
(``StreamInterrupted`` carrying the partial text) when the gateway sends an error object inside the
200 stream, when the connection drops, when the gap between chunks exceeds the idle timeout, or
when the body ends without ``[DONE]``. Once text has been yielded a stream is never restarted.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import aiohttp

from .chat import content_text, merge_tool_call_deltas, parse_chat_answer, reasoning_of
from .errors import GatewayError, InvalidResponse, StreamInterrupted, error_from_payload
from .meta import CallMeta, apply_body
from .models import ChatResult, Usage
from .reasoning import ThinkSplitter
from .sse import DONE, SSEDecoder

if TYPE_CHECKING:
    from .http import Gateway

__all__ = ["ChatStream", "StreamOpener"]

#: Opens the stream (with retries/fallbacks): returns (response, meta, start time, gateway).
StreamOpener = Callable[[], Awaitable[tuple[aiohttp.ClientResponse, CallMeta, float, "Gateway"]]]

_loads = json.loads


class ChatStream:
    """Iterate for text deltas (reasoning excluded); afterwards ``result`` holds the ``ChatResult``.

    Use as ``async with client.stream_chat(req) as stream: async for delta in stream: ...`` so the
    response is closed even when the loop is left early.
    """

    __slots__ = ("_opener", "_gen", "_parts", "_reasoning", "result", "meta", "error", "_resp", "_closed")

    def __init__(self, opener: StreamOpener) -> None:
        self._opener = opener
        self._gen: AsyncIterator[str] | None = None
        self._parts: list[str] = []
        self._reasoning: list[str] = []
        self.result: ChatResult | None = None
        self.meta: CallMeta | None = None
        self.error: GatewayError | None = None
        self._resp: aiohttp.ClientResponse | None = None
        self._closed = False

    # -- public surface -------------------------------------------------------------------------
    @property
    def received_text(self) -> str:
        """The visible text received so far (all of it once the stream has finished)."""
        return "".join(self._parts)

    @property
    def received_reasoning(self) -> str:
        return "".join(self._reasoning)

    def __aiter__(self) -> AsyncIterator[str]:
        if self._gen is None:
            self._gen = self._run()
        return self._gen

    async def __aenter__(self) -> ChatStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        self._closed = True
        if self._gen is not None:
            await self._gen.aclose()  # type: ignore[attr-defined]
        if self._resp is not None:
            self._resp.close()
            self._resp = None

    async def collect(self) -> ChatResult:
        """Consume the whole stream and return the result."""
        async for _ in self:
            pass
        assert self.result is not None
        return self.result

    # -- machinery ------------------------------------------------------------------------------
    def _interrupted(self, message: str, cause: GatewayError | None, gw: Gateway | None) -> StreamInterrupted:
        err = StreamInterrupted(
            message,
            partial_text="".join(self._parts),
            partial_reasoning="".join(self._reasoning),
            cause=cause,
            profile=gw.profile.name if gw else None,
            secrets=gw.secrets if gw else (),
            request_id=self.meta.request_id if self.meta else None,
        )
        self.error = err
        return err

    async def _run(self) -> AsyncIterator[str]:
        if self._closed:
            return
        resp, meta, started, gw = await self._opener()
        self._resp = resp
        self.meta = meta
        try:
            ctype = resp.headers.get("Content-Type", "")
            if "event-stream" not in ctype and "json" in ctype:
                # The gateway answered the whole completion at once: deliver it as one delta.
                raw = await resp.read()
                try:
                    data = _loads(raw)
                except ValueError:
                    raise InvalidResponse("the gateway sent invalid JSON", status=resp.status,
                                          request_id=meta.request_id, profile=meta.profile) from None
                if isinstance(data, dict) and "error" in data and "choices" not in data:
                    raise error_from_payload(data, status=None, request_id=meta.request_id,
                                             profile=gw.profile.name, secrets=gw.secrets)
                result = parse_chat_answer(data, meta)
                meta.latency_ms = (time.perf_counter() - started) * 1000.0
                self._reasoning.append(result.reasoning)
                if result.text:
                    self._parts.append(result.text)
                    yield result.text
                self.result = result
                return
            async for delta in self._sse(resp, meta, gw, started):
                yield delta
        finally:
            if self._resp is not None:
                if self.result is not None:
                    self._resp.release()  # fully read: back to the pool
                else:
                    self._resp.close()  # abandoned or failed mid-body: never reuse the connection
                self._resp = None

    async def _sse(self, resp: aiohttp.ClientResponse, meta: CallMeta, gw: Gateway,
                   started: float) -> AsyncIterator[str]:
        decoder = SSEDecoder()
        feed = decoder.feed
        loads = _loads
        parts = self._parts
        add = parts.append
        reasoning = self._reasoning
        splitter = ThinkSplitter()
        split = splitter.feed
        tool_acc: dict[int, dict[str, Any]] = {}
        finish: str | None = None
        usage: Any = None
        done = False
        first = True
        strip_lead = False  # drop blank lines between a <think> block and the answer
        try:
            chunks = resp.content.iter_any()
            while True:
                try:
                    chunk = await chunks.__anext__()
                except StopAsyncIteration:
                    events = decoder.finish()
                    if not events:
                        break
                else:
                    events = feed(chunk)
                for event, data in events:
                    if done:
                        continue
                    if data == DONE:
                        done = True
                        continue
                    try:
                        obj = loads(data)
                    except ValueError:
                        raise self._interrupted("the gateway sent an unreadable stream chunk",
                                                InvalidResponse("invalid JSON in stream"), gw) from None
                    if type(obj) is not dict:
                        continue
                    if "error" in obj or event == "error":
                        cause = error_from_payload(obj, status=None, request_id=meta.request_id,
                                                   profile=gw.profile.name, secrets=gw.secrets)
                        raise self._interrupted(f"the gateway reported an error mid-stream: {cause.message}",
                                                cause, gw)
                    if first:
                        first = False
                        apply_body(meta, obj)
                    choices = obj.get("choices")
                    if choices:
                        ch = choices[0]
                        delta = ch.get("delta")
                        if delta is None:  # text-completion style chunk
                            text = ch.get("text")
                        else:
                            text = delta.get("content")
                            if "reasoning_content" in delta or "reasoning" in delta:
                                r = reasoning_of(delta)
                                if r:
                                    reasoning.append(r)
                            tc = delta.get("tool_calls")
                            if tc:
                                merge_tool_call_deltas(tool_acc, tc)
                        if text:
                            if type(text) is not str:
                                text = content_text(text)
                            visible, think = split(text)
                            if think:
                                reasoning.append(think)
                                strip_lead = not parts
                            if visible:
                                if strip_lead:
                                    visible = visible.lstrip("\n")
                                    if not visible:
                                        continue
                                    strip_lead = False
                                add(visible)
                                yield visible
                        fr = ch.get("finish_reason")
                        if fr:
                            finish = fr
                    u = obj.get("usage")
                    if u:
                        usage = u
        except GatewayError:
            raise
        except TimeoutError:
            raise self._interrupted("the stream stalled (no data within the idle timeout)", None, gw) from None
        except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError) as exc:
            raise self._interrupted(f"the connection dropped mid-stream ({type(exc).__name__})", None, gw) from None
        tail, think = splitter.flush()
        if think:
            reasoning.append(think)
        if tail:
            add(tail)
            yield tail
        if not done:
            raise self._interrupted("the stream ended without [DONE]", None, gw)
        meta.latency_ms = (time.perf_counter() - started) * 1000.0
        if isinstance(usage, dict):
            apply_body(meta, {"usage": usage})
        self.result = ChatResult(
            text="".join(parts),
            reasoning="".join(reasoning).strip(),
            finish_reason=finish,
            usage=Usage.from_dict(usage),
            tool_calls=[tool_acc[k] for k in sorted(tool_acc)],
            meta=meta,
        )
