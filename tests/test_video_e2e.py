"""/video end to end: the real bot against the Discord emulator and the OpenAI-surface gateway
emulator (video jobs: queued → processing → completed with a real MP4). Assertions are on what
members see (messages, their recorded edits, the attached MP4, decoded) and on what was charged."""

from __future__ import annotations

import io
import math
from typing import Any

import av
import pytest

from tests.e2e import BotEnv

NO_MENTIONS = {"parse": []}
#: quick polls, so a job takes a few seconds here; the progress edits stay ≥ 1 s apart regardless
FAST = {"poll_interval_seconds": 0.2, "poll_max_interval_seconds": 0.4}


# -- helpers ----------------------------------------------------------------------------------------

def buttons(message: Any) -> dict[str, str]:
    return {c["label"]: c["custom_id"] for row in message.components for c in row["components"]}


def mp4s(message: Any) -> list[Any]:
    return [a for a in message.attachments if a.filename.endswith(".mp4")]


def has_video(message: Any) -> bool:
    return message is not None and bool(mp4s(message)) and "Delete" in buttons(message)


def decoded(data: bytes) -> tuple[str, int, int, float, int]:
    """(codec, width, height, duration s, frames decoded) of an MP4: proof it plays."""
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        duration = float(container.duration or 0) / av.time_base
        return stream.codec_context.name, stream.codec_context.width, stream.codec_context.height, duration, frames


def video_posts(gateway: Any) -> list[Any]:
    return [r for r in gateway.requests if r.method == "POST" and r.path.endswith("videos/generations")]


def only_job(gateway: Any) -> Any:
    (state,) = gateway.video_jobs.values()
    return state


async def video(env: BotEnv, options: dict[str, Any], *, user: str = "alice", **kw: Any) -> Any:
    return await env.discord.inject_slash_command("video", {"prompt": "a red fox running", **options}, user=user,
                                                  **kw)


async def seconds_used(env: BotEnv, user: str = "alice") -> float:
    used, _ = await env.bot.quotas.counter("member", env.discord.guild_id, env.discord.users[user].id,
                                           "video_seconds")
    return used


async def video_ledger(env: BotEnv) -> list[Any]:
    rows = await env.bot.store.fetchall("SELECT * FROM usage_ledger ORDER BY ts")
    return [r for r in rows if r["feature"] == "video"]


# -- the full flow ----------------------------------------------------------------------------------

@pytest.mark.gateway_profile("openai")
@pytest.mark.bot_settings(media=FAST)
async def test_video_progress_result_and_one_charge(bot_env: BotEnv) -> None:
    env, emu = bot_env, bot_env.discord
    env.gateway.video_polls_to_complete = 12  # about a dozen quick polls: more than one a second
    rec = await video(env, {"duration": 4, "size": "640x360"})
    await rec.wait_acked()
    assert rec.response_type == 4 and rec.ack_latency is not None and rec.ack_latency < 3
    msg = await rec.wait_final(lambda r: has_video(r.original), timeout=60)

    # progress in one message: shown at once, then the gateway's status and percent, with a Cancel button
    first = msg.edits[0]
    assert "a red fox running" in first.content and "job #" in first.content and not first.attachment_ids
    progress = [e for e in msg.edits[1:-1] if "%" in e.content and "processing" in e.content]
    assert progress, [e.content for e in msg.edits]
    assert any("img:cancel:" in str(e.components) for e in msg.edits[:-1])
    # polls came faster than once a second, the edits did not (recorded by the emulator as received)
    assert only_job(env.gateway).polls >= 6
    gaps = [b.at - a.at for a, b in zip(msg.edits, msg.edits[1:], strict=False)]
    assert gaps and min(gaps) >= 0.95, gaps

    # the result: one MP4 that decodes, its caption, Re-roll and Delete
    (mp4,) = mp4s(msg)
    codec, width, height, duration, frames = decoded(mp4.data)
    assert codec == "h264" and (width, height) == (640, 360) and frames > 0 and 3.5 <= duration <= 4.6
    for part in ("a red fox running", "job #", "4 s", "640x360", f"<@{emu.users['alice'].id}>"):
        assert part in msg.content, (part, msg.content)
    assert list(buttons(msg)) == ["Re-roll", "Delete"]
    assert msg.allowed_mentions == NO_MENTIONS

    # one paid POST; video seconds charged once, as the gateway billed them
    (post,) = video_posts(env.gateway)
    assert post.json["duration"] == 4 and post.json["size"] == "640x360"
    assert await seconds_used(env) == 4
    rows = await video_ledger(env)
    assert [(r["video_seconds"], r["outcome"]) for r in rows] == [(4, "ok")]


@pytest.mark.gateway_profile("openai")
@pytest.mark.bot_settings(media=FAST)
async def test_refusals_are_private_and_cost_nothing(bot_env: BotEnv) -> None:
    env = bot_env
    for options, expected in (({"duration": 7}, ["**duration**", "`7`", "8"]),
                              ({"size": "99x99"}, ["**size**", "640x360"]),
                              ({"model": "dall-e-3"}, ["**model**"])):
        rec = await video(env, options)
        msg = await rec.wait_final()
        assert msg is not None and msg.ephemeral, options
        for fragment in expected:
            assert fragment in msg.content, (options, msg.content)
    assert video_posts(env.gateway) == []
    assert await seconds_used(env) == 0


@pytest.mark.gateway_profile("openai")
@pytest.mark.bot_settings(media=FAST, quotas={"member_video_seconds": 5})
async def test_budget_refusal_is_private(bot_env: BotEnv) -> None:
    env = bot_env
    rec = await video(env, {"duration": 8})
    msg = await rec.wait_final()
    assert msg is not None and msg.ephemeral and "video" in msg.content.lower()
    assert video_posts(env.gateway) == []


# -- failed and cancelled jobs ----------------------------------------------------------------------

@pytest.mark.gateway_profile("openai")
@pytest.mark.bot_settings(media=FAST)
async def test_a_failed_job_releases_the_budget_and_says_why(bot_env: BotEnv) -> None:
    env = bot_env
    env.gateway.faults.video_fails_next(message="the model would not draw foxes")
    rec = await video(env, {"duration": 4})
    msg = await rec.wait_final(lambda r: r.original is not None and "failed" in r.original.content, timeout=30)
    assert "the model would not draw foxes" in msg.content and "Nothing was charged" in msg.content
    assert not mp4s(msg)
    assert await seconds_used(env) == 0
    assert all(r["video_seconds"] in (0, None) for r in await video_ledger(env))
    assert len(video_posts(env.gateway)) == 1


@pytest.mark.gateway_profile("openai")
@pytest.mark.bot_settings(media=FAST)
async def test_cancel_by_the_requester_charges_what_the_gateway_billed(bot_env: BotEnv) -> None:
    env, emu = bot_env, bot_env.discord
    env.gateway.faults.video_never_finishes()
    rec = await video(env, {"duration": 8})
    msg = await rec.wait_final(lambda r: r.original is not None and "processing" in r.original.content
                               and "Cancel" in buttons(r.original), timeout=30)
    cancel = buttons(msg)["Cancel"]

    # another member may not cancel it
    bob = await emu.press_button(msg.id, cancel, user="bob")
    refusal = await bob.wait_final()
    assert refusal is not None and refusal.ephemeral
    assert not only_job(env.gateway).cancelled

    alice = await emu.press_button(msg.id, cancel, user="alice")
    await alice.wait_acked()
    msg = await emu.wait_for(lambda: emu.messages[msg.id] if "cancelled" in emu.messages[msg.id].content
                             else None, timeout=20)
    state = only_job(env.gateway)
    assert state.cancelled
    billed = math.ceil(8 * (state.progress or 0) / 100)
    assert await seconds_used(env) == billed
    if billed:
        assert f"{billed} video second" in msg.content and "charged" in msg.content.lower()
    else:
        assert "Nothing was charged" in msg.content
    assert "Cancel" not in buttons(msg)
    assert len(video_posts(env.gateway)) == 1


# -- the interaction token runs out -----------------------------------------------------------------

@pytest.mark.gateway_profile("openai")
@pytest.mark.bot_settings(media=FAST)
async def test_a_job_outliving_the_interaction_token_finishes_in_the_channel(bot_env: BotEnv) -> None:
    env, emu = bot_env, bot_env.discord
    env.gateway.video_polls_to_complete = 10**9  # held at "processing" until released below
    rec = await video(env, {"duration": 4, "size": "320x180"})
    await rec.wait_final(lambda r: r.original is not None and "processing" in r.original.content, timeout=30)
    emu.expire_interaction(rec)  # 15 minutes later, as far as Discord is concerned
    expired_at = emu.requests[-1].at
    state = only_job(env.gateway)
    env.gateway.video_polls_to_complete = state.polls + 1

    delivered = await emu.wait_for(
        lambda: next((m for m in emu.channel_messages(emu.channel_id) if has_video(m)), None), timeout=60)
    (mp4,) = mp4s(delivered)
    assert decoded(mp4.data)[0] == "h264"
    # it went through the channel, not the dead interaction webhook
    channel_calls = [r for r in emu.requests if r.at >= expired_at and r.status < 300 and r.files
                     and r.route.startswith("/channels/")]
    assert channel_calls, [(r.method, r.route, r.status) for r in emu.requests if r.at >= expired_at]
    assert await seconds_used(env) == 4


# -- the upload limit -------------------------------------------------------------------------------

@pytest.mark.gateway_profile("openai")
@pytest.mark.bot_settings(media=FAST)
async def test_a_result_over_the_upload_limit_is_reencoded_to_fit(bot_env: BotEnv) -> None:
    env, emu = bot_env, bot_env.discord
    limit = 200 * 1024
    emu.world.guilds[emu.guild_id].filesize_limit = limit
    rec = await video(env, {"duration": 4, "size": "1280x720"}, attachment_size_limit=limit)
    msg = await rec.wait_final(lambda r: has_video(r.original), timeout=90)
    (mp4,) = mp4s(msg)
    assert mp4.size <= limit
    codec, width, height, _, frames = decoded(mp4.data)
    assert codec == "h264" and frames > 0 and height <= 720
    assert "Re-encoded to fit" in msg.content
    assert await seconds_used(env) == 4


@pytest.mark.gateway_profile("openai")
@pytest.mark.bot_settings(media=FAST)
async def test_a_result_that_cannot_fit_is_linked_with_its_expiry(bot_env: BotEnv) -> None:
    env, emu = bot_env, bot_env.discord
    limit = 4 * 1024
    emu.world.guilds[emu.guild_id].filesize_limit = limit
    rec = await video(env, {"duration": 4, "size": "640x360"}, attachment_size_limit=limit)
    msg = await rec.wait_final(lambda r: r.original is not None and "Download the video" in r.original.content,
                               timeout=90)
    assert not msg.attachments
    assert "<t:" in msg.content and ":R>" in msg.content and "upload limit" in msg.content
    assert "/v1/" in msg.content or "http" in msg.content  # the gateway's URL
    assert list(buttons(msg)) == ["Re-roll", "Delete"]
    assert await seconds_used(env) == 4


# -- registration -----------------------------------------------------------------------------------

@pytest.mark.gateway_profile("digicord")
async def test_video_is_not_registered_without_a_video_gateway(bot_env: BotEnv) -> None:
    emu = bot_env.discord
    with pytest.raises(KeyError):
        emu.commands.find("video", 1, emu.guild_id)
    assert all(c["name"] != "video" for c in emu.global_commands())
    with pytest.raises(KeyError):
        await emu.inject_slash_command("video", {"prompt": "x"})


@pytest.mark.gateway_profile("openai")
async def test_video_is_registered_with_model_autocomplete(bot_env: BotEnv) -> None:
    emu = bot_env.discord
    command, _ = emu.commands.find("video", 1, emu.guild_id)
    assert [o["name"] for o in command["options"]] == ["prompt", "model", "duration", "size"]
    choices = await emu.inject_autocomplete("video", {"prompt": "x"}, "model")
    assert any("sora" in str(c.get("value")) for c in choices), choices
