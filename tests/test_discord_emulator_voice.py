"""Voice messages in the Discord emulator: accepted and refused as Discord does, through discord.py's own
HTTP client (Route + multipart form, as a bot must send them) and raw multipart posts for the error shapes."""

from __future__ import annotations

import base64
import io
import json
import math
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import av
import discord
import numpy as np
import pytest
from discord.ext import commands

from sandbox.discord_emulator import DiscordEmulator
from sandbox.discord_emulator import permissions as P
from tests.test_discord_emulator import running

TOKEN = "voice-test-token"
VOICE = 1 << 13


def encode_sine(seconds: float, *, codec: str = "libopus", freq: float = 440.0, rate: int = 48_000) -> bytes:
    """A sine whose loudness rises from silence to half scale, encoded with ``codec`` in an Ogg file."""
    n = int(seconds * rate)
    t = np.arange(n) / rate
    samples = 0.5 * np.sin(2 * math.pi * freq * t) * np.linspace(0.0, 1.0, n)
    pcm = (samples * 32767).astype(np.int16)
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="ogg") as out:
        stream = out.add_stream(codec, rate=rate, layout="mono")
        for start in range(0, n, 960):
            chunk = pcm[start : start + 960].reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(chunk, format="s16", layout="mono")
            frame.sample_rate = rate
            frame.pts = start
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


def decoded_seconds(data: bytes) -> float:
    with av.open(io.BytesIO(data), mode="r") as container:
        stream = container.streams.audio[0]
        samples = sum(frame.samples for frame in container.decode(stream))
        return samples / stream.codec_context.sample_rate


OPUS = encode_sine(1.5)
WAVEFORM = base64.b64encode(bytes(range(0, 250, 10))).decode()


def voice_payload(**extra: Any) -> dict[str, Any]:
    entry = {"id": 0, "filename": "voice-message.ogg", "duration_secs": 1.5, "waveform": WAVEFORM}
    entry.update(extra.pop("attachment", {}))
    return {"flags": VOICE, "attachments": [entry], **extra}


def voice_form(payload: dict[str, Any], files: list[tuple[str, bytes, str]] | None = None) -> list[dict[str, Any]]:
    """payload_json + files[n] as discord.py's HTTPClient.request(form=...) takes them."""
    form: list[dict[str, Any]] = [{"name": "payload_json", "value": json.dumps(payload)}]
    uploads = [("voice-message.ogg", OPUS, "audio/ogg")] if files is None else files
    for i, (filename, data, content_type) in enumerate(uploads):
        form.append({"name": f"files[{i}]", "value": data, "filename": filename, "content_type": content_type})
    return form


class VoiceBot(commands.Bot):
    def __init__(self, guild_id: int) -> None:
        intents = discord.Intents.default()
        intents.message_content = True
        super().__init__(command_prefix="!", intents=intents, guild_ready_timeout=0.1)
        self.guild_id = guild_id
        self.seen: list[discord.Message] = []
        self.errors: list[tuple[int, int]] = []  # (status, code) of refused voice follow-ups

    async def setup_hook(self) -> None:
        guild = discord.Object(self.guild_id)

        @self.tree.command(name="speak", description="Answer with a voice message", guild=guild)
        async def speak(interaction: discord.Interaction, defer: bool = True) -> None:
            if defer:
                await interaction.response.defer(thinking=True)
            else:
                await interaction.response.send_message("here it comes")
            await self._voice_followup(interaction)

        @self.tree.command(name="speak-now", description="Voice message as the interaction response", guild=guild)
        async def speak_now(interaction: discord.Interaction) -> None:
            # discord.py cannot send voice messages: the callback is sent with its Route and a form.
            route = discord.http.Route(
                "POST", "/interactions/{interaction_id}/{interaction_token}/callback",
                interaction_id=interaction.id, interaction_token=interaction.token,
            )
            await self.http.request(route, form=voice_form({"type": 4, "data": voice_payload()}))

        await self.tree.sync(guild=guild)

    async def _voice_followup(self, interaction: discord.Interaction) -> None:
        route = discord.http.Route(
            "POST",
            "/webhooks/{webhook_id}/{webhook_token}",
            webhook_id=interaction.application_id,
            webhook_token=interaction.token,
        )
        try:
            await self.http.request(route, form=voice_form(voice_payload()), params={"wait": "true"})
        except discord.HTTPException as exc:
            self.errors.append((exc.status, exc.code))

    async def on_message(self, message: discord.Message) -> None:
        self.seen.append(message)


@pytest.fixture
async def emu() -> AsyncIterator[DiscordEmulator]:
    async with DiscordEmulator(token=TOKEN) as e:
        yield e


@pytest.fixture
async def bot(emu: DiscordEmulator) -> AsyncIterator[VoiceBot]:
    async with running(emu, VoiceBot(emu.guild_id), TOKEN) as b:
        yield b


def channel_route(channel_id: int) -> discord.http.Route:
    return discord.http.Route("POST", "/channels/{channel_id}/messages", channel_id=channel_id)


Files = list[tuple[str, bytes, str]]


async def raw_post(
    emu: DiscordEmulator, path: str, payload: dict[str, Any], files: Files | None = None
) -> tuple[int, Any]:
    """Multipart as discord.py sends it, or plain JSON when there is no file."""
    form = aiohttp.FormData(quote_fields=False)
    for field in voice_form(payload, files):
        form.add_field(**field)
    body: dict[str, Any] = {"json": payload} if files == [] else {"data": form}
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{emu.api_base_url}{path}", headers={"Authorization": f"Bot {TOKEN}"}, **body) as resp:
            return resp.status, await resp.json()


# -- accepted -----------------------------------------------------------------------------------


async def test_voice_message_stored_and_returned_with_its_metadata(emu: DiscordEmulator, bot: VoiceBot) -> None:
    data = await bot.http.request(channel_route(emu.channel_id), form=voice_form(voice_payload()))
    assert data["flags"] == VOICE and data["content"] == ""
    [att] = data["attachments"]
    assert (att["duration_secs"], att["waveform"], att["content_type"]) == (1.5, WAVEFORM, "audio/ogg")
    stored = emu.messages[int(data["id"])]
    assert stored.flags == VOICE and stored.is_voice_message
    [a] = stored.attachments
    assert (a.data, a.duration_secs, a.waveform, a.content_type) == (OPUS, 1.5, WAVEFORM, "audio/ogg")
    # MESSAGE_CREATE reaches discord.py as a voice message, and the CDN serves the file as audio/ogg.
    seen = await emu.wait_for(lambda: next((m for m in bot.seen if m.id == stored.id), None), 5)
    assert seen.flags.voice and seen.attachments[0].is_voice_message()
    assert seen.attachments[0].duration == 1.5 and seen.attachments[0].waveform == base64.b64decode(WAVEFORM)
    async with aiohttp.ClientSession() as http:
        async with http.get(seen.attachments[0].url) as resp:
            assert resp.headers["Content-Type"] == "audio/ogg" and await resp.read() == OPUS


async def test_content_type_falls_back_to_the_filename(emu: DiscordEmulator, bot: VoiceBot) -> None:
    files = [("voice-message.ogg", OPUS, "application/octet-stream")]  # what discord.File sends
    data = await bot.http.request(channel_route(emu.channel_id), form=voice_form(voice_payload(), files))
    assert data["attachments"][0]["content_type"] == "audio/ogg" and data["flags"] == VOICE


async def test_interaction_followups_and_response_carry_voice_messages(emu: DiscordEmulator, bot: VoiceBot) -> None:
    deferred = await emu.inject_slash_command("speak")
    original = await deferred.wait_final()
    assert original is not None and original.is_voice_message and original.attachments[0].duration_secs == 1.5
    answered = await emu.inject_slash_command("speak", {"defer": False})
    await answered.wait_final(lambda r: r.followups)
    [followup] = answered.followups
    assert answered.content == "here it comes" and followup.is_voice_message
    assert followup.attachments[0].waveform == WAVEFORM
    direct = await emu.inject_slash_command("speak-now")
    response = await direct.wait_final()
    assert response is not None and response.is_voice_message and response.attachments[0].data == OPUS
    assert bot.errors == []


async def test_member_voice_message_reaches_discord_py_with_real_metadata(emu: DiscordEmulator, bot: VoiceBot) -> None:
    audio = encode_sine(2.4)
    first = await emu.send_user_message("before")
    msg = await emu.send_user_voice_message(audio, user="bob", reply_to=first.id)
    seen = await emu.wait_for(lambda: next((m for m in bot.seen if m.id == msg.id), None), 5)
    assert seen.flags.voice and seen.author.name == "bob" and seen.content == ""
    assert seen.reference is not None and seen.reference.message_id == first.id
    [att] = seen.attachments
    assert att.is_voice_message() and att.content_type == "audio/ogg" and att.filename == "voice-message.ogg"
    assert att.duration == pytest.approx(decoded_seconds(audio), abs=0.01) and abs(att.duration - 2.4) < 0.05
    assert att.waveform is not None and 1 <= len(att.waveform) <= 256
    assert att.waveform[0] < 30 and max(att.waveform) > 100  # the sine rises from silence
    assert await att.read() == audio


async def test_channel_webhook_voice_message(emu: DiscordEmulator, bot: VoiceBot) -> None:
    hook = emu.channel_webhooks.add(emu.channel_id, "relay")
    status, data = await raw_post(emu, f"/webhooks/{hook.id}/{hook.token}?wait=true", voice_payload())
    assert status == 200 and data["flags"] == VOICE and data["attachments"][0]["duration_secs"] == 1.5
    async with aiohttp.ClientSession() as http:
        path = f"{emu.api_base_url}/webhooks/{hook.id}/{hook.token}/messages/{data['id']}"
        async with http.patch(path, json={"content": "x"}) as resp:
            assert (resp.status, (await resp.json())["code"]) == (400, 50162)


# -- refused ------------------------------------------------------------------------------------

NOT_OPUS = encode_sine(1.0, codec="flac")
BUTTON = {"type": 2, "style": 1, "label": "x", "custom_id": "x"}
LONG_WAVEFORM = base64.b64encode(bytes(300)).decode()

REFUSALS = [
    ("content", voice_payload(content="hello"), None, 400, 50159),
    ("embeds", voice_payload(embeds=[{"title": "t"}]), None, 400, 50159),
    ("components", voice_payload(components=[{"type": 1, "components": [BUTTON]}]), None, 400, 50159),
    ("two files", voice_payload(), [("a.ogg", OPUS, "audio/ogg"), ("b.ogg", OPUS, "audio/ogg")], 400, 50160),
    ("no file", {"flags": VOICE, "content": ""}, [], 400, 50160),
    ("not audio", voice_payload(), [("notes.txt", b"hello", "text/plain")], 400, 50160),
    ("ogg but flac", voice_payload(), [("voice-message.ogg", NOT_OPUS, "audio/ogg")], 400, 50160),
    ("not ogg", voice_payload(), [("voice-message.ogg", b"ID3" + b"\x00" * 200, "audio/ogg")], 400, 50160),
    ("no duration", voice_payload(attachment={"duration_secs": None}), None, 400, 50161),
    ("no waveform", voice_payload(attachment={"waveform": None}), None, 400, 50161),
    ("no attachment entry", {"flags": VOICE}, None, 400, 50161),
    ("waveform not base64", voice_payload(attachment={"waveform": "not base64!"}), None, 400, 50161),
    ("waveform too long", voice_payload(attachment={"waveform": LONG_WAVEFORM}), None, 400, 50161),
]


@pytest.mark.parametrize(("case", "payload", "files", "status", "code"), REFUSALS, ids=[r[0] for r in REFUSALS])
async def test_refusals_have_discord_codes(
    emu: DiscordEmulator, case: str, payload: dict[str, Any], files: Files | None, status: int, code: int
) -> None:
    got_status, body = await raw_post(emu, f"/channels/{emu.channel_id}/messages", payload, files)
    assert (got_status, body["code"]) == (status, code)
    assert set(body) == {"message", "code"}
    assert not emu.channel_messages(emu.channel_id)


async def test_refusal_messages_are_discords(emu: DiscordEmulator) -> None:
    path = f"/channels/{emu.channel_id}/messages"
    additional = await raw_post(emu, path, voice_payload(content="x"))
    assert additional[1]["message"] == "Voice messages do not support additional content."
    no_file = await raw_post(emu, path, voice_payload(), [])
    assert no_file[1]["message"] == "Voice messages must have a single audio attachment."
    no_metadata = await raw_post(emu, path, {"flags": VOICE})
    assert no_metadata[1]["message"] == "Voice messages must have supporting metadata."
    emu.world.channels[emu.channel_id].voice_messages = False
    off = await raw_post(emu, path, voice_payload())
    assert off == (403, {"message": "Cannot send voice messages in this channel.", "code": 50173})


async def test_channel_setting_and_permission(emu: DiscordEmulator, bot: VoiceBot) -> None:
    emu.world.channels[emu.channel_id].voice_messages = False
    with pytest.raises(discord.Forbidden) as off:
        await bot.http.request(channel_route(emu.channel_id), form=voice_form(voice_payload()))
    assert off.value.code == 50173
    with pytest.raises(discord.Forbidden) as in_thread:  # threads follow their parent channel
        await bot.http.request(channel_route(emu.thread_id), form=voice_form(voice_payload()))
    assert in_thread.value.code == 50173
    await emu.deny_bot(emu.channel2_id, P.SEND_VOICE_MESSAGES)
    assert emu.permissions_for(emu.bot_user_id, emu.channel2_id) & P.SEND_MESSAGES
    with pytest.raises(discord.Forbidden) as denied:
        await bot.http.request(channel_route(emu.channel2_id), form=voice_form(voice_payload()))
    assert (denied.value.status, denied.value.code) == (403, 50013)
    sent = await bot.get_channel(emu.channel2_id).send("plain text still works")
    assert emu.messages[sent.id].content == "plain text still works"
    assert not any(m.is_voice_message for m in emu.messages.values())


async def test_followup_refused_without_permission(emu: DiscordEmulator, bot: VoiceBot) -> None:
    await emu.deny_bot(emu.channel_id, P.SEND_VOICE_MESSAGES)
    rec = await emu.inject_slash_command("speak", {"defer": False})
    await emu.wait_for(lambda: bot.errors, 5)
    assert bot.errors == [(403, 50013)] and rec.followups == []
    emu.world.channels[emu.channel_id].voice_messages = False
    await emu.inject_slash_command("speak", {"defer": False})
    await emu.wait_for(lambda: len(bot.errors) == 2, 5)
    assert bot.errors[1] == (403, 50173)


async def test_voice_messages_cannot_be_edited(emu: DiscordEmulator, bot: VoiceBot) -> None:
    data = await bot.http.request(channel_route(emu.channel_id), form=voice_form(voice_payload()))
    channel = bot.get_channel(emu.channel_id)
    message = await channel.fetch_message(int(data["id"]))
    with pytest.raises(discord.HTTPException) as info:
        await message.edit(content="now with text")
    assert (info.value.status, info.value.code, info.value.text) == (400, 50162, "Voice messages cannot be edited.")
    rec = await emu.inject_slash_command("speak", {"defer": False})
    await rec.wait_final(lambda r: r.followups)
    followup = rec.followups[0]
    path = f"/webhooks/{emu.application_id}/{rec.token}/messages/{followup.id}"
    async with aiohttp.ClientSession() as http:
        async with http.patch(f"{emu.api_base_url}{path}", json={"content": "x"}) as resp:
            assert resp.status == 400
            assert await resp.json() == {"message": "Voice messages cannot be edited.", "code": 50162}
    assert emu.messages[int(data["id"])].edit_count == 0 and followup.edit_count == 0
    # A text message cannot be turned into a voice message by an edit either.
    text = await channel.send("text")
    route = discord.http.Route(
        "PATCH", "/channels/{channel_id}/messages/{message_id}", channel_id=emu.channel_id, message_id=text.id
    )
    edited = await bot.http.request(route, json={"flags": VOICE})
    assert edited["flags"] == 0 and not emu.messages[text.id].is_voice_message
