"""Push updates: watch the emulator's change signal, diff what the page shows, send it to every socket.

One watcher task per web UI. Each websocket gets its own queue and writer, so a slow browser never
holds up the others or the emulator. Updates are idempotent upserts (a message view replaces the
one with the same id), so a snapshot racing with a diff does no harm.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import TYPE_CHECKING, Any, Optional

from aiohttp import web

from .shop import shop_view
from .views import commands_view, message_view, world_view

if TYPE_CHECKING:
    from sandbox.discord_emulator import DiscordEmulator, MessageState

log = logging.getLogger(__name__)
WAIT_SLICE_S = 5.0
CLOSE_TIMEOUT_S = 3.0
TYPING_SHOWN_S = 10.0
QUEUE_MAX = 1000


def snapshot(emu: "DiscordEmulator") -> dict[str, Any]:
    """The whole state the page starts from."""
    return {
        "type": "snapshot",
        "world": world_view(emu),
        "commands": commands_view(emu),
        "messages": [message_view(emu, m) for m in emu.messages.values() if not m.deleted],
        "typing": typing_view(emu),
        "shop": shop_view(emu),
    }


def typing_view(emu: "DiscordEmulator") -> dict[str, float]:
    """Channel id -> seconds the "Gatecord is typing…" line stays (Discord shows it ~10 s, or until a post)."""
    now = time.monotonic()
    out: dict[str, float] = {}
    for channel_id, at in emu.typing:
        left = at + TYPING_SHOWN_S - now
        if left <= 0:
            continue
        posted_since = any(
            m.channel_id == channel_id and m.author_id == emu.bot_user_id and m.created_at >= at
            for m in emu.messages.values()
        )
        if not posted_since:
            out[str(channel_id)] = round(left, 2)
    return out


def _fingerprint(msg: "MessageState") -> tuple[Any, ...]:
    """Changes whenever anything the page shows of a message can have changed (every create and
    edit appends to ``edits``; reactions, threads and deletion do not)."""
    return (len(msg.edits), msg.deleted, msg.flags, len(msg.reactions), msg.thread_id, len(msg.attachments))


class Client:
    """One browser tab: an outgoing queue drained by its own writer task."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self.queue: asyncio.Queue[Optional[str]] = asyncio.Queue(QUEUE_MAX)

    def send(self, event: dict[str, Any]) -> None:
        try:
            self.queue.put_nowait(json.dumps(event))
        except asyncio.QueueFull:  # a stuck tab: drop it rather than grow without bound
            log.warning("web UI client too slow; closing its socket")
            with contextlib.suppress(asyncio.QueueFull):
                self.queue.put_nowait(None)

    async def writer(self) -> None:
        while True:
            item = await self.queue.get()
            if item is None or self.ws.closed:
                await self.ws.close()
                return
            await self.ws.send_str(item)


class LiveUpdates:
    """Diffs the emulator state after every change signal and broadcasts the differences."""

    def __init__(self, emu: "DiscordEmulator") -> None:
        self.emu = emu
        self.clients: set[Client] = set()
        self._messages: dict[str, dict[str, Any]] = {}
        self._fingerprints: dict[str, tuple[Any, ...]] = {}
        self._world: Any = None
        self._commands: Any = None
        self._shop: Any = None
        self._typing: dict[str, float] = {}
        self._task: Optional[asyncio.Task[None]] = None
        self._closing = False

    def start(self) -> None:
        self._remember_all()
        self._task = asyncio.create_task(self._watch(), name="web-ui-live")

    async def close(self) -> None:
        # A flag as well as cancel(): Python 3.11's wait_for can swallow a cancellation that races
        # with its inner wait, and the watcher must end all the same.
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._task), CLOSE_TIMEOUT_S)
            self._task = None
        for client in list(self.clients):
            client.send({"type": "bye"})
            with contextlib.suppress(asyncio.QueueFull):
                client.queue.put_nowait(None)

    def broadcast(self, event: dict[str, Any]) -> None:
        for client in list(self.clients):
            client.send(event)

    async def serve(self, request: web.Request) -> web.WebSocketResponse:
        """``GET /api/live``: a snapshot, then updates until the tab closes."""
        ws = web.WebSocketResponse(heartbeat=20)
        await ws.prepare(request)
        client = Client(ws)
        self.clients.add(client)
        client.send(snapshot(self.emu))
        writer = asyncio.create_task(client.writer())
        try:
            async for _ in ws:  # the page sends nothing that matters; actions go through HTTP
                pass
        finally:
            self.clients.discard(client)
            with contextlib.suppress(asyncio.QueueFull):
                client.queue.put_nowait(None)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer, 2)
        return ws

    # -- diffing ------------------------------------------------------------------------------
    def _remember_all(self) -> None:
        self._messages = {str(m.id): message_view(self.emu, m) for m in self.emu.messages.values()}
        self._fingerprints = {str(m.id): _fingerprint(m) for m in self.emu.messages.values()}
        self._world = world_view(self.emu)
        self._commands = commands_view(self.emu)
        self._typing = typing_view(self.emu)
        self._shop = shop_view(self.emu)

    def diff(self) -> list[dict[str, Any]]:
        """Events for everything that changed since the last call."""
        events: list[dict[str, Any]] = []
        world = world_view(self.emu)
        if world != self._world:
            self._world = world
            events.append({"type": "world", "world": world})
        commands = commands_view(self.emu)
        if commands != self._commands:
            self._commands = commands
            events.append({"type": "commands", "commands": commands})
        shop = shop_view(self.emu)
        if shop != self._shop:
            self._shop = shop
            events.append({"type": "shop", "shop": shop})
        upserts = []
        for msg in self.emu.messages.values():
            key = str(msg.id)
            fingerprint = _fingerprint(msg)
            if self._fingerprints.get(key) == fingerprint:
                continue  # unchanged since it was last sent: skip building its view
            self._fingerprints[key] = fingerprint
            view = message_view(self.emu, msg)
            if self._messages.get(key) != view:
                self._messages[key] = view
                upserts.append(view)
        if upserts:
            events.append({"type": "messages", "messages": upserts})
        typing = typing_view(self.emu)
        if set(typing) != set(self._typing):
            events.append({"type": "typing", "typing": typing})
        self._typing = typing
        return events

    async def _watch(self) -> None:
        signal = self.emu.signal
        seen_version = signal.version
        seen_typing = len(self.emu.typing)
        while not self._closing:
            with contextlib.suppress(asyncio.TimeoutError):
                await self.emu.wait_for(
                    lambda: self._closing or signal.version != seen_version or len(self.emu.typing) != seen_typing
                    or bool(self._typing),
                    timeout=WAIT_SLICE_S,
                )
            if self._closing:
                return
            seen_version = signal.version
            seen_typing = len(self.emu.typing)
            try:
                for event in self.diff():
                    self.broadcast(event)
            except Exception:  # a view bug must not stop the page from updating
                log.exception("web UI: could not compute updates")
            if self._typing:
                await asyncio.sleep(0.5)  # typing lines expire on their own; re-check at a calm pace
