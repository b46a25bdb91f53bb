"""/music end to end: the real bot against the Discord emulator and the OpenAI-surface gateway emulator.
What members see — the audio attachment (decoded with PyAV), its text and buttons, refusals — and
what was asked of the gateway and charged (music seconds: counters and ledger)."""

from __future__ import annotations

import io
from typing import Any

import av
import pytest

from tests.waiting import store_writes

NO_MENTIONS = {"parse": []}


# -- helpers ----------------------------------------------------------------------------------------

def buttons(message: Any) -> dict[str, str]:
    """label → custom_id of every button on a message."""
    return {c["label"]: c["custom_id"] for row in message.components for c in row["components"]}


def music_calls(gateway: Any) -> list[Any]:
    return [r for r in gateway.requests if r.path.endswith("/music/generations") and r.method == "POST"]


def has_audio(rec: Any) -> bool:
    msg = rec.original
    return msg is not None and bool(msg.attachments) and bool(msg.components)


async def music_used(env: Any, user: str = "alice") -> tuple[float, float]:
    emu = env.discord
    return await env.bot.quotas.counter("member", emu.guild_id, emu.users[user].id, "music_seconds")


async def ledger_rows(bot: Any) -> list[Any]:
    return await bot.store.fetchall("SELECT * FROM usage_ledger ORDER BY ts")


async def music(env: Any, options: dict[str, Any], *, user: str = "alice") -> Any:
    return await env.discord.inject_slash_command("music", {"prompt": "a calm piano", **options}, user=user)


def decoded_seconds(data: bytes) -> tuple[str, str, float]:
    """(container format, audio codec, seconds decoded) of an audio file, by decoding every frame."""
    with av.open(io.BytesIO(data)) as container:
        (stream,) = container.streams.audio
        codec = stream.codec_context.name
        samples = 0
        rate = stream.codec_context.sample_rate
        for frame in container.decode(stream):
            samples += frame.samples
        return container.format.name, codec, samples / rate


# -- the full flow ----------------------------------------------------------------------------------

@pytest.mark.gateway_profile("openai")
async def test_music_is_a_playable_mp3_charged_once_and_rerolled_as_a_new_job(
    bot_env: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    env, emu = bot_env, bot_env.discord
    writes = store_writes(monkeypatch)
    rec = await music(env, {"duration": 3})
    await rec.wait_acked()
    assert rec.response_type == 4
    msg = await rec.wait_final(has_audio, timeout=30)
    assert msg is not None

    # progress first (with Cancel), then the track in place with Re-roll and Delete
    first = msg.edits[0]
    assert "a calm piano" in first.content and "job #" in first.content and not first.attachment_ids
    (att,) = msg.attachments
    assert att.filename.endswith(".mp3") and (att.content_type or "").startswith("audio/mpeg")
    fmt, codec, seconds = decoded_seconds(att.data)
    assert fmt == "mp3" and codec in ("mp3", "mp3float")
    assert seconds == pytest.approx(3, abs=0.3)
    assert "a calm piano" in msg.content and f"<@{emu.users['alice'].id}>" in msg.content
    assert msg.allowed_mentions == NO_MENTIONS
    assert list(buttons(msg)) == ["Re-roll", "Delete"]

    # the gateway got one call for 3 s of MP3; 3 music seconds charged once
    (call,) = music_calls(env.gateway)
    assert call.json["duration"] == 3 and call.json["format"] == "mp3" and call.json["prompt"] == "a calm piano"
    assert await music_used(env) == (3, 0)
    rows = await ledger_rows(env.bot)
    assert [(r["feature"], r["music_seconds"], r["charged"], r["outcome"]) for r in rows] == [("music", 3, 1, "ok")]

    # Re-roll pressed by bob: a new job (a new message, a second call), charged to bob
    rr = await emu.press_button(msg.id, buttons(msg)["Re-roll"], user="bob")
    again = await rr.wait_final(has_audio, timeout=30)
    assert again is not None and again.id != msg.id
    assert len(music_calls(env.gateway)) == 2 and music_calls(env.gateway)[1].json["duration"] == 3
    assert await music_used(env, "bob") == (3, 0)
    assert await music_used(env) == (3, 0)

    async def jobs() -> list[tuple[str, str, str]] | None:
        rows = await env.bot.store.fetchall("SELECT kind, origin, status FROM media_jobs ORDER BY id")
        found = [(j["kind"], j["origin"], j["status"]) for j in rows]
        return found if all(status != "running" for _, _, status in found) else None

    assert await writes.wait_until(jobs, what="both jobs finished") == [("music", "command", "done"),
                                                                        ("music", "reroll", "done")]


@pytest.mark.gateway_profile("openai")
async def test_a_failed_music_call_releases_the_hold_and_says_so(bot_env: Any) -> None:
    env = bot_env
    env.gateway.faults.fail_next(status=503, retry_after=None, path="music/generations")
    rec = await music(env, {"duration": 5})
    msg = await rec.wait_final(lambda r: r.original is not None and "failed" in r.original.content, timeout=30)
    assert msg is not None and not msg.attachments
    assert "Nothing was charged" in msg.content
    assert list(buttons(msg)) == ["Retry", "Delete"]
    assert await music_used(env) == (0, 0)  # nothing used, nothing held
    rows = await ledger_rows(env.bot)
    assert [(r["feature"], r["charged"], r["music_seconds"], r["outcome"]) for r in rows] == [("music", 0, 0, "error")]
    assert await env.bot.store.fetchval("SELECT COUNT(*) FROM quota_reservations WHERE state = 'open'") == 0


@pytest.mark.gateway_profile("openai")
@pytest.mark.bot_settings(media={"max_music_seconds": 60})
async def test_a_duration_over_the_limit_is_refused_before_anything_is_held(bot_env: Any) -> None:
    env = bot_env
    rec = await music(env, {"duration": 61})
    msg = await rec.wait_final()
    assert msg is not None and msg.ephemeral
    assert "duration" in msg.content and "1–60 seconds" in msg.content
    assert music_calls(env.gateway) == []
    assert await env.bot.store.fetchval("SELECT COUNT(*) FROM media_jobs") == 0


@pytest.mark.gateway_profile("openai")
async def test_cancel_is_refused_to_another_member_and_the_requesters_cancel_releases_the_hold(
    bot_env: Any,
) -> None:
    env, emu = bot_env, bot_env.discord
    env.gateway.faults.slow_next(delay=8, path="music/generations")
    rec = await music(env, {"duration": 4})
    await rec.wait_acked()
    await emu.wait_for(lambda: bool(music_calls(env.gateway)) or None, timeout=10)
    progress = rec.original
    assert progress is not None and list(buttons(progress)) == ["Cancel"]
    assert await music_used(env) == (0, 4)  # held while it runs

    bob = await emu.press_button(progress.id, buttons(progress)["Cancel"], user="bob")
    refusal = await bob.wait_final()
    assert refusal is not None and refusal.ephemeral and "Only the member who asked" in refusal.content
    assert "cancelled" not in progress.content
    assert await music_used(env) == (0, 4)

    alice = await emu.press_button(progress.id, buttons(progress)["Cancel"])
    await alice.wait_acked()
    msg = await rec.wait_final(lambda r: r.original is not None and "cancelled" in r.original.content, timeout=10)
    assert msg is not None and f"<@{emu.users['alice'].id}>" in msg.content and "Nothing was charged" in msg.content
    assert list(buttons(msg)) == ["Retry", "Delete"] and not msg.attachments
    assert await music_used(env) == (0, 0)
    job = await env.bot.store.fetchone("SELECT status FROM media_jobs")
    assert job["status"] == "cancelled"
    rows = await ledger_rows(env.bot)
    assert [(r["charged"], r["music_seconds"]) for r in rows] == [(0, 0)]


@pytest.mark.gateway_profile("openai")
async def test_music_model_autocomplete_lists_the_gateways_music_models(bot_env: Any) -> None:
    choices = await bot_env.discord.inject_autocomplete("music", {"prompt": "x", "model": ""}, "model")
    listed = [m.id for m in await bot_env.bot.gateway.music_models()]
    assert listed and [c["value"] for c in choices] == listed[:25]


@pytest.mark.gateway_profile("digicord")
async def test_music_is_not_registered_on_a_gateway_without_it(bot_env: Any) -> None:
    emu = bot_env.discord
    names = {c["name"] for c in emu.global_commands()}
    assert "imagine" in names  # the tree was synced
    assert "music" not in names
    with pytest.raises(KeyError):
        await emu.inject_slash_command("music", {"prompt": "hello"})

