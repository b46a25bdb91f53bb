"""The websocket gateway: HELLO, heartbeats, IDENTIFY → READY + GUILD_CREATE, RESUME, dispatch."""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Optional

from aiohttp import WSMsgType, web

from . import limits as L
from .jsoncodec import dumps_str
from .snowflake import shard_of

if TYPE_CHECKING:
    from .server import DiscordEmulator

log = logging.getLogger(__name__)

DISPATCH, HEARTBEAT, IDENTIFY, PRESENCE, VOICE, RESUME, RECONNECT, REQUEST_MEMBERS, INVALID_SESSION, HELLO, HEARTBEAT_ACK = (
    0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 11,
)
INTENT_GUILD_MESSAGES = 1 << 9
INTENT_MESSAGE_CONTENT = 1 << 15
INTENT_DIRECT_MESSAGES = 1 << 12
RENOTIFY_DELAYS = (0.02, 0.1, 0.5)
RENOTIFY_COALESCE_S = 0.001
MESSAGE_EVENTS = {"MESSAGE_CREATE", "MESSAGE_UPDATE", "MESSAGE_DELETE"}
GUILD_ID_IS_ID = {"GUILD_CREATE", "GUILD_UPDATE", "GUILD_DELETE"}  # other events carry ``guild_id``
INVALID_SHARD, SHARDING_REQUIRED = 4010, 4011


@dataclass
class IdentifyRecord:
    """One IDENTIFY the gateway accepted. ``at`` is read from ``Gateway.clock`` (monotonic by default);
    ``bucket`` is ``shard_id % max_concurrency``: Discord allows one IDENTIFY per bucket every 5 s."""

    shard_id: int
    shard_count: int
    at: float
    bucket: int
    session_id: str


@dataclass
class GatewaySession:
    session_id: str
    intents: int
    shard: Optional[list[int]] = None
    seq: int = 0
    ws: Optional[web.WebSocketResponse] = None
    buffer: collections.deque = field(default_factory=lambda: collections.deque(maxlen=L.RESUME_BUFFER_EVENTS))
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    ready: bool = False
    identified_count: int = 1
    resumed_count: int = 0
    heartbeats: int = 0
    presence: Optional[dict[str, Any]] = None

    def holds(self, guild_id: Optional[int]) -> bool:
        """Whether Discord would send this guild's events here (``None``: a DM, which goes to shard 0)."""
        if self.shard is None:
            return True  # no shard in IDENTIFY is shard [0, 1]: everything
        shard_id, count = self.shard
        return shard_id == (0 if guild_id is None else shard_of(guild_id, count))


class Gateway:
    """Serves ``GET /gateway``; keeps sessions across disconnects so RESUME can replay events."""

    def __init__(self, emu: "DiscordEmulator") -> None:
        self.emu = emu
        self.sessions: dict[str, GatewaySession] = {}
        self.heartbeat_interval_ms = L.HEARTBEAT_INTERVAL_MS
        self.identify_payloads: list[dict[str, Any]] = []  # token removed
        self.identifies: list[IdentifyRecord] = []  # every accepted IDENTIFY, in order
        self.clock: Callable[[], float] = time.monotonic  # the time IdentifyRecord.at is read from
        #: close a session that would hold more guilds than this with 4011 (None: never)
        self.guilds_per_shard_limit: Optional[int] = None
        self._sockets: set[web.WebSocketResponse] = set()
        self._renotified_at = float("-inf")

    # -- helpers ---------------------------------------------------------------------------
    @property
    def ready_sessions(self) -> list[GatewaySession]:
        return [s for s in self.sessions.values() if s.ready and s.ws is not None and not s.ws.closed]

    async def _send(self, ws: web.WebSocketResponse, payload: dict[str, Any]) -> None:
        try:
            await ws.send_str(dumps_str(payload))
        except (ConnectionResetError, RuntimeError) as exc:  # peer went away
            log.debug("gateway send failed: %s", exc)

    async def _dispatch_to(self, session: GatewaySession, event: str, data: dict[str, Any]) -> None:
        async with session.lock:
            session.seq += 1
            payload = {"op": DISPATCH, "t": event, "s": session.seq, "d": data}
            session.buffer.append(payload)
            if session.ws is not None and not session.ws.closed:
                await self._send(session.ws, payload)

    def _filter(self, session: GatewaySession, event: str, data: dict[str, Any]) -> Optional[dict[str, Any]]:
        """Apply intents: GUILD_MESSAGES gates message events; without MESSAGE_CONTENT, content is
        blanked except for the bot's own messages and messages that mention it."""
        if event not in MESSAGE_EVENTS:
            return data
        if data.get("guild_id") and not session.intents & INTENT_GUILD_MESSAGES:
            return None
        if not data.get("guild_id") and not session.intents & INTENT_DIRECT_MESSAGES:
            return None
        # Content is always there in DMs (Discord: MESSAGE_CONTENT does not apply to them).
        if event == "MESSAGE_DELETE" or session.intents & INTENT_MESSAGE_CONTENT or not data.get("guild_id"):
            return data
        bot_id = str(self.emu.bot_user_id)
        author = (data.get("author") or {}).get("id")
        mentioned = any(m.get("id") == bot_id for m in data.get("mentions") or [])
        if author == bot_id or mentioned:
            return data
        return dict(data, content="", embeds=[], attachments=[], components=[])

    @staticmethod
    def event_guild(event: str, data: dict[str, Any]) -> Optional[int]:
        """The guild an event belongs to (``None``: not a guild's, e.g. a DM)."""
        raw = data.get("id") if event in GUILD_ID_IS_ID else data.get("guild_id")
        return int(raw) if raw is not None else None

    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        """Send a DISPATCH to every identified session that holds the event's guild, as Discord routes
        them: shard ``(guild_id >> 22) % count``, DMs to shard 0 (buffered for sessions awaiting RESUME)."""
        if not self.emu.bot_receives(event, data):
            self.renotify()
            return
        guild_id = self.event_guild(event, data)
        for session in list(self.sessions.values()):
            if not session.ready or not session.holds(guild_id):
                continue
            filtered = self._filter(session, event, data)
            if filtered is not None:
                await self._dispatch_to(session, event, filtered)
        self.renotify()

    def renotify(self) -> None:
        """Wake waiters now and again shortly after, once the bot has had time to process the event,
        so ``emu.wait_for`` predicates over bot-side state (its cache, its database) are re-checked.

        The later wake-ups are asked for at most once per RENOTIFY_COALESCE_S: a burst of events
        and requests (200 interactions, each with its callback and MESSAGE_CREATE) would otherwise
        spend a few percent of the emulator's CPU re-arming the same three timers."""
        signal = self.emu.signal
        signal.changed()
        now = time.monotonic()
        if now - self._renotified_at < RENOTIFY_COALESCE_S:
            return
        self._renotified_at = now
        for delay in RENOTIFY_DELAYS:
            signal.changed_later(delay)

    async def drop_connections(self, code: int = 4000) -> int:
        """Close every socket with ``code`` (4000 lets discord.py RESUME); returns how many."""
        count = 0
        for session in self.sessions.values():
            if session.ws is not None and not session.ws.closed:
                await session.ws.close(code=code)
                session.ws = None
                count += 1
        return count

    async def request_reconnect(self) -> int:
        """Send op 7 RECONNECT to every connected session (discord.py then reconnects and RESUMEs)."""
        count = 0
        for session in self.ready_sessions:
            assert session.ws is not None
            await self._send(session.ws, {"op": RECONNECT, "d": None, "s": None, "t": None})
            count += 1
        return count

    async def close(self) -> None:
        for ws in list(self._sockets):
            await ws.close(code=1001)

    # -- the socket ------------------------------------------------------------------------
    async def handle(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=0, autoping=True)
        await ws.prepare(request)
        self._sockets.add(ws)
        session: Optional[GatewaySession] = None
        try:
            await self._send(ws, {"op": HELLO, "d": {"heartbeat_interval": self.heartbeat_interval_ms}, "s": None, "t": None})
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    if msg.type == WSMsgType.BINARY:
                        await ws.close(code=4002, message=b"Decode error")
                    continue
                try:
                    packet = json.loads(msg.data)
                    op = packet["op"]
                except (ValueError, KeyError, TypeError):
                    await ws.close(code=4002, message=b"Decode error")
                    break
                data = packet.get("d")
                if op == HEARTBEAT:
                    if session is not None:
                        session.heartbeats += 1
                    await self._send(ws, {"op": HEARTBEAT_ACK, "d": None, "s": None, "t": None})
                elif op == IDENTIFY:
                    if session is not None:
                        await ws.close(code=4005, message=b"Already authenticated")
                        break
                    session = await self._identify(ws, data or {})
                    if session is None:
                        break
                elif op == RESUME:
                    if session is not None:
                        await ws.close(code=4005, message=b"Already authenticated")
                        break
                    session = await self._resume(ws, data or {})
                    if session is None and ws.closed:
                        break
                elif session is None:
                    await ws.close(code=4003, message=b"Not authenticated")
                    break
                elif op == PRESENCE:
                    session.presence = data
                elif op == REQUEST_MEMBERS:
                    await self._members_chunk(session, data or {})
                elif op == VOICE:
                    pass
                else:
                    await ws.close(code=4001, message=b"Unknown opcode")
                    break
        finally:
            self._sockets.discard(ws)
            if session is not None and session.ws is ws:
                session.ws = None
            self.emu.signal.changed()
        return ws

    def _token_ok(self, token: Any) -> bool:
        if not isinstance(token, str):
            return False
        token = token[4:] if token.startswith("Bot ") else token
        return secrets.compare_digest(token.encode(), self.emu.token.encode())

    async def _identify(self, ws: web.WebSocketResponse, data: dict[str, Any]) -> Optional[GatewaySession]:
        if not self._token_ok(data.get("token")):
            await ws.close(code=4004, message=b"Authentication failed.")
            return None
        intents = data.get("intents")
        if not isinstance(intents, int):
            await ws.close(code=4013, message=b"Invalid intent(s).")
            return None
        shard = data.get("shard")
        if shard is not None and not _valid_shard(shard):
            await ws.close(code=INVALID_SHARD, message=b"Invalid shard.")
            return None
        emu = self.emu
        session = GatewaySession(session_id=secrets.token_hex(16), intents=intents, shard=shard, ws=ws)
        guild_ids = [g for g in emu.world.guilds if session.holds(g) and emu.bot_is_member(g)]
        if self.guilds_per_shard_limit is not None and len(guild_ids) > self.guilds_per_shard_limit:
            await ws.close(code=SHARDING_REQUIRED, message=b"Sharding required.")
            return None
        self.identify_payloads.append({k: v for k, v in data.items() if k != "token"})
        shard_id, count = shard if shard is not None else (0, 1)
        self.identifies.append(IdentifyRecord(shard_id=shard_id, shard_count=count, at=self.clock(),
                                              bucket=shard_id % emu.max_concurrency, session_id=session.session_id))
        self.sessions[session.session_id] = session
        ready = {
            "v": 10,
            "user": dict(emu.world.users[emu.bot_user_id].payload(), verified=True, mfa_enabled=False, email=None),
            "guilds": [{"id": str(g), "unavailable": True} for g in guild_ids],
            "session_id": session.session_id,
            "session_type": "normal",
            "resume_gateway_url": emu.gateway_url,
            "application": {"id": str(emu.application_id), "flags": emu.application_flags},
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": ["us-east"],
            "user_settings": {},
            "auth": {},
        }
        if session.shard is not None:
            ready["shard"] = session.shard
        session.ready = True
        await self._dispatch_to(session, "READY", ready)
        for guild_id in guild_ids:
            await self._dispatch_to(session, "GUILD_CREATE", emu.world.guild_create_payload(guild_id))
        emu.signal.changed()
        return session

    async def _resume(self, ws: web.WebSocketResponse, data: dict[str, Any]) -> Optional[GatewaySession]:
        if not self._token_ok(data.get("token")):
            await ws.close(code=4004, message=b"Authentication failed.")
            return None
        session = self.sessions.get(str(data.get("session_id")))
        seq = data.get("seq")
        if session is None or not isinstance(seq, int):
            await self._send(ws, {"op": INVALID_SESSION, "d": False, "s": None, "t": None})
            return None
        async with session.lock:
            session.ws = ws
            session.resumed_count += 1
            missed = [p for p in session.buffer if p["s"] > seq]
            for payload in missed:
                await self._send(ws, payload)
        await self._dispatch_to(session, "RESUMED", {})
        self.emu.signal.changed()
        return session

    async def _members_chunk(self, session: GatewaySession, data: dict[str, Any]) -> None:
        world = self.emu.world
        guild_id = int(data.get("guild_id", 0))
        if not self.emu.bot_is_member(guild_id) or not session.holds(guild_id):
            return
        wanted = data.get("user_ids")
        query = (data.get("query") or "").lower()
        members = []
        for uid in world.guilds[guild_id].members:
            if wanted is not None and str(uid) not in {str(w) for w in (wanted if isinstance(wanted, list) else [wanted])}:
                continue
            if query and not world.users[uid].username.lower().startswith(query):
                continue
            members.append(world.member_payload(guild_id, uid))
        chunk: dict[str, Any] = {"guild_id": str(guild_id), "members": members, "chunk_index": 0, "chunk_count": 1}
        if data.get("nonce") is not None:
            chunk["nonce"] = data["nonce"]
        await self._dispatch_to(session, "GUILD_MEMBERS_CHUNK", chunk)


def _valid_shard(shard: Any) -> bool:
    """``[shard_id, shard_count]`` with ``0 <= shard_id < shard_count`` (anything else: 4010 Invalid shard)."""
    return (
        isinstance(shard, list) and len(shard) == 2 and all(type(x) is int for x in shard)
        and 0 <= shard[0] < shard[1]
    )
