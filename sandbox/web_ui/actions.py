"""What a person does on the page, turned into the emulator's user actions (the same gateway events
real Discord sends): slash commands with options and attachments, autocomplete, buttons, selects,
modals, context menus and plain messages; plus the relay form, forwarded to the bot's ``/send-data``."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
from typing import TYPE_CHECKING, Any, Callable, Optional

import aiohttp
from aiohttp import web

from sandbox.discord_emulator.models import InteractionRecord

from .voice import MAX_AUDIO_BYTES, NotAudio, voice_ogg

if TYPE_CHECKING:
    from sandbox.discord_emulator import DiscordEmulator

    from .live import LiveUpdates

log = logging.getLogger(__name__)
FileSpec = tuple[str, bytes, str]
ACK_GRACE_S = 0.5
RELAY_TIMEOUT_S = 30.0
CLOSE_TIMEOUT_S = 3.0


class BadAction(Exception):
    """The page asked for something the emulator refuses (unknown command, missing option…)."""


def _text(exc: BaseException) -> str:
    return str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)


def _int(value: Any, what: str) -> int:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        raise BadAction(f"{what} must be an id, not {value!r}") from None


async def read_action(request: web.Request) -> tuple[dict[str, Any], dict[str, list[FileSpec]]]:
    """JSON body, or multipart with a ``json`` field plus files (field name = where the file goes)."""
    if request.content_type.startswith("multipart/"):
        form = await request.post()
        raw = form.get("json")
        data = json.loads(raw) if isinstance(raw, str) else {}
        files: dict[str, list[FileSpec]] = {}
        for key, value in form.items():
            if isinstance(value, web.FileField):
                blob = value.file.read()
                files.setdefault(key, []).append((value.filename, blob, value.content_type or "application/octet-stream"))
        return data, files
    try:
        data = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BadAction("the request body is not JSON") from None
    if not isinstance(data, dict):
        raise BadAction("the request body must be a JSON object")
    return data, {}


class Actions:
    """HTTP handlers of ``/api/*`` actions; every refusal is ``400 {"error": ...}``."""

    def __init__(self, emu: "DiscordEmulator", live: "LiveUpdates", relay_url: Callable[[], Optional[str]]) -> None:
        self.emu = emu
        self.live = live
        self.relay_url = relay_url
        self._tasks: set[asyncio.Task[None]] = set()
        self._http: Optional[aiohttp.ClientSession] = None

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/api/command", self._wrap(self.command)),
            web.post("/api/autocomplete", self._wrap(self.autocomplete)),
            web.post("/api/button", self._wrap(self.button)),
            web.post("/api/select", self._wrap(self.select)),
            web.post("/api/modal", self._wrap(self.modal)),
            web.post("/api/context-menu", self._wrap(self.context_menu)),
            web.post("/api/message", self._wrap(self.message)),
            web.post("/api/voice-message", self._wrap(self.voice_message)),
            web.post("/api/relay", self._wrap(self.relay)),
        ]

    async def close(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:  # bounded: each watcher ends by itself within the ack deadline anyway
            await asyncio.wait(tasks, timeout=CLOSE_TIMEOUT_S)
        if self._http is not None:
            await self._http.close()
            self._http = None

    def _wrap(self, handler: Callable[[web.Request], Any]) -> Callable[[web.Request], Any]:
        async def run(request: web.Request) -> web.StreamResponse:
            try:
                return await handler(request)
            except BadAction as exc:
                return web.json_response({"error": str(exc)}, status=400)
            except web.HTTPRequestEntityTooLarge:  # past the app's client_max_size, before any handler code
                error = f"that upload is too large: a file can be at most {MAX_AUDIO_BYTES // 2**20} MiB"
                return web.json_response({"error": error}, status=413)
            except (KeyError, ValueError, TypeError) as exc:  # the emulator's own refusals
                return web.json_response({"error": _text(exc)}, status=400)
            except asyncio.TimeoutError:
                return web.json_response({"error": "the bot is not connected yet; try again in a moment"}, status=503)

        return run

    # -- helpers --------------------------------------------------------------------------------
    def _user(self, data: dict[str, Any]) -> int:
        ref = data.get("user") or "alice"
        return self.emu.world.user(str(ref)).id

    def _channel(self, data: dict[str, Any]) -> int:
        cid = _int(data.get("channel_id") or self.emu.channel_id, "channel_id")
        if cid not in self.emu.world.channels:
            raise BadAction(f"unknown channel {cid}")
        return cid

    def _follow(self, rec: InteractionRecord, label: str) -> None:
        """Tell the page when the bot never answers (Discord: "The application did not respond")
        or answers with a modal to fill in."""

        async def watch() -> None:
            try:
                await rec.wait_acked(self.emu.interaction_ack_deadline + ACK_GRACE_S)
            except asyncio.TimeoutError:
                self.live.broadcast(
                    {"type": "notice", "level": "error", "user_id": str(rec.user_id), "channel_id": str(rec.channel_id),
                     "text": f"{label}: the application did not respond (this interaction failed)"}
                )
                return
            if rec.response_type == 9 and rec.modal:
                self.live.broadcast(
                    {"type": "modal", "user_id": str(rec.user_id), "interaction_id": str(rec.id), "modal": rec.modal}
                )

        task = asyncio.create_task(watch())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    def _accepted(rec: InteractionRecord) -> web.Response:
        return web.json_response({"interaction_id": str(rec.id)})

    # -- handlers -------------------------------------------------------------------------------
    async def command(self, request: web.Request) -> web.Response:
        """``{name: "relay key create", options: {...}, user, channel_id}``; files as ``option:<name>``."""
        data, files = await read_action(request)
        name = str(data.get("name") or "").strip().lstrip("/")
        if not name:
            raise BadAction("no command given")
        options = data.get("options") or {}
        if not isinstance(options, dict):
            raise BadAction("options must be an object")
        attachments = {key.split(":", 1)[1]: specs[0] for key, specs in files.items() if key.startswith("option:") and specs}
        rec = await self.emu.inject_slash_command(
            name, options, user=self._user(data), channel_id=self._channel(data), attachments=attachments or None
        )
        self._follow(rec, f"/{name}")
        return self._accepted(rec)

    async def autocomplete(self, request: web.Request) -> web.Response:
        data, _ = await read_action(request)
        name = str(data.get("name") or "").strip().lstrip("/")
        focused = str(data.get("focused") or "")
        options = {k: v for k, v in (data.get("options") or {}).items() if v not in (None, "") or k == focused}
        choices = await self.emu.inject_autocomplete(
            name, options, focused, user=self._user(data), channel_id=self._channel(data)
        )
        return web.json_response({"choices": choices})

    async def button(self, request: web.Request) -> web.Response:
        data, _ = await read_action(request)
        rec = await self.emu.press_button(
            _int(data.get("message_id"), "message_id"), str(data.get("custom_id")), user=self._user(data)
        )
        self._follow(rec, "Button")
        return self._accepted(rec)

    async def select(self, request: web.Request) -> web.Response:
        data, _ = await read_action(request)
        values = data.get("values") or []
        if not isinstance(values, list):
            raise BadAction("values must be a list")
        rec = await self.emu.select_menu(
            _int(data.get("message_id"), "message_id"), str(data.get("custom_id")), [str(v) for v in values],
            user=self._user(data),
        )
        self._follow(rec, "Menu")
        return self._accepted(rec)

    async def modal(self, request: web.Request) -> web.Response:
        data, _ = await read_action(request)
        opener = self.emu.interactions.get(_int(data.get("interaction_id"), "interaction_id"))
        if opener is None or not opener.modal:
            raise BadAction("that form is no longer open")
        raw = data.get("values") or {}
        if not isinstance(raw, dict):
            raise BadAction("values must be an object: input id -> text, or select id -> list of values")
        # a text input's text, or a select's chosen values (a list)
        values: dict[str, str | list[str]] = {
            str(k): [str(x) for x in v] if isinstance(v, list) else str(v) for k, v in raw.items()
        }
        rec = await self.emu.submit_modal(
            str(opener.modal.get("custom_id")), values, user=self._user(data), interaction=opener
        )
        self._follow(rec, "Form")
        return self._accepted(rec)

    async def context_menu(self, request: web.Request) -> web.Response:
        data, _ = await read_action(request)
        rec = await self.emu.inject_context_menu(
            str(data.get("name")), _int(data.get("message_id"), "message_id"), user=self._user(data)
        )
        self._follow(rec, str(data.get("name")))
        return self._accepted(rec)

    async def message(self, request: web.Request) -> web.Response:
        """A plain message (``@Gatecord`` becomes a real mention); files under ``files``."""
        data, files = await read_action(request)
        content = self.mentions(str(data.get("content") or ""))
        specs = files.get("files", [])
        if not content.strip() and not specs:
            raise BadAction("an empty message cannot be sent")
        reply_to = data.get("reply_to")
        channel_id = self._channel(data)
        if self.emu.world.channels[channel_id].is_forum:  # a new post: its first line is the title
            title, _, body = content.strip().partition("\n")
            msg = await self.emu.create_forum_post(
                channel_id, title.strip()[:100] or "New post", body.strip() or title.strip(), user=self._user(data),
                attachments=specs or None)
            return web.json_response({"message_id": str(msg.id), "thread_id": str(msg.channel_id)})
        msg = await self.emu.send_user_message(
            content,
            user=self._user(data),
            channel_id=channel_id,
            reply_to=_int(reply_to, "reply_to") if reply_to else None,
            attachments=specs or None,
        )
        return web.json_response({"message_id": str(msg.id)})

    async def voice_message(self, request: web.Request) -> web.Response:
        """One audio file under ``audio``, sent as the member's voice message (converted to Ogg/Opus
        48 kHz mono first when it is not already)."""
        data, files = await read_action(request)
        specs = files.get("audio", [])
        if len(specs) != 1:
            raise BadAction("pick one audio file to send as a voice message")
        filename, blob, _ = specs[0]  # what the browser guessed: FFmpeg decides (webm audio is video/webm)
        if len(blob) > MAX_AUDIO_BYTES:
            size, limit = math.ceil(len(blob) / 2**20 * 10) / 10, MAX_AUDIO_BYTES // 2**20  # 25.01 is not "25.0"
            raise BadAction(f"{filename} is {size:.1f} MiB: a voice message can be at most {limit} MiB")
        try:
            audio = await voice_ogg(blob)
        except NotAudio as exc:
            raise BadAction(f"{filename}: {exc}") from None
        if len(audio) > MAX_AUDIO_BYTES:
            raise BadAction(f"{filename} is too long: as a voice message it would pass Discord's 25 MiB")
        reply_to = data.get("reply_to")
        msg = await self.emu.send_user_voice_message(
            audio,
            user=self._user(data),
            channel_id=self._channel(data),
            reply_to=_int(reply_to, "reply_to") if reply_to else None,
        )
        return web.json_response({"message_id": str(msg.id)})

    def mentions(self, content: str) -> str:
        """``@name`` of a known user (username or display name) → ``<@id>``, as Discord's client does."""
        names: dict[str, int] = {}
        for user in self.emu.world.users.values():
            names[user.username.lower()] = user.id
            if user.global_name:
                names[user.global_name.lower()] = user.id
        if not names:
            return content
        pattern = re.compile(
            r"(?<![\w<])@(" + "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True)) + r")\b", re.IGNORECASE
        )
        return pattern.sub(lambda m: f"<@{names[m.group(1).lower()]}>", content)

    async def relay(self, request: web.Request) -> web.Response:
        """Forward ``{key, body}`` to the bot's ``POST /send-data`` exactly as an outside system would."""
        data, _ = await read_action(request)
        base = self.relay_url()
        if not base:
            raise BadAction("the bot's web server is not running yet")
        body = data.get("body")
        if not isinstance(body, str):
            body = json.dumps(body)
        headers = {"Content-Type": "application/json"}
        key = str(data.get("key") or "").strip()
        if key:
            headers["Authorization"] = f"Bearer {key}"
        if data.get("idempotency_key"):
            headers["Idempotency-Key"] = str(data["idempotency_key"])
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=RELAY_TIMEOUT_S))
        url = base.rstrip("/") + "/send-data"
        try:
            async with self._http.post(url, data=body.encode(), headers=headers) as resp:
                text = await resp.text()
                status = resp.status
        except aiohttp.ClientError as exc:
            return web.json_response({"status": 0, "body": f"could not reach the bot: {exc}"}, status=502)
        try:
            answer: Any = json.loads(text)
        except json.JSONDecodeError:
            answer = text
        return web.json_response({"status": status, "body": answer})
