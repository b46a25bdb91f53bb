"""Forum channels in the Discord emulator, seen by a real discord.py client: a post is a thread
opened with its first message (THREAD_CREATE, then MESSAGE_CREATE with the thread's id)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import discord
import pytest

from sandbox.discord_emulator import DiscordEmulator
from tests.test_discord_emulator import TOKEN, running


class Client(discord.Client):
    def __init__(self) -> None:
        intents = discord.Intents.default()
        intents.message_content = True
        super().__init__(intents=intents)
        self.threads: list[discord.Thread] = []

    async def on_thread_create(self, thread: discord.Thread) -> None:
        self.threads.append(thread)


@pytest.fixture
async def emu() -> AsyncIterator[DiscordEmulator]:
    async with DiscordEmulator(token=TOKEN) as e:
        yield e


@pytest.fixture
async def client(emu: DiscordEmulator) -> AsyncIterator[Client]:
    async with running(emu, Client()) as c:
        yield c


async def test_default_world_has_a_forum(emu: DiscordEmulator, client: Client) -> None:
    forum = client.get_channel(emu.forum_channel_id)
    assert isinstance(forum, discord.ForumChannel)
    assert forum.name == "help" and forum.guild.id == emu.guild_id
    assert forum.type is discord.ChannelType.forum


async def test_post_is_a_thread_with_its_first_message(emu: DiscordEmulator, client: Client) -> None:
    seen = asyncio.ensure_future(client.wait_for("message", timeout=5))
    msg = await emu.create_forum_post(emu.forum_channel_id, "Printer on fire", "It smokes when I print.", user="bob")
    message = await seen
    assert msg.channel_id == msg.id  # a post's first message has its thread's id
    assert message.id == msg.id and message.content == "It smokes when I print."
    thread = message.channel
    assert isinstance(thread, discord.Thread)
    assert thread.id == msg.id and thread.name == "Printer on fire"
    assert isinstance(thread.parent, discord.ForumChannel) and thread.parent_id == emu.forum_channel_id
    assert thread.owner_id == emu.users["bob"].id
    assert [t.id for t in client.threads] == [thread.id]  # THREAD_CREATE came first
    assert emu.forum_posts(emu.forum_channel_id) == [thread.id]

    reply = await thread.send("Unplug it first.")  # the bot answers inside the post
    assert emu.messages[reply.id].channel_id == thread.id


async def test_forum_has_no_messages_of_its_own(emu: DiscordEmulator, client: Client) -> None:
    forum = client.get_channel(emu.forum_channel_id)
    assert isinstance(forum, discord.ForumChannel)
    with pytest.raises(discord.HTTPException) as caught:
        await client.http.send_message(forum.id, params=discord.http.MultipartParameters(  # no public send on forums
            payload={"content": "hello"}, multipart=None, files=None))
    assert caught.value.status == 400 and caught.value.code == 50008
    with pytest.raises(ValueError, match="create_forum_post"):
        await emu.send_user_message("hello", channel_id=forum.id)
    with pytest.raises(ValueError, match="not a forum"):
        await emu.create_forum_post(emu.channel_id, "title", "text")


async def test_bot_opens_a_post(emu: DiscordEmulator, client: Client) -> None:
    forum = client.get_channel(emu.forum_channel_id)
    assert isinstance(forum, discord.ForumChannel)
    created = await forum.create_thread(name="Release notes", content="Version 2 is out.")
    assert created.thread.name == "Release notes"
    assert created.message.id == created.thread.id
    assert emu.messages[created.message.id].content == "Version 2 is out."
    with pytest.raises(discord.HTTPException) as caught:
        await client.http.start_thread_in_forum(forum.id, params=discord.http.MultipartParameters(
            payload={"name": "no message"}, multipart=None, files=None))
    assert caught.value.status == 400
