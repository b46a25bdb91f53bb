"""Acknowledge chosen slash commands straight from the gateway event, before discord.py builds them.

Discord gives a bot 3 s to acknowledge an interaction, and members feel every 100 ms of it. In a
burst (a busy server, 200 ``/chat`` at once) discord.py handles each INTERACTION_CREATE in full
(the ``Interaction`` object, the command tree, option conversion) before the command can defer, so
the last of them is acknowledged only after all the others were built. Here a command that always
starts with a deferral registers a *policy*: given the raw event it says whether (and how
privately) to defer. The deferral is sent at once, and the rest of discord.py's handling of that
event waits until the acknowledgements in flight are out (at most ``HOLD_MAX`` seconds). The
command then finds ``interaction.response.is_done()`` already true.

An event whose policy declines (returns ``None``), whose early deferral fails, or that no policy
covers goes through discord.py unchanged, so the command acknowledges it itself as before.

The deferrals go out through their own pool of at most ``ACK_CONNECTIONS`` keep-alive
connections (bot/ack_http.py). discord.py's session has no connection limit, so a burst of 200
acknowledgements opened a new connection for nearly every one of them (a TCP handshake on each
side, and in production a TLS handshake too); a bounded pool reuses a few warm ones instead.

This wraps ``ConnectionState.parsers["INTERACTION_CREATE"]`` and repeats what discord.py's own
``parse_interaction_create`` does for application commands (discord.py is pinned to 2.7.*).
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import quote

import discord

from bot.ack_http import AckHttpError, HttpAnswer, KeepAlivePool

__all__ = ["ALREADY_ACKNOWLEDGED", "AckRefused", "EarlyAcks", "EarlyDefer", "option_value"]

log = logging.getLogger(__name__)

APPLICATION_COMMAND = 2
CHAT_INPUT = 1
DEFERRED_CHANNEL_MESSAGE = discord.InteractionResponseType.deferred_channel_message
EPHEMERAL = 64
HOLD_MAX = 0.25  # s: the longest an acknowledged event waits for the others before discord.py builds it
ALREADY_ACKNOWLEDGED = 40060  # Discord's error code for a second response to one interaction
ACK_TIMEOUT = 3.0  # s: Discord's own limit; an acknowledgement later than this is refused anyway
ACK_CONNECTIONS = 32  # keep-alive connections for deferrals (8–64 measured alike; unbounded far worse)


class AckRefused(Exception):
    """Discord answered an early deferral with an error status (the command then answers itself)."""

    def __init__(self, answer: HttpAnswer) -> None:
        try:
            code = json.loads(answer.body).get("code")
        except (ValueError, AttributeError):
            code = None
        super().__init__(f"HTTP {answer.status}" + (f", Discord code {code}" if code else ""))
        self.status = answer.status


_DEFER_PUBLIC = json.dumps({"type": DEFERRED_CHANNEL_MESSAGE.value}).encode()
_DEFER_EPHEMERAL = json.dumps({"type": DEFERRED_CHANNEL_MESSAGE.value, "data": {"flags": EPHEMERAL}}).encode()


@dataclass(frozen=True)
class EarlyDefer:
    """Defer now (``thinking``), privately or not; ``on_failed`` undoes what the policy reserved."""

    ephemeral: bool = False
    on_failed: Callable[[], None] | None = None


Policy = Callable[[dict[str, Any]], "EarlyDefer | None"]


def option_value(data: dict[str, Any], name: str) -> Any:
    """The value of a top-level option of a raw application-command event (``None`` when absent)."""
    for opt in (data.get("data") or {}).get("options") or ():
        if opt.get("name") == name:
            return opt.get("value")
    return None


@dataclass
class _Held:
    data: dict[str, Any]
    acked: bool = False
    settled: bool = False


@dataclass
class EarlyAcks:
    """Early deferrals for registered slash commands (see the module docstring)."""

    hold_max: float = HOLD_MAX
    max_connections: int = ACK_CONNECTIONS
    _pool: KeepAlivePool | None = None
    _policies: dict[str, Policy] = field(default_factory=dict)
    _held: list[_Held] = field(default_factory=list)
    _in_flight: int = 0
    _timer: asyncio.TimerHandle | None = None
    _state: Any = None
    _parse: Callable[[dict[str, Any]], None] | None = None
    acknowledged: int = 0  # early deferrals that Discord accepted (for logs and tests)

    def register(self, command: str, policy: Policy) -> None:
        """``policy(raw_event)`` → ``EarlyDefer`` to defer at once, or ``None`` to leave it to the command."""
        self._policies[command] = policy

    def unregister(self, command: str) -> None:
        self._policies.pop(command, None)

    async def close(self) -> None:
        """Close the acknowledgement connections (the bot calls this when it closes)."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def _ack_pool(self, user_agent: str) -> KeepAlivePool:
        base = discord.http.Route.BASE  # the API the bot was pointed at (bot.app.factory.apply_discord_urls)
        if self._pool is None or self._pool.base_url != base:
            if self._pool is not None:
                self._pool.close()
            self._pool = KeepAlivePool(base, user_agent=user_agent, max_connections=self.max_connections,
                                       timeout=ACK_TIMEOUT)
        return self._pool

    def install(self, state: Any) -> None:
        """Wrap discord.py's INTERACTION_CREATE parser of ``state`` (a ``ConnectionState``)."""
        if self._state is not None:
            return
        self._state = state
        self._parse = state.parsers["INTERACTION_CREATE"]
        state.parsers["INTERACTION_CREATE"] = self._on_interaction_create

    # -- the gateway event ---------------------------------------------------------------------
    def _on_interaction_create(self, data: dict[str, Any]) -> None:
        assert self._parse is not None
        decision = self._decide(data)
        if decision is None:
            self._parse(data)
            return
        held = _Held(data)
        self._held.append(held)
        self._in_flight += 1
        asyncio.get_running_loop().create_task(self._acknowledge(held, decision))

    def _decide(self, data: dict[str, Any]) -> EarlyDefer | None:
        inner = data.get("data") or {}
        if data.get("type") != APPLICATION_COMMAND or inner.get("type", CHAT_INPUT) != CHAT_INPUT:
            return None
        if self._state is None or self._state._command_tree is None:
            return None
        if self._state.http.proxy is not None:  # bot/ack_http.py speaks to Discord directly only
            return None
        policy = self._policies.get(str(inner.get("name")))
        if policy is None:
            return None
        try:
            return policy(data)
        except Exception:
            log.exception("early acknowledgement policy for /%s failed; leaving it to the command", inner.get("name"))
            return None

    async def _acknowledge(self, held: _Held, decision: EarlyDefer) -> None:
        state = self._state
        try:
            body = _DEFER_EPHEMERAL if decision.ephemeral else _DEFER_PUBLIC
            path = f"/interactions/{int(held.data['id'])}/{quote(held.data['token'], safe='')}/callback"
            # What discord.py's defer() sends, without asking for the callback resource back
            # (``with_response``): Discord answers 204, less work on both ends in a burst.
            answer = await self._ack_pool(state.http.user_agent).post_json(path, body)
            if answer.status >= 300:
                raise AckRefused(answer)
            held.acked = True
            self.acknowledged += 1
        except Exception as exc:  # the command acknowledges (or reports) it itself
            log.info("early acknowledgement of interaction %s failed (%s); the command will answer it",
                     held.data.get("id"), exc if isinstance(exc, (AckRefused, AckHttpError)) else type(exc).__name__)
            if decision.on_failed is not None:
                try:
                    decision.on_failed()
                except Exception:
                    log.exception("undoing an early acknowledgement policy failed")
        finally:
            held.settled = True
            self._in_flight -= 1
            self._schedule_release()

    def _schedule_release(self) -> None:
        loop = asyncio.get_running_loop()
        if self._in_flight == 0:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            loop.call_soon(self._release)
        elif self._timer is None:
            self._timer = loop.call_later(self.hold_max, self._release)

    def _release(self) -> None:
        """Hand every settled event to discord.py, in the order they arrived."""
        self._timer = None
        ready = [h for h in self._held if h.settled]
        if not ready:
            return
        self._held = [h for h in self._held if not h.settled]
        for held in ready:
            try:
                self._dispatch(held)
            except Exception:
                log.exception("handling interaction %s failed", held.data.get("id"))
        if self._held and self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.hold_max, self._release)

    def _dispatch(self, held: _Held) -> None:
        if not held.acked:
            assert self._parse is not None
            self._parse(held.data)
            return
        # What discord.py's parse_interaction_create does for an application command, with the
        # response already marked as deferred so the command knows it was acknowledged.
        state = self._state
        interaction = discord.Interaction(data=held.data, state=state)
        interaction.response._response_type = DEFERRED_CHANNEL_MESSAGE
        state._command_tree._from_interaction(interaction)
        state.dispatch("interaction", interaction)
