"""Restart-proof **Solved** / **Not helpful** buttons under an auto-answer.

The ``custom_id`` carries the outcome and the answer's id (``knowledge_answers.id``); everything else is
read from the database, so the buttons work after a restart. A press goes to the handler the auto-answer
cog attached to the service (``bot.auto_answer.buttons``); bot/ never imports the cog.
"""

from __future__ import annotations

import re
from typing import Any, Protocol

import discord

from bot.auto_answer.outcomes import OUTCOMES, Outcome
from bot.rendering import limits as discord_limits
from bot.rendering.replies import NO_MENTIONS

__all__ = ["OutcomeButton", "custom_id", "outcome_view"]

TEMPLATE = r"kbans:(?P<outcome>solved|not_helpful):(?P<answer>[0-9]{1,19})"
LABELS: dict[Outcome, tuple[str, str]] = {"solved": ("Solved", "✅"), "not_helpful": ("Not helpful", "👎")}


class OutcomeHandler(Protocol):
    async def handle_outcome(self, interaction: discord.Interaction, answer_id: int, outcome: Outcome) -> None: ...


def custom_id(outcome: Outcome, answer_id: int) -> str:
    cid = f"kbans:{outcome}:{answer_id}"
    assert len(cid) <= discord_limits.CUSTOM_ID
    return cid


class OutcomeButton(discord.ui.DynamicItem[discord.ui.Button], template=TEMPLATE):
    def __init__(self, outcome: Outcome, answer_id: int, *, chosen: bool = False) -> None:
        label, emoji = LABELS[outcome]
        style = discord.ButtonStyle.success if chosen else discord.ButtonStyle.secondary
        super().__init__(discord.ui.Button(label=label, emoji=emoji, style=style,
                                           custom_id=custom_id(outcome, answer_id)))
        self.outcome: Outcome = outcome
        self.answer_id = answer_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> OutcomeButton:
        outcome: Outcome = "solved" if match["outcome"] == "solved" else "not_helpful"
        return cls(outcome, int(match["answer"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        service = getattr(interaction.client, "auto_answer", None)
        handler: OutcomeHandler | None = getattr(service, "buttons", None)
        if handler is None:
            await interaction.response.send_message("Answer feedback is not available right now.", ephemeral=True,
                                                    allowed_mentions=NO_MENTIONS)
            return
        await handler.handle_outcome(interaction, self.answer_id, self.outcome)


def outcome_view(answer_id: int, chosen: Outcome | None = None) -> discord.ui.View:
    """Solved and Not helpful; the chosen one (if any) is green. Both stay pressable: a later press
    changes the outcome."""
    view = discord.ui.View(timeout=None)
    for outcome in OUTCOMES:
        view.add_item(OutcomeButton(outcome, answer_id, chosen=outcome == chosen))
    return view
