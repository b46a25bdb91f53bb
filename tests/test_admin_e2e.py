"""Admin and member commands end to end: the real bot, the Discord emulator, the gateway emulator.

What is checked is what people see: the reply text (ephemeral, no mentions), the refusal a member
gets when sending an admin command anyway, the PNG of /usage measured pixel by pixel.
"""

from __future__ import annotations

from typing import Any

import pytest

from bot.budgets.rules import BudgetExceeded, Feature, Requester
from sandbox.discord_emulator import permissions as P
from tests.chart_probe import expected_height, measure_bars

ADMIN_COMMANDS = [
    ("quota set", {"scope": "member", "kind": "images", "limit": 100}),
    ("quota show", {}),
    ("quota reset-user", {"member": "bob"}),
    ("config model", {"model": "anything"}),
    ("config system-prompt", {"prompt": "Talk like a pirate."}),
    ("config show", {}),
    ("config reset", {}),
    ("usage", {}),
    ("credits", {}),
]


async def run(env: Any, name: str, options: dict | None = None, *, user: str = "admin", **kw: Any) -> Any:
    """Run a slash command and return the final visible reply (content + attachments)."""
    rec = await env.discord.inject_slash_command(name, options or {}, user=user, **kw)
    msg = await rec.wait_final(timeout=10)
    assert msg is not None, f"/{name}: no reply"
    assert msg.ephemeral or name == "mylimits", f"/{name}: admin replies must be ephemeral"
    assert msg.allowed_mentions == {"parse": []}, f"/{name}: {msg.allowed_mentions}"
    return msg


async def test_admin_commands_are_hidden_and_refused_for_members(bot_env: Any) -> None:
    emu = bot_env.discord
    registered = {c["name"]: c for c in emu.commands.list(None)}
    for name in ("config", "quota", "usage", "credits"):
        assert registered[name]["default_member_permissions"] == str(P.MANAGE_GUILD)
        assert registered[name].get("contexts") in (None, [0]) or registered[name].get("dm_permission") is False
    assert registered["mylimits"].get("default_member_permissions") is None
    # a moderator (Manage Messages, not Manage Server) sends every admin command anyway
    await emu.add_user("mod", roles=[emu.moderator_role_id])
    for name, options in ADMIN_COMMANDS:
        for user in ("alice", "mod"):
            msg = await run(bot_env, name, options, user=user)
            assert msg.content == f"You need the **Manage Server** permission to use `/{name}`.", (name, user)
            assert not msg.attachments
    assert bot_env.bot.quotas.sweeper.running  # returns expired reservations periodically
    store = bot_env.bot.store
    for table in ("quota_limits", "config_values", "audit_log"):
        assert await store.fetchval(f"SELECT COUNT(*) FROM {table}") == 0, table
    assert not [r for r in bot_env.gateway.requests if "credits" in r.path]


async def test_quota_set_role_and_mylimits(bot_env: Any) -> None:
    emu, bot = bot_env.discord, bot_env.bot
    msg = await run(bot_env, "quota set", {"scope": "member", "kind": "images", "limit": 2})
    assert msg.content == "Each member's daily images budget: unlimited → 2."
    msg = await run(bot_env, "quota set", {"scope": "server", "kind": "chat_requests", "limit": 50})
    assert msg.content == "The server's daily chat requests budget: unlimited → 50."
    msg = await run(bot_env, "quota set", {"scope": "member", "kind": "tokens", "limit": -3})
    assert msg.content == "Not changed: A limit must be 0 or more, or -1 for unlimited."
    msg = await run(bot_env, "quota set", {"scope": "member", "kind": "images", "limit": 1.5})
    assert msg.content == "Not changed: The image limit must be a whole number."

    artists = await emu.add_role("Artists")
    await emu.add_user("painter", roles=[artists.id])
    msg = await run(bot_env, "quota role", {"role": artists.id, "kind": "images", "limit": -1})
    assert msg.content == "@Artists — daily images per member: no override → unlimited."

    alice = emu.users["alice"]
    r = await bot.quotas.reserve(Requester(emu.guild_id, emu.channel_id, alice.id), Feature.IMAGE, images=2)
    await bot.quotas.settle(r, usage_tokens=0, images=2)
    msg = await run(bot_env, "mylimits", user="alice")
    assert msg.ephemeral
    lines = msg.content.splitlines()
    assert lines[0].startswith("**Your budgets today** (reset in ") and lines[0].endswith("at 00:00 UTC)")
    assert "• images: **0** of 2 left" in lines
    assert "• chat requests: **50** of 50 left (server-wide budget)" in lines
    assert ("• unlimited: tokens, image questions, credits, speech characters, transcription seconds,"
            " video seconds, music seconds, embedding tokens" in lines)
    msg = await run(bot_env, "mylimits", user="painter")
    assert ("• unlimited: tokens, image questions, images, credits, speech characters, transcription seconds,"
            " video seconds, music seconds, embedding tokens" in msg.content.splitlines())

    msg = await run(bot_env, "quota show")
    assert "• images: 2 used of unlimited (config default)" in msg.content
    assert "• chat requests: 0 used of 50\n" in msg.content.split("__Each member__")[0]
    assert "• @Artists: images unlimited" in msg.content

    msg = await run(bot_env, "quota reset-user", {"member": "alice"})
    assert msg.content == f"<@{alice.id}> has a fresh budget for today (cleared: 2 images)."
    msg = await run(bot_env, "mylimits", user="alice")
    assert "• images: **2** of 2 left" in msg.content.splitlines()

    audit = [tuple(r) for r in await bot.store.fetchall("SELECT actor_id, target, field, old_value, new_value FROM audit_log ORDER BY id")]
    admin = emu.users["admin"].id
    assert audit == [
        (admin, "quota:member", "images", "-1.0", "2.0"),
        (admin, "quota:guild", "chat_requests", "-1.0", "50.0"),
        (admin, f"role:{artists.id}", "images", None, "-1.0"),
        (admin, f"user:{alice.id}", "usage_today", '{"images": 2.0}', "{}"),
    ]


async def test_budget_exhausted_message_names_budget_and_reset(bot_env: Any) -> None:
    emu, bot = bot_env.discord, bot_env.bot
    await run(bot_env, "quota set", {"scope": "server", "kind": "images", "limit": 3})
    req = Requester(emu.guild_id, emu.channel_id, emu.users["bob"].id)
    await bot.quotas.settle(await bot.quotas.reserve(req, Feature.IMAGE, images=3), usage_tokens=0, images=3)
    with pytest.raises(Exception) as info:
        await bot.quotas.reserve(req, Feature.IMAGE, images=1)
    text = info.value.user_message()
    assert text.startswith("This server's daily image budget (3) is used up; it resets in ")
    assert text.endswith("(00:00 UTC).")


async def test_config_model_validation_channel_overrides_and_show(bot_env: Any) -> None:
    emu, bot = bot_env.discord, bot_env.bot
    chat_model = bot_env.gateway.default_chat_model
    msg = await run(bot_env, "config model", {"model": "no-such-model"})
    assert msg.content.startswith("Not changed: `no-such-model` is not a chat model on this gateway. Available: ")
    assert f"`{chat_model}`" in msg.content
    msg = await run(bot_env, "config model", {"model": chat_model})
    assert msg.content == f"Updated the server settings:\n• chat model: default → `{chat_model}`"
    msg = await run(bot_env, "config system-prompt", {"prompt": "x" * 4100})
    assert msg.content == "Not changed: The system prompt is 4,100 characters; the most allowed is 4,000."
    msg = await run(bot_env, "config channel", {"channel": emu.channel_id, "temperature": 3})
    assert msg.content == "Not changed: The temperature must be between 0 and 2 (got 3)."
    msg = await run(bot_env, "config channel", {"channel": emu.channel_id, "temperature": 0.2,
                                                 "answer_mentions": False, "system_prompt": "Only haiku."})
    assert msg.content.startswith(f"Updated <#{emu.channel_id}>:\n")
    assert "• temperature: default → 0.2" in msg.content and "• answer mentions: default → no" in msg.content

    cfg = await bot.guild_config.effective(emu.guild_id, emu.thread_id, emu.channel_id)
    assert (cfg.chat_model, cfg.temperature, cfg.answer_mentions, cfg.system_prompt) == (chat_model, 0.2, False, "Only haiku.")

    msg = await run(bot_env, "config show", channel_id=emu.thread_id)  # run inside the thread
    assert f"• temperature: 0.2 — inherited from <#{emu.channel_id}>" in msg.content
    assert f"• chat model: `{chat_model}` — server setting" in msg.content
    assert "• max tokens: " in msg.content and "— config default" in msg.content
    assert "**Recent changes**" in msg.content and f"<@{emu.users['admin'].id}>" in msg.content

    msg = await run(bot_env, "config reset", {"channel": emu.channel_id})
    assert msg.content == f"Back to the defaults:\n• <#{emu.channel_id}>: answer mentions, system prompt, temperature"
    cfg = await bot.guild_config.effective(emu.guild_id, emu.channel_id)
    assert (cfg.temperature, cfg.answer_mentions) == (bot.settings.chat.temperature, True)
    msg = await run(bot_env, "config reset", {"channel": emu.channel_id})
    assert msg.content == "Nothing to reset: those settings were already the defaults."


async def test_usage_png_matches_ledger(bot_env: Any) -> None:
    emu, bot = bot_env.discord, bot_env.bot
    q = bot.quotas
    users = {name: emu.users[name].id for name in ("alice", "bob", "admin")}
    plan = [("alice", Feature.CHAT, 6), ("bob", Feature.CHAT, 2), ("bob", Feature.VISION, 3), ("admin", Feature.IMAGE, 4)]
    for name, feature, count in plan:
        req = Requester(emu.guild_id, emu.channel_id, users[name])
        for _ in range(count):
            if feature is Feature.IMAGE:
                await q.settle(await q.reserve(req, feature, images=2), usage_tokens=0, images=2)
            else:
                await q.settle(await q.reserve(req, feature, tokens=100), usage_tokens=40)
    await q.release(await q.reserve(Requester(emu.guild_id, emu.channel_id, users["alice"]), Feature.CHAT), outcome="error")
    await run(bot_env, "quota set", {"scope": "server", "kind": "images", "limit": 12})

    msg = await run(bot_env, "usage", {"days": 3})
    assert msg.content.startswith(
        "Totals: 8 chat, 3 vision, 8 images, 440 tokens, 0 speech characters, 0 transcription seconds,"
        " 0 video seconds, 0 music seconds, 0 embedding tokens.")
    top = msg.content.split("**Top members**\n")[1].splitlines()
    assert top[0] == (f"1. <@{users['alice']}> — 6 chat, 0 vision, 0 images, 240 tokens, 0 speech characters,"
                      " 0 transcription seconds, 0 video seconds, 0 music seconds, 0 embedding tokens")
    assert top[1].startswith(f"2. <@{users['bob']}> — 2 chat, 3 vision")
    [attachment] = msg.attachments
    assert attachment.filename == "usage.png" and attachment.data[:8] == b"\x89PNG\r\n\x1a\n"
    days, y_max, bars = measure_bars(attachment.data)
    assert len(days) == 3 and y_max == 20  # the image budget (12) sets the scale
    today = 2
    assert bars["chat_requests"] == {today: expected_height(8, y_max)}
    assert bars["vision_requests"] == {today: expected_height(3, y_max)}
    assert bars["images"] == {today: expected_height(8, y_max)}
    ledger = await bot.store.fetchone(
        "SELECT SUM(feature = 'chat'), SUM(feature = 'vision'), SUM(images) FROM usage_ledger WHERE charged = 1")
    assert tuple(ledger) == (8, 3, 8)

    msg = await run(bot_env, "usage", {"days": 1, "member": "bob"})
    assert msg.content.startswith(f"Totals: 2 chat, 3 vision, 0 images, 200 tokens, 0 speech characters,"
                                  f" 0 transcription seconds, 0 video seconds, 0 music seconds, 0 embedding tokens.\n"
                                  f"Usage of <@{users['bob']}>")
    days, y_max, bars = measure_bars(msg.attachments[0].data)
    assert bars["chat_requests"] == {0: expected_height(2, y_max)} and bars["images"] == {}


async def test_voice_budgets_through_quota_mylimits_and_usage(bot_env: Any) -> None:
    emu, bot = bot_env.discord, bot_env.bot
    msg = await run(bot_env, "quota set", {"scope": "member", "kind": "speech_chars", "limit": 500})
    assert msg.content == "Each member's daily speech chars budget: unlimited → 500."
    msg = await run(bot_env, "quota set", {"scope": "server", "kind": "transcription_seconds", "limit": 0})
    assert msg.content == "The server's daily transcription seconds budget: unlimited → 0."
    msg = await run(bot_env, "quota set", {"scope": "member", "kind": "speech_chars", "limit": 2.5})
    assert msg.content == "Not changed: The speech character limit must be a whole number."
    listeners = await emu.add_role("Listeners")
    msg = await run(bot_env, "quota role", {"role": listeners.id, "kind": "speech_chars", "limit": 2000})
    assert msg.content == "@Listeners — daily speech chars per member: no override → 2,000."

    alice = Requester(emu.guild_id, emu.channel_id, emu.users["alice"].id)
    async with bot.quotas.charge(alice, Feature.SPEECH, speech_chars=480) as hold:
        await hold.settle()
    with pytest.raises(BudgetExceeded) as info:
        await bot.quotas.reserve(alice, Feature.SPEECH, speech_chars=21)
    assert info.value.user_message().startswith(
        "Your daily speech character budget (500, set by this server for each member) has only 20 left, not enough"
        " for this request; it resets in ")
    with pytest.raises(BudgetExceeded) as info:
        await bot.quotas.reserve(alice, Feature.TRANSCRIPTION, transcription_seconds=1)
    assert info.value.user_message().startswith("This server's daily transcription second budget (0) is used up;")

    msg = await run(bot_env, "quota show")
    server, member = msg.content.split("__Each member__")
    assert "• speech characters: 480 used of unlimited (config default)" in server
    assert "• transcription seconds: 0 used of 0\n" in server
    assert "• speech characters: 500\n" in member and "• transcription seconds: unlimited (config default)" in member
    assert "• @Listeners: speech characters 2,000" in msg.content
    lines = (await run(bot_env, "mylimits", user="alice")).content.splitlines()
    assert "• speech characters: **20** of 500 left" in lines
    assert "• transcription seconds: **0** of 0 left (server-wide budget)" in lines
    msg = await run(bot_env, "usage", {"days": 1})
    assert msg.content.startswith(
        "Totals: 0 chat, 0 vision, 0 images, 0 tokens, 480 speech characters, 0 transcription seconds,"
        " 0 video seconds, 0 music seconds, 0 embedding tokens.")
    msg = await run(bot_env, "quota reset-user", {"member": "alice"})
    assert msg.content == f"<@{alice.user_id}> has a fresh budget for today (cleared: 480 speech chars)."
    assert await bot.store.fetchval("SELECT SUM(speech_chars) FROM usage_ledger WHERE charged = 1") == 480


async def test_media_budgets_through_quota_mylimits_and_usage(bot_env: Any) -> None:
    emu, bot = bot_env.discord, bot_env.bot
    msg = await run(bot_env, "quota set", {"scope": "member", "kind": "video_seconds", "limit": 20})
    assert msg.content == "Each member's daily video seconds budget: unlimited → 20."
    msg = await run(bot_env, "quota set", {"scope": "server", "kind": "music_seconds", "limit": 0})
    assert msg.content == "The server's daily music seconds budget: unlimited → 0."
    msg = await run(bot_env, "quota set", {"scope": "server", "kind": "video_seconds", "limit": 0.5})
    assert msg.content == "Not changed: The video second limit must be a whole number."
    makers = await emu.add_role("Film makers")
    msg = await run(bot_env, "quota role", {"role": makers.id, "kind": "video_seconds", "limit": 60})
    assert msg.content == "@Film makers — daily video seconds per member: no override → 60."

    alice = Requester(emu.guild_id, emu.channel_id, emu.users["alice"].id)
    async with bot.quotas.charge(alice, Feature.VIDEO, video_seconds=12, ttl_seconds=3600) as hold:
        await hold.settle()
    hold = await bot.quotas.reserve(alice, Feature.VIDEO, video_seconds=4, ttl_seconds=3600)  # still running
    with pytest.raises(BudgetExceeded) as info:
        await bot.quotas.reserve(alice, Feature.VIDEO, video_seconds=8)
    assert info.value.user_message().startswith(
        "Your daily video second budget (20, set by this server for each member) has only 4 left, not enough"
        " for this request; it resets in ")
    with pytest.raises(BudgetExceeded) as info:
        await bot.quotas.reserve(alice, Feature.MUSIC, music_seconds=30)
    assert info.value.user_message().startswith("This server's daily music second budget (0) is used up;")

    msg = await run(bot_env, "quota show")
    server, member = msg.content.split("__Each member__")
    assert "• video seconds: 12 used of unlimited (config default)" in server
    assert "• music seconds: 0 used of 0\n" in server
    assert "• video seconds: 20\n" in member and "• music seconds: unlimited (config default)" in member
    assert "• @Film makers: video seconds 60" in msg.content
    lines = (await run(bot_env, "mylimits", user="alice")).content.splitlines()
    assert "• video seconds: **4** of 20 left, 4 in progress" in lines
    assert "• music seconds: **0** of 0 left (server-wide budget)" in lines

    await hold.settle(video_seconds=3, outcome="cancelled")  # cancelled: billed 3 of the 4 s
    msg = await run(bot_env, "usage", {"days": 1})
    assert msg.content.startswith(
        "Totals: 0 chat, 0 vision, 0 images, 0 tokens, 0 speech characters, 0 transcription seconds,"
        " 15 video seconds, 0 music seconds, 0 embedding tokens.")
    days, y_max, bars = measure_bars(msg.attachments[0].data)
    assert (len(days), y_max) == (1, 20)
    assert bars["video_seconds"] == {0: expected_height(15, y_max)} and bars["music_seconds"] == {}
    msg = await run(bot_env, "quota reset-user", {"member": "alice"})
    assert msg.content == f"<@{alice.user_id}> has a fresh budget for today (cleared: 15 video seconds)."
    assert await bot.store.fetchval("SELECT SUM(video_seconds) FROM usage_ledger WHERE charged = 1") == 15


async def test_credits_without_balance_endpoint(bot_env: Any) -> None:
    msg = await run(bot_env, "credits")
    assert msg.content == "The AI gateway (`openai` profile) does not report a credit balance."


@pytest.mark.gateway_profile("aicredits")
async def test_credits_with_balance(bot_env: Any) -> None:
    msg = await run(bot_env, "credits")
    assert msg.content == "Gateway balance: **1,000.0000** INR (`aicredits`)."
