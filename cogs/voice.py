"""Voice: ``/speak``, and the message commands "Read aloud" and "Transcribe".

A Discord adapter only: options in → ``bot.voice`` (bot/voice/service.py owns the work) → Discord
out. Each command is registered only when the gateway offers what it needs: /speak and Read aloud
need speech, Transcribe needs transcriptions (a gateway without audio shows none of them).
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.app.factory import GatecordBot
from bot.budgets.rules import Requester
from bot.media.presenter import upload_limit
from bot.rendering import limits
from bot.rendering.errors import user_error_message
from bot.rendering.replies import ERROR_PREFIX, reply_privately
from bot.rendering.text import truncate
from bot.voice.errors import NoAudio, NothingToSay
from bot.voice.intake import audio_inputs
from bot.voice.sender import InteractionVoiceTarget
from bot.voice.text import message_text
from cogs._installs import everywhere
from cogs._model_choices import last_gateway_for

log = logging.getLogger(__name__)

READ_ALOUD = "Read aloud"
TRANSCRIBE = "Transcribe"
#: Discord's longest string option
SPEAK_MAX_CHARS = 6000
MAX_VOICE_CHOICES = 25
TRANSCRIPT_PREFIX = "🎙️ "


def speak_command(cog: Speaking, voices: Sequence[str]) -> app_commands.Command[Any, Any, None]:
    """``/speak text [voice]``, its voice choices the gateway's voices (free text when it lists none)."""

    async def speak(interaction: discord.Interaction, text: app_commands.Range[str, 1, SPEAK_MAX_CHARS],
                    voice: str | None = None) -> None:
        await cog.speak(interaction, text, voice)

    if voices:
        choices = [app_commands.Choice(name=v, value=v) for v in voices[:MAX_VOICE_CHOICES]]
        speak = app_commands.choices(voice=choices)(speak)
    speak = app_commands.describe(text="What to say", voice="The voice to speak with")(speak)
    return everywhere(app_commands.Command(name="speak", description="Say something as a voice message",
                                           callback=speak))


class Speaking(commands.Cog):
    """/speak and Read aloud: a voice message through the interaction's follow-up."""

    def __init__(self, bot: GatecordBot) -> None:
        self.bot = bot
        self.speak_command = speak_command(self, bot.voice.voices)
        self.read_menu = everywhere(app_commands.ContextMenu(name=READ_ALOUD, callback=self.read_aloud))

    async def cog_load(self) -> None:
        self.bot.tree.add_command(self.speak_command)
        self.bot.tree.add_command(self.read_menu)

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self.speak_command.name)
        self.bot.tree.remove_command(self.read_menu.name, type=self.read_menu.type)

    async def speak(self, interaction: discord.Interaction, text: str, voice: str | None) -> None:
        await self._say(interaction, text, voice)

    async def read_aloud(self, interaction: discord.Interaction, message: discord.Message) -> None:
        """The message command: the message's text (and its embeds') as a voice message in the channel."""
        text = message_text(message)
        if not text:
            await reply_privately(interaction, NothingToSay().user_message())
            return
        await self._say(interaction, text, None)

    async def _say(self, interaction: discord.Interaction, text: str, voice: str | None) -> None:
        """Speak ``text``; refusals before the gateway is asked (budget, no speech) are private, the
        command defers (publicly) only once the budget is held."""
        service = self.bot.voice
        try:
            async with self.bot.chat.tracked():  # a restart lets it finish (bot.drain)
                clip = await service.speak(
                    Requester.from_interaction(interaction), text, voice, upload_limit=upload_limit(interaction),
                    on_accepted=lambda: interaction.response.defer(thinking=True),
                )
                target = InteractionVoiceTarget(interaction.application_id, interaction.token)
                await service.send(target, clip)
        except Exception as exc:
            gateway = last_gateway_for(interaction)
            await _tell(interaction, exc, model=service.speech_model_on(gateway), gateway=gateway)


class Transcribing(commands.Cog):
    """Transcribe: the words of a voice message or audio file, privately."""

    def __init__(self, bot: GatecordBot) -> None:
        self.bot = bot
        self.menu = everywhere(app_commands.ContextMenu(name=TRANSCRIBE, callback=self.transcribe))

    async def cog_load(self) -> None:
        self.bot.tree.add_command(self.menu)

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self.menu.name, type=self.menu.type)

    async def transcribe(self, interaction: discord.Interaction, message: discord.Message) -> None:
        audios = audio_inputs(message)
        if not audios:
            await reply_privately(interaction, NoAudio().user_message())
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        service = self.bot.voice
        try:
            async with self.bot.chat.tracked():  # a restart lets it finish (bot.drain)
                heard = await service.transcribe(Requester.from_interaction(interaction), audios[0])
        except Exception as exc:
            gateway = last_gateway_for(interaction)
            await _tell(interaction, exc, model=service.transcription_model_on(gateway), gateway=gateway)
            return
        more = f"\n-# Only the first of {len(audios)} audio files was transcribed." if len(audios) > 1 else ""
        if not heard.text:
            await reply_privately(interaction, f"{TRANSCRIPT_PREFIX}I heard no words in that audio.{more}")
            return
        room = limits.MESSAGE_CONTENT - len(TRANSCRIPT_PREFIX) - len(more)
        shown = TRANSCRIPT_PREFIX + truncate(heard.text, room) + more
        file = None
        if len(heard.text) > room:  # the whole transcript as a file too
            file = discord.File(io.BytesIO(heard.text.encode("utf-8")), filename="transcript.txt")
        await reply_privately(interaction, shown, file=file)


async def _tell(interaction: discord.Interaction, exc: Exception, *, model: str, gateway: Any = None) -> None:
    """The refusal or failure as one sentence, privately (a command that already deferred publicly shows
    it in place of its "thinking…" message); ``gateway``: the one that served (a guild's own says so)."""
    try:
        await reply_privately(interaction, ERROR_PREFIX + user_error_message(exc, model=model, gateway=gateway))
    except discord.HTTPException as failed:
        log.warning("could not tell the member why the voice command failed: %r", failed)


async def setup(bot: GatecordBot) -> None:
    # Both cogs are always loaded; their commands are global where the operator's gateway speaks (listens),
    # and guild commands of each server whose own gateway does (bot.guild_commands).
    def offers(gateway: Any, capability: str, default_model: str, operator: bool) -> bool:
        if gateway is bot.gateways.operator:
            return operator
        return bool(gateway.profile.supports(capability) and default_model)

    speaking, transcribing = Speaking(bot), Transcribing(bot)
    await bot.add_cog(speaking)
    await bot.add_cog(transcribing)
    speech: list[Any] = [speaking.speak_command, speaking.read_menu]
    bot.guild_commands.offer(
        "speech", lambda gateway: speech if offers(gateway, "speech", gateway.profile.default_speech_model,
                                                   bot.voice.can_speak) else [], every=speech)
    bot.guild_commands.offer(
        "transcription",
        lambda gateway: [transcribing.menu] if offers(gateway, "transcriptions",
                                                      gateway.profile.default_transcription_model,
                                                      bot.voice.can_listen) else [],
        every=[transcribing.menu])
