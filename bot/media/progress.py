"""One job's message, edited in place at a bounded rate until the result replaces it.

Edits go through the interaction webhook while its token lives (15 min), then through the channel
(the message is the bot's own). Consecutive edits are at least ``min_interval`` (≥ 1 s, Discord's
advice for one message) apart; progress ticks that would come too soon are skipped, the final edit
waits for its turn. How often ticks come is the caller's business (``imagine.progress_interval``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import discord

from bot.rendering import limits as discord_limits
from bot.rendering.replies import NO_MENTIONS

log = logging.getLogger(__name__)

#: stop using the interaction token a little before Discord expires it
TOKEN_MARGIN = 60.0


class JobMessage:
    def __init__(
        self,
        client: discord.Client,
        *,
        channel_id: int | None,
        message_id: int | None,
        interaction: discord.Interaction | None = None,
        min_interval: float = discord_limits.MIN_EDIT_INTERVAL,
        clock: Any = time.monotonic,
    ) -> None:
        self.client = client
        self.channel_id = channel_id
        self.message_id = message_id
        self.interaction = interaction
        self.min_interval = max(min_interval, discord_limits.MIN_EDIT_INTERVAL)
        self._clock = clock
        self._opened = clock()
        self._last_edit = clock()  # the message was just sent
        self._lock = asyncio.Lock()
        self.edits = 0

    @property
    def token_alive(self) -> bool:
        return (self.interaction is not None
                and self._clock() - self._opened < discord_limits.INTERACTION_TOKEN_SECONDS - TOKEN_MARGIN)

    def mark_sent(self) -> None:
        self._last_edit = self._clock()

    async def tick(self, content: str) -> bool:
        """A progress edit: skipped (False) when the previous edit is too recent or one is in flight."""
        if self._lock.locked() or self._clock() - self._last_edit < self.min_interval:
            return False
        try:
            await self.edit(content=content)
        except discord.HTTPException as exc:
            log.info("progress edit skipped: %s", exc)
            return False
        return True

    async def edit(self, **fields: Any) -> None:
        """Edit now (waiting out ``min_interval`` since the last edit); raises on failure."""
        async with self._lock:
            wait = self.min_interval - (self._clock() - self._last_edit)
            if wait > 0:
                await asyncio.sleep(wait)
            fields.setdefault("allowed_mentions", NO_MENTIONS)
            try:
                if self.token_alive:
                    assert self.interaction is not None
                    try:
                        await self.interaction.edit_original_response(**fields)
                    except discord.HTTPException as exc:
                        if not _token_expired(exc):
                            raise
                        self.interaction = None  # Discord says the token is gone: use the channel
                        await self._partial().edit(**_rewound(fields))
                else:
                    await self._partial().edit(**fields)
            finally:
                self._last_edit = self._clock()
            self.edits += 1

    def _partial(self) -> discord.PartialMessage:
        if self.channel_id is None or self.message_id is None:
            raise RuntimeError("no message to edit")
        channel = self.client.get_partial_messageable(self.channel_id)
        return channel.get_partial_message(self.message_id)


def _token_expired(exc: discord.HTTPException) -> bool:
    """401 / 50027 Invalid Webhook Token, or 404 / 10015 Unknown Webhook: the interaction token is unusable."""
    return exc.status == 401 or exc.code in (50027, 10015)


def _rewound(fields: dict[str, Any]) -> dict[str, Any]:
    """Files were read by the failed attempt: rewind them so the retry uploads the same bytes."""
    for f in fields.get("attachments") or ():
        if isinstance(f, discord.File):
            f.reset()
    return fields
