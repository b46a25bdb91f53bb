"""The Discord emulator driven by a real discord.py client through its own HTTP and websocket code."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import io
import os
import signal
import sys
import time
from pathlib import Path
from typing import AsyncIterator, Iterator, TypeVar

import aiohttp
import discord
import pytest
import yarl
from discord import app_commands
from discord.ext import commands

from sandbox.discord_emulator import DiscordEmulator
from sandbox.discord_emulator import permissions as P

TOKEN = "test-bot-token"
REPO_ROOT = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def pointed_at(emu: DiscordEmulator) -> Iterator[None]:
    """Point discord.py at the emulator, restoring Discord's URLs afterwards."""
    saved = (discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY, discord.asset.Asset.BASE)
    discord.http.Route.BASE = emu.api_base_url
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(emu.gateway_url)
    discord.asset.Asset.BASE = emu.cdn_base_url
    try:
        yield
    finally:
        discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY, discord.asset.Asset.BASE = saved


ClientT = TypeVar("ClientT", bound=discord.Client)


@contextlib.asynccontextmanager
async def running(emu: DiscordEmulator, client: ClientT, token: str = TOKEN) -> AsyncIterator[ClientT]:
    """``client`` logged in to the emulator (as ``token``) and ready; closed afterwards."""
    with pointed_at(emu):
        task = asyncio.create_task(client.start(token))
        try:
            await asyncio.wait_for(client.wait_until_ready(), 10)
            yield client
        finally:
            await client.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 5)


class PressView(discord.ui.View):
    def __init__(self) -> None:
        super().__init__(timeout=None)

    @discord.ui.button(label="Press", custom_id="press:1", style=discord.ButtonStyle.primary)
    async def press(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
        await interaction.response.edit_message(content=f"pressed by {interaction.user.name}", view=None)


class PickView(discord.ui.View):
    def __init__(self) -> None:
        super().__init__(timeout=None)

    @discord.ui.select(custom_id="pick:1", options=[discord.SelectOption(label=x, value=x) for x in ("red", "blue")])
    async def pick(self, interaction: discord.Interaction, select: discord.ui.Select) -> None:
        await interaction.response.defer()  # type 6: deferred update of the component's message
        await interaction.edit_original_response(content=f"picked {select.values[0]}", view=None)


class NoteModal(discord.ui.Modal, title="Note"):
    text = discord.ui.TextInput(label="Text", custom_id="note:text", max_length=50)

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message(f"noted: {self.text.value}")


class FlavourModal(discord.ui.Modal, title="Flavour"):
    """A string select inside a label (discord.py 2.6+), with a default option, and a text input."""

    def __init__(self) -> None:
        super().__init__()
        self.flavour: discord.ui.Select[FlavourModal] = discord.ui.Select(
            custom_id="flavour:pick",
            options=[discord.SelectOption(label="Vanilla", value="vanilla", default=True),
                     discord.SelectOption(label="Mint", value="mint")],
        )
        self.add_item(discord.ui.Label(text="Flavour", component=self.flavour))
        self.toppings: discord.ui.Select[FlavourModal] = discord.ui.Select(
            custom_id="flavour:toppings", min_values=2, max_values=3, required=False,
            options=[discord.SelectOption(label=t, value=t) for t in ("nuts", "sprinkles", "sauce", "fudge")],
        )
        self.add_item(discord.ui.Label(text="Toppings", component=self.toppings))
        self.note: discord.ui.TextInput[FlavourModal] = discord.ui.TextInput(custom_id="flavour:note", required=False)
        self.add_item(discord.ui.Label(text="Note", component=self.note))

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message(
            f"flavour={','.join(self.flavour.values)} toppings={','.join(self.toppings.values)} note={self.note.value}")


class EmuBot(commands.Bot):
    """A small bot exercising the shapes Gatecord uses."""

    def __init__(self, guild_id: int) -> None:
        intents = discord.Intents.default()
        intents.message_content = True
        intents.members = True
        super().__init__(command_prefix="!", intents=intents, guild_ready_timeout=0.1)
        self.test_guild_id = guild_id
        self.seen_messages: list[discord.Message] = []
        self.release = asyncio.Event()  # lets a test hold the "slow" command
        self.fallback_errors: list[int] = []

    async def setup_hook(self) -> None:
        tree = self.tree

        @tree.command(name="ask", description="Ask the model")
        async def ask(interaction: discord.Interaction, prompt: str) -> None:
            await interaction.response.defer(thinking=True)
            await asyncio.sleep(0.05)
            await interaction.edit_original_response(content=f"answer: {prompt}")

        @tree.command(name="describe", description="Describe an image")
        async def describe(interaction: discord.Interaction, image: discord.Attachment, detail: int = 1) -> None:
            await interaction.response.defer()
            data = await image.read()
            await interaction.edit_original_response(
                content=f"{image.filename} {len(data)} bytes {image.content_type} detail={detail} limit={interaction.filesize_limit}"
            )

        @tree.command(name="buttons", description="Show a button")
        async def buttons(interaction: discord.Interaction) -> None:
            await interaction.response.send_message("press it", view=PressView())

        @tree.command(name="pick", description="Show a select menu")
        async def pick(interaction: discord.Interaction) -> None:
            await interaction.response.send_message("pick one", view=PickView())

        @tree.command(name="note", description="Open a modal")
        async def note(interaction: discord.Interaction) -> None:
            await interaction.response.send_modal(NoteModal())

        @tree.command(name="flavour", description="Open a modal with selects")
        async def flavour(interaction: discord.Interaction) -> None:
            await interaction.response.send_modal(FlavourModal())

        @tree.command(name="fruit", description="Pick a fruit")
        async def fruit(interaction: discord.Interaction, name: str) -> None:
            await interaction.response.send_message(f"fruit {name}")

        @fruit.autocomplete("name")
        async def fruit_auto(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
            fruits = ["apple", "apricot", "banana"]
            return [app_commands.Choice(name=f, value=f) for f in fruits if f.startswith(current)]

        @tree.command(name="steps", description="Ephemeral defer and followups")
        async def steps(interaction: discord.Interaction) -> None:
            await interaction.response.defer(ephemeral=True, thinking=True)
            await interaction.followup.send("step one")  # replaces the thinking message
            await interaction.followup.send("step two", ephemeral=True)

        @tree.command(name="slow", description="Answers after the test says so")
        async def slow(interaction: discord.Interaction) -> None:
            await interaction.response.defer()
            await self.release.wait()
            try:
                await interaction.edit_original_response(content="late answer")
            except discord.HTTPException as exc:
                self.fallback_errors.append(exc.code)
                await interaction.channel.send("late answer (posted to the channel)")

        @tree.command(name="long", description="Answers with too much text")
        async def long(interaction: discord.Interaction) -> None:
            try:
                await interaction.response.send_message("y" * 2001)
            except discord.HTTPException as exc:
                self.fallback_errors.append(exc.code)

        @tree.context_menu(name="Quote")
        async def quote(interaction: discord.Interaction, message: discord.Message) -> None:
            await interaction.response.send_message(f"quoted: {message.content}", ephemeral=True)

        relay = app_commands.Group(name="relay", description="Relay settings", default_permissions=discord.Permissions(manage_guild=True))
        key = app_commands.Group(name="key", description="Relay keys", parent=relay)

        @key.command(name="create", description="Create a relay key")
        async def key_create(interaction: discord.Interaction, label: str, channel: discord.TextChannel, owner: discord.Member) -> None:
            allowed = interaction.permissions.manage_guild
            await interaction.response.send_message(
                f"key {label} for #{channel.name} owner={owner.name} allowed={allowed}", ephemeral=True
            )

        tree.add_command(relay, guild=discord.Object(self.test_guild_id))
        await tree.sync()
        await tree.sync(guild=discord.Object(self.test_guild_id))

    async def on_message(self, message: discord.Message) -> None:
        self.seen_messages.append(message)


@pytest.fixture
async def emu() -> AsyncIterator[DiscordEmulator]:
    async with DiscordEmulator(token=TOKEN) as e:
        yield e


@pytest.fixture
async def bot(emu: DiscordEmulator) -> AsyncIterator[EmuBot]:
    async with running(emu, EmuBot(emu.guild_id)) as b:
        yield b


def last_error(emu: DiscordEmulator, status: int) -> dict:
    return next(r.response for r in reversed(emu.requests) if r.status == status)


# -- login, READY, guilds ---------------------------------------------------------------------


async def test_login_ready_and_guild_create(emu: DiscordEmulator, bot: EmuBot) -> None:
    assert bot.user is not None and bot.user.id == emu.bot_user_id
    assert bot.application_id == emu.application_id
    assert {g.id for g in bot.guilds} == {emu.guild_id, emu.guild2_id}
    guild = bot.get_guild(emu.guild_id)
    assert guild is not None and guild.member_count == 4
    assert {c.name for c in guild.text_channels} == {"general", "random"}
    thread = guild.get_thread(emu.thread_id)
    assert thread is not None and thread.parent_id == emu.channel_id
    admin = guild.get_member(emu.users["admin"].id)
    alice = guild.get_member(emu.users["alice"].id)
    assert admin is not None and admin.guild_permissions.manage_guild
    assert alice is not None and not alice.guild_permissions.manage_guild
    me = guild.me
    perms = guild.get_channel(emu.channel_id).permissions_for(me)
    assert perms.send_messages and perms.embed_links and perms.attach_files and perms.create_public_threads
    session = next(iter(emu.gateway.sessions.values()))
    assert session.intents & (1 << 15)  # message content intent reached the gateway
    assert "token" not in emu.gateway.identify_payloads[0]


async def test_commands_synced_with_schemas(emu: DiscordEmulator, bot: EmuBot) -> None:
    global_names = {c["name"] for c in emu.commands.list(None)}
    assert {"ask", "describe", "buttons", "note", "fruit", "Quote"} <= global_names
    relay, scope = emu.commands.find("relay", 1, emu.guild_id)
    assert scope == emu.guild_id
    assert relay["default_member_permissions"] == str(P.MANAGE_GUILD)
    group = relay["options"][0]
    assert (group["name"], group["type"]) == ("key", 2)
    assert [o["type"] for o in group["options"][0]["options"]] == [3, 7, 6]
    describe, _ = emu.commands.find("describe", 1, emu.guild_id)
    assert describe["options"][0]["type"] == 11
    fruit, _ = emu.commands.find("fruit", 1, None)
    assert fruit["options"][0]["autocomplete"] is True


# -- interactions -----------------------------------------------------------------------------


async def test_slash_command_defer_then_edit(emu: DiscordEmulator, bot: EmuBot) -> None:
    rec = await emu.inject_slash_command("ask", {"prompt": "hello"})
    final = await rec.wait_final(timeout=5)
    assert final is not None and final.content == "answer: hello"
    assert rec.response_type == 5
    assert rec.ack_latency is not None and rec.ack_latency < 3
    assert final.edits[0].content == "" and final.edit_count == 1
    assert not final.loading
    assert final in emu.channel_messages(emu.channel_id)


async def test_subcommand_group_with_resolved_options(emu: DiscordEmulator, bot: EmuBot) -> None:
    # alice lacks Manage Guild: real Discord would hide the command, the emulator sends it anyway.
    rec = await emu.inject_slash_command(
        "relay key create", {"label": "ci", "channel": emu.channel2_id, "owner": "bob"}, user="alice"
    )
    final = await rec.wait_final(timeout=5)
    assert final is not None and final.content == "key ci for #random owner=bob allowed=False"
    assert final.ephemeral and rec.response_type == 4
    rec2 = await emu.inject_slash_command("relay key create", {"label": "x", "channel": "general", "owner": "alice"}, user="admin")
    final2 = await rec2.wait_final(timeout=5)
    assert final2 is not None and final2.content.endswith("allowed=True")


async def test_attachment_option_served_by_cdn(emu: DiscordEmulator, bot: EmuBot) -> None:
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 100
    rec = await emu.inject_slash_command(
        "describe", {"detail": 3}, attachments={"image": ("cat.png", png, "image/png")}, attachment_size_limit=8 * 1024 * 1024
    )
    final = await rec.wait_final(timeout=5)
    assert final is not None
    assert final.content == f"cat.png {len(png)} bytes image/png detail=3 limit={8 * 1024 * 1024}"
    assert any(p.endswith("/cat.png") for p in emu.cdn.downloads)


async def test_unregistered_command_cannot_be_injected(emu: DiscordEmulator, bot: EmuBot) -> None:
    with pytest.raises(KeyError):
        await emu.inject_slash_command("nope")
    with pytest.raises(ValueError):
        await emu.inject_slash_command("ask", {})  # required option missing


async def test_button_press(emu: DiscordEmulator, bot: EmuBot) -> None:
    rec = await emu.inject_slash_command("buttons")
    msg = await rec.wait_final(timeout=5)
    assert msg is not None and msg.custom_ids() == ["press:1"]
    press = await emu.press_button(msg.id, "press:1", user="bob")
    updated = await press.wait_final(timeout=5)
    assert press.response_type == 7
    assert updated is not None and updated.id == msg.id
    assert updated.content == "pressed by bob" and updated.components == []
    with pytest.raises(ValueError):
        await emu.press_button(msg.id, "press:1")  # the button is gone


async def test_modal_roundtrip(emu: DiscordEmulator, bot: EmuBot) -> None:
    rec = await emu.inject_slash_command("note")
    await rec.wait_acked(5)
    assert rec.response_type == 9 and rec.modal is not None and rec.modal["title"] == "Note"
    with pytest.raises(ValueError):
        await emu.submit_modal(rec.modal["custom_id"], {"note:text": "x" * 51})  # over max_length
    sub = await emu.submit_modal(rec.modal["custom_id"], {"note:text": "remember milk"})
    final = await sub.wait_final(timeout=5)
    assert final is not None and final.content == "noted: remember milk"


async def test_modal_string_select_in_a_label(emu: DiscordEmulator, bot: EmuBot) -> None:
    rec = await emu.inject_slash_command("flavour")
    await rec.wait_acked(5)
    assert rec.response_type == 9 and rec.modal is not None
    label = rec.modal["components"][0]
    assert label["type"] == 18 and label["component"]["type"] == 3, "discord.py sends a label holding the select"
    cid = rec.modal["custom_id"]
    for bad in ({"flavour:pick": ["chocolate"]},  # not an option
                {"flavour:pick": ["vanilla", "mint"]},  # max_values 1
                {"flavour:pick": []},  # required
                {"flavour:toppings": ["nuts"]},  # min_values 2
                {"flavour:toppings": ["nuts", "sprinkles", "sauce", "fudge"]},  # max_values 3
                {"flavour:pick": "mint", "flavour:nope": "x"}):  # no such input
        with pytest.raises(ValueError):
            await emu.submit_modal(cid, bad)
    plain = await emu.submit_modal(cid, {})  # the default option, an optional select left empty
    shown = await plain.wait_final(timeout=5)
    assert shown is not None and shown.content == "flavour=vanilla toppings= note="
    again = await emu.inject_slash_command("flavour")  # a submitted modal is closed: open it again
    await again.wait_acked(5)
    assert again.modal is not None
    sub = await emu.submit_modal(again.modal["custom_id"], {"flavour:pick": ["mint"], "flavour:toppings": ["sauce", "nuts"],
                                       "flavour:note": "cone"})
    final = await sub.wait_final(timeout=5)
    assert final is not None and final.content == "flavour=mint toppings=sauce,nuts note=cone"
    submitted = sub.payload["data"]["components"][0]
    assert submitted["type"] == 18 and submitted["component"] == {
        "type": 3, "custom_id": "flavour:pick", "values": ["mint"], **({"id": 2} if "id" in submitted["component"] else {})}


async def test_autocomplete_and_context_menu(emu: DiscordEmulator, bot: EmuBot) -> None:
    choices = await emu.inject_autocomplete("fruit", {"name": "ap"}, focused="name")
    assert [c["value"] for c in choices] == ["apple", "apricot"]
    user_msg = await emu.send_user_message("quote me")
    rec = await emu.inject_context_menu("Quote", user_msg.id, user="bob")
    final = await rec.wait_final(timeout=5)
    assert final is not None and final.content == "quoted: quote me" and final.ephemeral


async def test_late_ack_is_unknown_interaction(emu: DiscordEmulator, bot: EmuBot) -> None:
    emu.interaction_ack_deadline = 0.0
    rec = await emu.inject_slash_command("ask", {"prompt": "slow"})
    await emu.wait_for(lambda: rec.callbacks, timeout=5)
    assert rec.callbacks[0]["status"] == 404 and not rec.acked


# -- REST validation and faults ---------------------------------------------------------------


async def test_content_over_2000_rejected(emu: DiscordEmulator, bot: EmuBot) -> None:
    channel = bot.get_channel(emu.channel_id)
    with pytest.raises(discord.HTTPException) as info:
        await channel.send("x" * 2001)
    assert info.value.status == 400 and info.value.code == 50035
    body = last_error(emu, 400)
    assert body["errors"]["content"]["_errors"][0]["code"] == "BASE_TYPE_MAX_LENGTH"
    assert emu.channel_messages(emu.channel_id) == []


async def test_embeds_over_6000_total_rejected(emu: DiscordEmulator, bot: EmuBot) -> None:
    channel = bot.get_channel(emu.channel_id)
    embeds = [discord.Embed(title="t", description="d" * 3500), discord.Embed(description="e" * 3000)]
    with pytest.raises(discord.HTTPException) as info:
        await channel.send(embeds=embeds)
    assert info.value.code == 50035
    assert last_error(emu, 400)["errors"]["embeds"]["_errors"][0]["code"] == "MAX_EMBED_SIZE_EXCEEDED"
    ok = await channel.send(embeds=[discord.Embed(title="fine", description="d" * 4000)])
    assert emu.messages[ok.id].embeds[0]["title"] == "fine"


async def test_poll_validated_stored_and_sent_back(emu: DiscordEmulator, bot: EmuBot) -> None:
    channel = bot.get_channel(emu.channel_id)
    poll = discord.Poll(question="Lunch?", duration=datetime.timedelta(hours=3))
    poll.add_answer(text="Pizza").add_answer(text="Soup")
    sent = await channel.send(poll=poll)
    stored = emu.messages[sent.id].poll
    assert stored["question"] == {"text": "Lunch?"}
    assert [a["poll_media"]["text"] for a in stored["answers"]] == ["Pizza", "Soup"]
    assert [a["answer_id"] for a in stored["answers"]] == [1, 2]
    assert sent.poll is not None and sent.poll.question == "Lunch?"  # discord.py parsed the payload
    assert [a.text for a in sent.poll.answers] == ["Pizza", "Soup"]
    too_long = discord.Poll(question="q" * 301, duration=datetime.timedelta(hours=1))
    too_long.add_answer(text="a")
    with pytest.raises(discord.HTTPException) as info:
        await channel.send(poll=too_long)
    assert info.value.code == 50035
    assert "question" in last_error(emu, 400)["errors"]["poll"]
    emu.world.set_overwrite(emu.channel_id, emu.bot_role_id, type=0, deny=1 << 49)  # no Send Polls
    with pytest.raises(discord.Forbidden) as denied:
        await channel.send(poll=poll)
    assert denied.value.code == 50013


async def test_injected_429_is_honoured(emu: DiscordEmulator, bot: EmuBot) -> None:
    emu.inject_rate_limit(f"/channels/{emu.channel_id}/messages", count=1, retry_after=0.3)
    channel = bot.get_channel(emu.channel_id)
    started = time.monotonic()
    msg = await channel.send("after the limit")
    assert time.monotonic() - started >= 0.3
    assert emu.messages[msg.id].content == "after the limit"
    assert len(emu.rate_limited) == 1 and emu.rate_limited[0].injected
    statuses = [r.status for r in emu.requests_to(f"/channels/{emu.channel_id}/messages", "POST")]
    assert statuses == [429, 200]


async def test_bucket_limit_429_has_discord_shape(emu: DiscordEmulator) -> None:
    emu.configure_bucket("message_create", 1, 5.0)
    headers = {"Authorization": f"Bot {TOKEN}"}
    url = f"{emu.api_base_url}/channels/{emu.channel_id}/messages"
    async with aiohttp.ClientSession() as http:
        async with http.post(url, json={"content": "one"}, headers=headers) as r1:
            assert r1.status == 200 and r1.headers["Content-Type"] == "application/json"
            assert r1.headers["X-RateLimit-Remaining"] == "0"
        async with http.post(url, json={"content": "two"}, headers=headers) as r2:
            body = await r2.json()
            assert r2.status == 429 and r2.headers["Via"] and r2.headers["X-RateLimit-Scope"] == "user"
            assert body["global"] is False and 0 < body["retry_after"] <= 5
    assert [m.content for m in emu.channel_messages(emu.channel_id)] == ["one"]
    assert emu.rate_limited[0].bucket == "message_create" and not emu.rate_limited[0].injected


async def test_nonce_with_enforce_nonce_deduplicates(emu: DiscordEmulator, bot: EmuBot) -> None:
    route = discord.http.Route("POST", "/channels/{channel_id}/messages", channel_id=emu.channel_id)
    payload = {"content": "relay", "nonce": "relay-123", "enforce_nonce": True, "allowed_mentions": {"parse": []}}
    first = await bot.http.request(route, json=payload)
    second = await bot.http.request(route, json=payload)
    assert first["id"] == second["id"]
    assert [m.content for m in emu.channel_messages(emu.channel_id)] == ["relay"]
    third = await bot.http.request(route, json=dict(payload, enforce_nonce=False))
    assert third["id"] != first["id"]
    assert emu.messages[int(first["id"])].allowed_mentions == {"parse": []}


async def test_multipart_upload_stored_with_bytes(emu: DiscordEmulator, bot: EmuBot) -> None:
    channel = bot.get_channel(emu.channel_id)
    data = b"hello file\n" * 10
    sent = await channel.send("see file", file=discord.File(io.BytesIO(data), filename="notes.txt"))
    stored = emu.messages[sent.id]
    assert stored.content == "see file"
    assert [(a.filename, a.data, a.content_type, a.size) for a in stored.attachments] == [
        ("notes.txt", data, "text/plain", len(data))
    ]
    assert await sent.attachments[0].read() == data  # served by the emulator's CDN
    big = discord.File(io.BytesIO(b"\x00" * (10 * 1024 * 1024 + 1)), filename="big.bin")
    with pytest.raises(discord.HTTPException) as info:
        await channel.send(file=big)
    assert info.value.status == 413 and info.value.code == 40005


async def test_user_message_with_mention_reaches_on_message(emu: DiscordEmulator, bot: EmuBot) -> None:
    first = await emu.send_user_message("plain hello", user="bob")
    waiter = asyncio.ensure_future(bot.wait_for("message", check=lambda m: m.reference is not None, timeout=5))
    msg = await emu.send_user_message("what is 2+2?", mention_bot=True, reply_to=first.id)
    seen = await waiter
    assert seen.id == msg.id
    assert seen.content == f"<@{emu.bot_user_id}> what is 2+2?"
    assert bot.user in seen.mentions
    assert seen.author.name == "alice"
    assert seen.reference is not None and seen.reference.message_id == first.id
    assert isinstance(seen.reference.resolved, discord.Message) and seen.reference.resolved.content == "plain hello"
    history = [m async for m in bot.get_channel(emu.channel_id).history(limit=10)]
    assert [m.id for m in history] == [msg.id, first.id]


async def test_bot_message_events_keep_discord_py_cache(emu: DiscordEmulator, bot: EmuBot) -> None:
    channel = bot.get_channel(emu.channel_id)
    created = asyncio.ensure_future(bot.wait_for("message", check=lambda m: m.content == "v1", timeout=5))
    sent = await channel.send("v1")
    assert (await created).id == sent.id  # MESSAGE_CREATE for the bot's own message
    edited = asyncio.ensure_future(bot.wait_for("message_edit", timeout=5))
    await sent.edit(content="v2")
    before, after = await edited
    assert (before.content, after.content) == ("v1", "v2")
    joined = asyncio.ensure_future(bot.wait_for("thread_create", timeout=5))
    thread = await sent.create_thread(name="discussion")
    assert thread.id == sent.id and emu.world.channels[thread.id].is_thread
    assert (await joined).name == "discussion"
    in_thread = await thread.send("inside")
    assert emu.messages[in_thread.id].channel_id == thread.id
    deleted = asyncio.ensure_future(bot.wait_for("message_delete", timeout=5))
    await sent.delete()
    assert (await deleted).id == sent.id
    assert emu.messages[sent.id].deleted and [e.content for e in emu.messages[sent.id].edits] == ["v1", "v2"]


async def test_error_shapes(emu: DiscordEmulator, bot: EmuBot) -> None:
    with pytest.raises(discord.NotFound) as info:
        await bot.fetch_channel(123)
    assert info.value.code == 10003
    await emu.set_channel_permissions(emu.channel2_id, emu.bot_user_id, deny=P.VIEW_CHANNEL)
    with pytest.raises(discord.Forbidden) as forbidden:
        await bot.get_channel(emu.channel2_id).send("hidden")
    assert forbidden.value.code == 50001
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{emu.api_base_url}/no/such/route", headers={"Authorization": f"Bot {TOKEN}"}) as resp:
            assert resp.status == 404 and resp.headers["Content-Type"] == "application/json"
            assert set(await resp.json()) == {"message", "code"}
        bad = [{"name": "Bad Name", "description": "x"}]
        async with http.put(
            f"{emu.api_base_url}/applications/{emu.application_id}/commands", json=bad, headers={"Authorization": f"Bot {TOKEN}"}
        ) as resp:
            body = await resp.json()
            assert resp.status == 400 and body["code"] == 50035 and "name" in body["errors"]["0"]


async def test_wrong_token_rejected(emu: DiscordEmulator) -> None:
    with pointed_at(emu):
        client = discord.Client(intents=discord.Intents.default())
        with pytest.raises(discord.LoginFailure):
            await client.login("wrong-token")
        await client.close()
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(emu.gateway_url + "?v=10&encoding=json") as ws:
            hello = await ws.receive_json()
            assert hello["op"] == 10
            await ws.send_json({"op": 2, "d": {"token": "wrong", "intents": 0, "properties": {}}})
            msg = await ws.receive()
            assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 4004


async def test_standalone_process_prints_ready() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sandbox.discord_emulator", "--host", "127.0.0.1", "--port", "0", "--token", "T",
        cwd=REPO_ROOT, stdout=asyncio.subprocess.PIPE, env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)),
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode().split()
        assert line[0] == "READY" and line[1].endswith("/api/v10") and line[2].startswith("ws://127.0.0.1:")
        async with aiohttp.ClientSession() as http:
            async with http.get(line[1] + "/gateway/bot", headers={"Authorization": "Bot T"}) as resp:
                assert (await resp.json())["url"] == line[2]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 10) == 0


async def test_deferred_ephemeral_followups(emu: DiscordEmulator, bot: EmuBot) -> None:
    rec = await emu.inject_slash_command("steps")
    await rec.wait_final(lambda r: len(r.followups) == 1, timeout=5)
    assert rec.original is not None and rec.original.content == "step one" and rec.original.ephemeral
    assert [m.content for m in rec.followups] == ["step two"] and rec.followups[0].ephemeral
    # ephemeral messages never reach the channel history the bot can read
    assert [m async for m in bot.get_channel(emu.channel_id).history(limit=10)] == []


async def test_expired_token_falls_back_to_channel(emu: DiscordEmulator, bot: EmuBot) -> None:
    rec = await emu.inject_slash_command("slow")
    await rec.wait_acked(5)
    emu.expire_interaction(rec)
    bot.release.set()
    posted = await emu.wait_for_message(lambda m: m.content.startswith("late answer"), timeout=5)
    assert posted.content == "late answer (posted to the channel)" and posted.interaction_id is None
    assert bot.fallback_errors == [50027]
    assert rec.original is not None and rec.original.loading  # the thinking message was never edited


async def test_interaction_callback_validated(emu: DiscordEmulator, bot: EmuBot) -> None:
    rec = await emu.inject_slash_command("long")
    await emu.wait_for(lambda: bot.fallback_errors, timeout=5)
    assert bot.fallback_errors == [50035]
    assert rec.callbacks[0]["status"] == 400 and not rec.acked
    assert last_error(emu, 400)["errors"]["data"]["content"]["_errors"][0]["code"] == "BASE_TYPE_MAX_LENGTH"


async def test_resume_replays_missed_events(emu: DiscordEmulator, bot: EmuBot) -> None:
    session = next(iter(emu.gateway.sessions.values()))
    resumed = asyncio.ensure_future(bot.wait_for("resumed", timeout=10))
    got = asyncio.ensure_future(bot.wait_for("message", check=lambda m: m.content == "while you were away", timeout=10))
    assert await emu.drop_gateway(4000) == 1
    await emu.send_user_message("while you were away")  # buffered for the dropped session
    await resumed
    assert (await got).author.name == "alice"
    assert session.resumed_count == 1 and len(emu.gateway.sessions) == 1
    resumed_again = asyncio.ensure_future(bot.wait_for("resumed", timeout=10))
    assert await emu.gateway.request_reconnect() == 1  # op 7
    await resumed_again
    assert session.resumed_count == 2
    rec = await emu.inject_slash_command("ask", {"prompt": "still there?"})
    assert (await rec.wait_final(timeout=5)).content == "answer: still there?"


async def test_history_pagination(emu: DiscordEmulator, bot: EmuBot) -> None:
    sent = [await emu.send_user_message(f"m{i}") for i in range(5)]
    channel = bot.get_channel(emu.channel_id)
    newest = [m.content async for m in channel.history(limit=2)]
    assert newest == ["m4", "m3"]
    before = [m.content async for m in channel.history(limit=10, before=discord.Object(sent[2].id))]
    assert before == ["m1", "m0"]
    after = [m.content async for m in channel.history(limit=2, after=discord.Object(sent[1].id))]
    assert after == ["m2", "m3"]
    fetched = await channel.fetch_message(sent[3].id)
    assert fetched.content == "m3"


async def test_global_limit_spares_interactions(emu: DiscordEmulator, bot: EmuBot) -> None:
    emu.configure_bucket("global", 2, 30.0)
    headers = {"Authorization": f"Bot {TOKEN}"}
    async with aiohttp.ClientSession() as http:
        statuses = []
        for _ in range(3):
            async with http.get(f"{emu.api_base_url}/channels/{emu.channel_id}", headers=headers) as resp:
                statuses.append(resp.status)
                body = await resp.json()
    assert statuses == [200, 200, 429] and body["global"] is True
    rec = await emu.inject_slash_command("ask", {"prompt": "exempt"})
    assert (await rec.wait_final(timeout=5)).content == "answer: exempt"
    assert [hit.is_global for hit in emu.rate_limited] == [True]


async def test_injected_error_surfaces(emu: DiscordEmulator, bot: EmuBot) -> None:
    emu.inject_error("/messages", 403, 50013, "Missing Permissions")
    with pytest.raises(discord.Forbidden) as info:
        await bot.get_channel(emu.channel_id).send("nope")
    assert info.value.code == 50013
    ok = await bot.get_channel(emu.channel_id).send("yes")
    assert emu.messages[ok.id].content == "yes"


async def test_thread_without_message(emu: DiscordEmulator, bot: EmuBot) -> None:
    created = asyncio.ensure_future(bot.wait_for("thread_create", timeout=5))
    thread = await bot.get_channel(emu.channel_id).create_thread(name="side", type=discord.ChannelType.public_thread)
    assert (await created).id == thread.id
    assert emu.world.channels[thread.id].parent_id == emu.channel_id and emu.world.channels[thread.id].type == 11


async def test_select_menu_with_deferred_update(emu: DiscordEmulator, bot: EmuBot) -> None:
    msg = await (await emu.inject_slash_command("pick")).wait_final(timeout=5)
    assert msg is not None
    with pytest.raises(ValueError):
        await emu.select_menu(msg.id, "pick:1", ["green"])
    rec = await emu.select_menu(msg.id, "pick:1", ["blue"], user="bob")
    final = await rec.wait_final(timeout=5)
    assert rec.response_type == 6 and final is not None and final.id == msg.id
    assert final.content == "picked blue" and final.components == []


# -- validators without a bot (fast) ----------------------------------------------------------


def test_message_limits_name_the_field() -> None:
    from sandbox.discord_emulator.validation import MessageValidator, SchemaValidator

    v = MessageValidator(SchemaValidator())
    row = {"type": 1, "components": [{"type": 2, "style": 1, "custom_id": f"b{i}", "label": "x"} for i in range(5)]}
    too_many_rows = v.message("message_create", {"content": "x", "components": [row] * 6})
    assert too_many_rows["components"]["_errors"][0]["code"] == "BASE_TYPE_MAX_LENGTH"
    long_id = {"type": 1, "components": [{"type": 2, "style": 1, "custom_id": "c" * 101, "label": "x"}]}
    errors = v.message("message_create", {"components": [long_id]})
    assert "custom_id" in errors["components"]["0"]["components"]["0"]
    embed = {"title": "t" * 257, "fields": [{"name": "n", "value": "v" * 1025}], "footer": {"text": "f" * 2049}}
    errors = v.message("webhook_edit", {"embeds": [embed]})["embeds"]["0"]
    assert {"title", "fields", "footer"} <= set(errors)
    assert v.message("message_edit", {"content": "ok", "embeds": [{"title": "fine"}], "allowed_mentions": {"parse": []}}) == {}
    assert "nonce" in v.message("message_create", {"content": "x", "nonce": "n" * 26})
    assert v.callback({"type": 5, "data": {"flags": 64}}) == {}
    assert "data" in v.callback({"type": 9, "data": {"custom_id": "m", "title": "t" * 46, "components": []}})


def test_command_schema_limits() -> None:
    from sandbox.discord_emulator.commands import validate_commands

    option = {"type": 3, "name": "o", "description": "d"}
    assert validate_commands([{"name": "ok", "description": "fine", "options": [option]}]) == {}
    many = [dict(option, name=f"o{i}") for i in range(26)]
    assert "options" in validate_commands([{"name": "many", "description": "d", "options": many}])["0"]
    choices = [{"name": f"c{i}", "value": str(i)} for i in range(26)]
    bad = validate_commands([{"name": "pick", "description": "d", "options": [dict(option, choices=choices)]}])
    assert "choices" in bad["0"]["options"]["0"]
    assert "description" in validate_commands([{"name": "x", "description": "d" * 101}])["0"]
    assert "name" in validate_commands([{"name": "x" * 33, "description": "d"}])["0"]
    order = [dict(option, name="a"), dict(option, name="b", required=True)]
    assert "required" in validate_commands([{"name": "order", "description": "d", "options": order}])["0"]["options"]["1"]
    assert validate_commands([{"name": "Quote", "type": 3}]) == {}  # context menus may use capitals


async def test_channel_webhooks_need_manage_webhooks(emu: DiscordEmulator, bot: EmuBot) -> None:
    list_route = discord.http.Route("GET", "/channels/{channel_id}/webhooks", channel_id=emu.channel_id)
    with pytest.raises(discord.Forbidden) as info:
        await bot.http.request(list_route)
    assert info.value.code == 50013
    await emu.grant_bot_permissions(P.MANAGE_WEBHOOKS)
    create = discord.http.Route("POST", "/channels/{channel_id}/webhooks", channel_id=emu.channel_id)
    hook = await bot.http.request(create, json={"name": "Gatecord Relay"})
    assert [h["id"] for h in await bot.http.request(list_route)] == [hook["id"]]
    execute = discord.http.Route("POST", "/webhooks/{webhook_id}/{webhook_token}", webhook_id=hook["id"], webhook_token=hook["token"])
    body = {"content": "from CI", "username": "CI bot", "allowed_mentions": {"parse": []}}
    posted = await bot.http.request(execute, json=body, params={"wait": "true", "thread_id": str(emu.thread_id)})
    stored = emu.messages[int(posted["id"])]
    assert posted["webhook_id"] == hook["id"] and posted["author"]["username"] == "CI bot"
    assert stored.channel_id == emu.thread_id and stored.webhook_username == "CI bot"
    history = await bot.http.request(
        discord.http.Route("GET", "/channels/{channel_id}/messages", channel_id=emu.thread_id), params={"limit": 5}
    )
    assert [m["id"] for m in history] == [posted["id"]]
    emu.channel_webhooks.remove(int(hook["id"]))
    with pytest.raises(discord.NotFound) as gone:
        await bot.http.request(execute, json=body, params={"wait": "true"})
    assert gone.value.code == 10015
